//! Service-account tokens as a credential (upstream's service-account authenticator with its
//! legacy-free validator): the token must be signed by this cluster's key, be for the API's
//! audience and be valid now, and the ServiceAccount (and the pod) it names must still exist
//! with the uids it names. A token of a deleted or re-created ServiceAccount or pod is refused.
//!
//! Where petset differs on purpose: upstream also refuses a pod-bound token some seconds after
//! its pod's deletion starts; petset keeps it good while the pod object exists, so a container
//! can still reach the API in its grace period (preStop hooks, deregistration).

use petset_pki::service_account_token::{Claims, ISSUER};
use serde_json::Value;

use super::UserInfo;
use super::authn::AUTHENTICATED_GROUP;
use crate::ApiState;
use crate::registry::Scope;

pub const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
pub const SERVICE_ACCOUNT_USER_PREFIX: &str = "system:serviceaccount:";

/// The audiences the API accepts (upstream's `--api-audiences`, by default the issuer).
pub const API_AUDIENCES: &[&str] = &[ISSUER];

/// Why a token authenticates no one (each a 401; the reason goes to the log only, as upstream
/// tells a client no more than "Unauthorized").
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("{0}")]
    Token(#[from] petset_pki::service_account_token::TokenError),
    #[error("no key signs service-account tokens on this server")]
    NoKey,
    #[error("service account token has been invalidated: {0}")]
    Invalidated(String),
}

/// The user `token` authenticates, or why none.
pub async fn authenticate(state: &ApiState, token: &str) -> Result<UserInfo, Refused> {
    let key = state.service_account_key.as_ref().ok_or(Refused::NoKey)?;
    let now = state.registry.timestamp().as_second();
    let claims = key.verify(token, now, API_AUDIENCES)?;
    check_still_bound(state, &claims).await?;
    Ok(user_of(&claims))
}

/// The ServiceAccount and the pod a token names must exist with the uids it names, and the
/// ServiceAccount must not be on its way out.
async fn check_still_bound(state: &ApiState, claims: &Claims) -> Result<(), Refused> {
    let bound = &claims.kubernetes;
    let account = stored(
        state,
        "serviceaccounts",
        &bound.namespace,
        &bound.serviceaccount.name,
    )
    .await
    .ok_or_else(|| {
        Refused::Invalidated(format!(
            "serviceaccount {:?} not found",
            bound.serviceaccount.name
        ))
    })?;
    let uid_of = |object: &Value| {
        object
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    if uid_of(&account) != bound.serviceaccount.uid {
        return Err(Refused::Invalidated(format!(
            "service account UID ({}) does not match claim ({})",
            uid_of(&account),
            bound.serviceaccount.uid
        )));
    }
    if account.pointer("/metadata/deletionTimestamp").is_some() {
        return Err(Refused::Invalidated(
            "the service account is being deleted".into(),
        ));
    }
    if let Some(pod_claim) = &bound.pod {
        let pod = stored(state, "pods", &bound.namespace, &pod_claim.name)
            .await
            .ok_or_else(|| Refused::Invalidated(format!("pod {:?} not found", pod_claim.name)))?;
        if uid_of(&pod) != pod_claim.uid {
            return Err(Refused::Invalidated(format!(
                "pod UID ({}) does not match service account pod ref claim ({})",
                uid_of(&pod),
                pod_claim.uid
            )));
        }
    }
    Ok(())
}

async fn stored(state: &ApiState, plural: &str, namespace: &str, name: &str) -> Option<Value> {
    let resource = petset_api::resources::find("", "v1", plural)?;
    let scope = Scope {
        resource,
        namespace: Some(namespace),
    };
    state.registry.get(scope, name).await.ok()
}

/// Upstream's user of a service-account token: `system:serviceaccount:NS:NAME` with the
/// account's uid, in the service-account groups, with the pod and the credential as extra.
pub fn user_of(claims: &Claims) -> UserInfo {
    let bound = &claims.kubernetes;
    let mut user = service_account_user(&bound.namespace, &bound.serviceaccount.name);
    user.uid = bound.serviceaccount.uid.clone();
    if let Some(pod) = &bound.pod {
        user.extra.insert(
            "authentication.kubernetes.io/pod-name".into(),
            vec![pod.name.clone()],
        );
        user.extra.insert(
            "authentication.kubernetes.io/pod-uid".into(),
            vec![pod.uid.clone()],
        );
    }
    if !claims.jti.is_empty() {
        user.extra.insert(
            "authentication.kubernetes.io/credential-id".into(),
            vec![format!("JTI={}", claims.jti)],
        );
    }
    user
}

/// The user and groups of ServiceAccount `name` of `namespace` (also what impersonating one
/// gives).
pub fn service_account_user(namespace: &str, name: &str) -> UserInfo {
    UserInfo::new(
        &format!("{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{name}"),
        &[
            SERVICE_ACCOUNTS_GROUP,
            &format!("{SERVICE_ACCOUNTS_GROUP}:{namespace}"),
            AUTHENTICATED_GROUP,
        ],
    )
}

/// The namespace and name of a ServiceAccount user name (`system:serviceaccount:NS:NAME`).
pub fn split_service_account(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix(SERVICE_ACCOUNT_USER_PREFIX)?;
    let (namespace, name) = rest.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then_some((namespace, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use petset_pki::service_account_token::Bound;

    #[test]
    fn a_token_is_its_service_account_in_upstreams_groups_with_its_pod_as_extra() {
        let claims = Claims::new(
            "go-demo-3",
            Bound {
                name: "default".into(),
                uid: "sa-uid".into(),
            },
            Some(Bound {
                name: "db-0".into(),
                uid: "pod-uid".into(),
            }),
            Vec::new(),
            1_000,
            3600,
            "j1".into(),
        );
        let user = user_of(&claims);
        assert_eq!(user.name, "system:serviceaccount:go-demo-3:default");
        assert_eq!(user.uid, "sa-uid");
        assert_eq!(
            user.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:go-demo-3",
                "system:authenticated"
            ]
        );
        assert_eq!(
            user.extra["authentication.kubernetes.io/pod-name"],
            ["db-0"]
        );
        assert_eq!(
            user.extra["authentication.kubernetes.io/credential-id"],
            ["JTI=j1"]
        );
    }

    #[test]
    fn only_a_well_formed_service_account_name_splits() {
        assert_eq!(
            split_service_account("system:serviceaccount:ns:sa"),
            Some(("ns", "sa"))
        );
        for other in [
            "system:serviceaccount:ns",
            "system:serviceaccount::sa",
            "system:serviceaccount:ns:",
            "system:serviceaccount:a:b:c",
            "jane",
        ] {
            assert_eq!(split_service_account(other), None, "{other}");
        }
    }
}
