//! The `kubernetes` Service's Endpoints name every live API server, as upstream's lease
//! endpoint reconciler keeps them: each server holds a Lease of its own in `kube-system`
//! (label `apiserver.kubernetes.io/identity: kube-apiserver`, its address in an annotation),
//! renews it, and sets the Endpoints to the addresses of the Leases that are still fresh. A
//! server that stops cleanly deletes its Lease and takes itself out; one that dies drops out
//! once its Lease is stale.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;

/// Upstream's label on API servers' identity Leases.
const IDENTITY_LABEL: &str = "apiserver.kubernetes.io/identity";
const IDENTITY_VALUE: &str = "kube-apiserver";
/// Where a server's Lease says it serves.
const ADDRESS_ANNOTATION: &str = "petset.dev/advertise-address";
/// How long a server's Lease counts without renewal (upstream's master lease TTL).
const LEASE_SECONDS: i64 = 15;
/// How often a server renews its Lease and reconciles the Endpoints.
const RENEW: Duration = Duration::from_secs(5);

/// One server's place in the `kubernetes` Endpoints.
#[derive(Clone)]
pub struct ServerEndpoint {
    client: Client,
    lease_name: String,
    identity: String,
    address: SocketAddr,
}

impl ServerEndpoint {
    pub fn new(client: Client, identity: &str, address: SocketAddr) -> Self {
        // A Lease name is a DNS subdomain; the identity holds a hostname and a uuid.
        let suffix: String = identity
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        Self {
            client,
            lease_name: format!("petset-apiserver-{}", suffix.trim_matches('-')),
            identity: identity.to_string(),
            address,
        }
    }

    fn leases(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), "kube-system")
    }

    /// Renews this server's Lease and reconciles the Endpoints once.
    pub async fn publish(&self) -> Result<(), kube::Error> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.lease_name.clone()),
                namespace: Some("kube-system".into()),
                labels: Some(BTreeMap::from([(
                    IDENTITY_LABEL.to_string(),
                    IDENTITY_VALUE.to_string(),
                )])),
                annotations: Some(BTreeMap::from([(
                    ADDRESS_ANNOTATION.to_string(),
                    self.address.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(LEASE_SECONDS as i32),
                renew_time: Some(MicroTime(jiff::Timestamp::now())),
                ..LeaseSpec::default()
            }),
        };
        self.leases()
            .patch(
                &self.lease_name,
                &PatchParams::apply("petset-apiserver").force(),
                &Patch::Apply(&lease),
            )
            .await?;
        self.reconcile().await
    }

    /// Keeps publishing until the task is aborted.
    pub async fn run(self) {
        loop {
            tokio::time::sleep(RENEW).await;
            if let Err(error) = self.publish().await {
                tracing::warn!(%error, "could not renew this server's place in the kubernetes Endpoints");
            }
        }
    }

    /// Takes this server out: deletes its Lease and reconciles the Endpoints without it.
    pub async fn withdraw(&self) -> Result<(), kube::Error> {
        match self
            .leases()
            .delete(&self.lease_name, &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(error),
        }
        self.reconcile().await
    }

    /// Sets the Endpoints to the addresses of the fresh servers' Leases.
    async fn reconcile(&self) -> Result<(), kube::Error> {
        let listed = self
            .leases()
            .list(&ListParams::default().labels(&format!("{IDENTITY_LABEL}={IDENTITY_VALUE}")))
            .await?;
        let now = jiff::Timestamp::now();
        let live: Vec<SocketAddr> = listed
            .items
            .iter()
            .filter(|lease| is_fresh(lease, now))
            .filter_map(|lease| lease.metadata.annotations.as_ref()?.get(ADDRESS_ANNOTATION))
            .filter_map(|address| address.parse().ok())
            .collect();
        let desired = endpoints_of(&live);
        let endpoints: Api<Endpoints> = Api::namespaced(self.client.clone(), "default");
        endpoints
            .patch(
                "kubernetes",
                &PatchParams::apply("petset").force(),
                &Patch::Apply(&desired),
            )
            .await
            .map(|_| ())
    }
}

/// Whether a server's Lease was renewed within its duration (by the wall clock: servers'
/// clocks must agree within seconds, as upstream's lease reconciler assumes).
fn is_fresh(lease: &Lease, now: jiff::Timestamp) -> bool {
    let Some(spec) = &lease.spec else {
        return false;
    };
    let seconds = spec.lease_duration_seconds.map_or(LEASE_SECONDS, i64::from);
    spec.renew_time
        .as_ref()
        .is_some_and(|renewed| now.as_second() - renewed.0.as_second() <= seconds)
}

/// The Endpoints for these servers: a subset per port, addresses sorted.
fn endpoints_of(servers: &[SocketAddr]) -> serde_json::Value {
    let mut by_port: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for server in servers {
        by_port
            .entry(server.port())
            .or_default()
            .push(server.ip().to_string());
    }
    let subsets: Vec<serde_json::Value> = by_port
        .into_iter()
        .map(|(port, mut addresses)| {
            addresses.sort();
            addresses.dedup();
            json!({
                "addresses": addresses.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            })
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": subsets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_on_one_port_share_a_subset_and_others_get_their_own() {
        let servers: Vec<SocketAddr> = ["10.0.0.2:6443", "10.0.0.1:6443", "10.0.0.3:7443"]
            .iter()
            .map(|s| s.parse().expect("address"))
            .collect();
        let endpoints = endpoints_of(&servers);
        assert_eq!(
            endpoints["subsets"],
            json!([
                {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                 "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]},
                {"addresses": [{"ip": "10.0.0.3"}],
                 "ports": [{"name": "https", "port": 7443, "protocol": "TCP"}]},
            ])
        );
    }

    #[test]
    fn a_lease_is_fresh_for_its_duration_after_its_renewal() {
        let renewed = jiff::Timestamp::from_second(1_000).expect("time");
        let lease = Lease {
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(renewed)),
                lease_duration_seconds: Some(15),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        };
        let at = |second| jiff::Timestamp::from_second(second).expect("time");
        assert!(is_fresh(&lease, at(1_015)));
        assert!(!is_fresh(&lease, at(1_016)));
        assert!(!is_fresh(&Lease::default(), at(1_000)));
    }
}
