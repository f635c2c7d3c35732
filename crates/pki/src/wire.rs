//! The join's wire format, shared by the server that answers and the agent that asks.
//!
//! `POST /v1-petset/join` with `Authorization: Bearer <id>.<secret>` and a [`JoinRequest`]
//! body; 200 with a [`JoinResponse`], or a Kubernetes `Status` (401 token, 403 node password,
//! 400 request). `GET /cacerts` answers the CA PEM without authentication.

use serde::{Deserialize, Serialize};

/// The path of the CA bundle.
pub const CACERTS_PATH: &str = "/cacerts";
/// The path of the join.
pub const JOIN_PATH: &str = "/v1-petset/join";
/// The cluster domain every join answers (petset has no other).
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// What an agent sends to join. Its `Debug` leaves the password out, so a log line of it
/// gives nothing away.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    pub node_name: String,
    /// The agent's own password (`DIR/node-password`); the server keeps only its hash.
    pub node_password: String,
    #[serde(rename = "nodeIPs")]
    pub node_ips: Vec<String>,
    /// PEM CSR for the node's client key.
    #[serde(rename = "clientCSR")]
    pub client_csr: String,
    /// PEM CSR for the node API's serving key.
    #[serde(rename = "servingCSR")]
    pub serving_csr: String,
}

impl std::fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinRequest")
            .field("node_name", &self.node_name)
            .field("node_password", &"<hidden>")
            .field("node_ips", &self.node_ips)
            .finish_non_exhaustive()
    }
}

/// What the server answers a successful join with (all PEM certificates).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinResponse {
    pub ca_certificate: String,
    pub client_certificate: String,
    pub serving_certificate: String,
    #[serde(flatten)]
    pub network: ClusterNetwork,
}

/// The networks a server tells its agents about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetwork {
    /// The pod network nodes get their `/24`s from.
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: String,
    /// The ClusterIP network.
    #[serde(rename = "serviceCIDR")]
    pub service_cidr: String,
    pub cluster_domain: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fields_have_their_wire_names() {
        let request = JoinRequest {
            node_name: "n".into(),
            node_password: "p".into(),
            node_ips: vec!["10.0.0.1".into()],
            client_csr: "c".into(),
            serving_csr: "s".into(),
        };
        assert_eq!(
            serde_json::to_value(&request).expect("json"),
            serde_json::json!({"nodeName": "n", "nodePassword": "p", "nodeIPs": ["10.0.0.1"],
                "clientCSR": "c", "servingCSR": "s"})
        );
        let response = JoinResponse {
            ca_certificate: "a".into(),
            client_certificate: "c".into(),
            serving_certificate: "s".into(),
            network: ClusterNetwork {
                cluster_cidr: "10.42.0.0/16".into(),
                service_cidr: "10.96.0.0/12".into(),
                cluster_domain: CLUSTER_DOMAIN.into(),
            },
        };
        assert_eq!(
            serde_json::to_value(&response).expect("json"),
            serde_json::json!({"caCertificate": "a", "clientCertificate": "c",
                "servingCertificate": "s", "clusterCIDR": "10.42.0.0/16",
                "serviceCIDR": "10.96.0.0/12", "clusterDomain": "cluster.local"})
        );
    }

    #[test]
    fn a_logged_request_hides_the_password() {
        let request = JoinRequest {
            node_name: "n".into(),
            node_password: "hunter2-password".into(),
            node_ips: vec![],
            client_csr: String::new(),
            serving_csr: String::new(),
        };
        let logged = format!("{request:?}");
        assert!(!logged.contains("hunter2-password"), "{logged}");
        assert!(logged.contains("\"n\""), "{logged}");
    }
}
