//! Acting as another user (`kubectl --as`, `--as-group`, `--as-uid`): upstream's impersonation
//! filter. Each thing asked for is authorized for the real user with the verb `impersonate`: the
//! user (`users`, or `serviceaccounts` in its namespace for a ServiceAccount), every group
//! (`groups`), the uid (`uids.authentication.k8s.io`) and every extra value
//! (`userextras/<key>.authentication.k8s.io`). The request then runs as the impersonated user,
//! and the headers are gone before any handler sees them.

use axum::http::{HeaderMap, HeaderName};
use petset_api::ApiError;

use super::authz::Facts;
use super::service_accounts::{SERVICE_ACCOUNTS_GROUP, split_service_account};
use super::{RequestInfo, UserInfo};

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";
const AUTHENTICATED: &str = "system:authenticated";
const UNAUTHENTICATED: &str = "system:unauthenticated";
const ANONYMOUS: &str = "system:anonymous";

/// What a request asks to be impersonated as, read from its headers.
#[derive(Debug, Default, PartialEq, Eq)]
struct Asked {
    user: Option<String>,
    groups: Vec<String>,
    uid: Option<String>,
    extra: Vec<(String, String)>,
}

fn asked(headers: &HeaderMap) -> Result<Asked, ApiError> {
    let text = |value: &axum::http::HeaderValue| {
        value
            .to_str()
            .map(str::to_string)
            .map_err(|_| ApiError::bad_request("impersonation headers must be text"))
    };
    let mut asked = Asked::default();
    for (name, value) in headers {
        let name = name.as_str();
        if name == USER {
            asked.user = Some(text(value)?);
        } else if name == GROUP {
            asked.groups.push(text(value)?);
        } else if name == UID {
            asked.uid = Some(text(value)?);
        } else if let Some(key) = name.strip_prefix(EXTRA_PREFIX) {
            // Keys are percent-encoded in header names (upstream's `unescapeExtraKey`).
            let key = percent_decoded(key);
            asked.extra.push((key, text(value)?));
        }
    }
    Ok(asked)
}

fn percent_decoded(text: &str) -> String {
    form_urlencoded::parse(format!("k={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_string())
}

/// Whether a request asks to impersonate anyone.
pub fn requested(headers: &HeaderMap) -> bool {
    headers.keys().any(|name| {
        let name = name.as_str();
        name == USER || name == GROUP || name == UID || name.starts_with(EXTRA_PREFIX)
    })
}

/// One thing impersonated, as the request the real user must be allowed.
fn impersonate(
    api_group: &str,
    resource: &str,
    subresource: &str,
    namespace: &str,
    name: &str,
) -> RequestInfo {
    RequestInfo {
        verb: "impersonate".into(),
        is_resource_request: true,
        path: String::new(),
        api_group: api_group.into(),
        api_version: String::new(),
        namespace: namespace.into(),
        resource: resource.into(),
        subresource: subresource.into(),
        name: name.into(),
    }
}

/// The user a request runs as: `real`, or whom its headers impersonate when `real` may.
/// `authorize` is the server's whole authorizer.
pub fn apply(
    real: UserInfo,
    headers: &mut HeaderMap,
    authorize: impl Fn(&UserInfo, &RequestInfo, &Facts) -> Result<(), ApiError>,
) -> Result<UserInfo, ApiError> {
    if !requested(headers) {
        return Ok(real);
    }
    let asked = asked(headers)?;
    let Some(name) = asked.user.clone() else {
        return Err(ApiError::bad_request(
            "requested impersonation of groups, a uid or extra without impersonating a user",
        ));
    };
    let facts = Facts::default();
    let mut checks = Vec::new();
    let service_account = split_service_account(&name);
    match service_account {
        Some((namespace, account)) => {
            checks.push(impersonate("", "serviceaccounts", "", namespace, account))
        }
        None => checks.push(impersonate("", "users", "", "", &name)),
    }
    for group in &asked.groups {
        checks.push(impersonate("", "groups", "", "", group));
    }
    if let Some(uid) = &asked.uid {
        checks.push(impersonate("authentication.k8s.io", "uids", "", "", uid));
    }
    for (key, value) in &asked.extra {
        checks.push(impersonate(
            "authentication.k8s.io",
            "userextras",
            key,
            "",
            value,
        ));
    }
    for check in &checks {
        authorize(&real, check, &facts)?;
    }
    let mut groups = asked.groups.clone();
    if let Some((namespace, _)) = service_account
        && groups.is_empty()
    {
        groups = vec![
            SERVICE_ACCOUNTS_GROUP.to_string(),
            format!("{SERVICE_ACCOUNTS_GROUP}:{namespace}"),
        ];
    }
    let implied = if name == ANONYMOUS {
        UNAUTHENTICATED
    } else {
        AUTHENTICATED
    };
    if !groups.iter().any(|g| g == implied) {
        groups.push(implied.to_string());
    }
    let mut user = UserInfo {
        name,
        uid: asked.uid.clone().unwrap_or_default(),
        groups,
        ..UserInfo::default()
    };
    for (key, value) in asked.extra {
        user.extra.entry(key).or_default().push(value);
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            name == USER || name == GROUP || name == UID || name.starts_with(EXTRA_PREFIX)
        })
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).expect("header"));
        }
        headers
    }

    fn allow_all(_: &UserInfo, _: &RequestInfo, _: &Facts) -> Result<(), ApiError> {
        Ok(())
    }

    #[test]
    fn a_service_account_gets_its_groups_and_the_headers_go() {
        let mut sent = headers(&[("Impersonate-User", "system:serviceaccount:shop:db")]);
        let user = apply(UserInfo::new("admin", &[]), &mut sent, allow_all).expect("allowed");
        assert_eq!(user.name, "system:serviceaccount:shop:db");
        assert_eq!(
            user.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:shop",
                "system:authenticated"
            ]
        );
        assert!(sent.is_empty());
    }

    #[test]
    fn each_thing_impersonated_is_authorized_as_upstream_names_it() {
        let mut sent = headers(&[
            ("Impersonate-User", "jane"),
            ("Impersonate-Group", "developers"),
            ("Impersonate-Group", "ops"),
            ("Impersonate-Uid", "u-1"),
            ("Impersonate-Extra-Scopes%2Fa", "read"),
        ]);
        let seen = std::cell::RefCell::new(Vec::new());
        let user = apply(UserInfo::new("admin", &[]), &mut sent, |_, info, _| {
            seen.borrow_mut().push(format!(
                "{} {}/{} {}",
                info.api_group, info.resource, info.subresource, info.name
            ));
            Ok(())
        })
        .expect("allowed");
        assert_eq!(
            seen.into_inner(),
            [
                " users/ jane",
                " groups/ developers",
                " groups/ ops",
                "authentication.k8s.io uids/ u-1",
                "authentication.k8s.io userextras/scopes/a read",
            ]
        );
        assert_eq!(user.groups, ["developers", "ops", "system:authenticated"]);
        assert_eq!(user.uid, "u-1");
        assert_eq!(user.extra["scopes/a"], ["read"]);
    }

    #[test]
    fn a_refusal_stops_it_and_groups_alone_are_a_bad_request() {
        let refuse = |_: &UserInfo, _: &RequestInfo, _: &Facts| Err(ApiError::bad_request("no"));
        let mut sent = headers(&[("Impersonate-User", "jane")]);
        assert!(apply(UserInfo::new("bob", &[]), &mut sent, refuse).is_err());
        let mut groups_only = headers(&[("Impersonate-Group", "ops")]);
        let error =
            apply(UserInfo::new("bob", &[]), &mut groups_only, allow_all).expect_err("refused");
        assert_eq!(error.code, 400);
        let mut none = HeaderMap::new();
        let user = apply(UserInfo::new("bob", &[]), &mut none, refuse).expect("no impersonation");
        assert_eq!(user.name, "bob");
    }
}
