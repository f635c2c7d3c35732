//! Endpoints and EndpointSlices follow a Service's pods as their readiness changes.

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use serde_json::json;

use crate::support::{
    Running, cluster, create, eventually_equal, set_pod_status, wait_exists, wait_gone,
};

/// (ready IPs, not-ready IPs) of the Endpoints `name`.
async fn addresses(api: &Api<Endpoints>, name: &str) -> Result<(Vec<String>, Vec<String>), String> {
    let endpoints = api
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no Endpoints yet")?;
    let subset = endpoints.subsets.unwrap_or_default().into_iter().next();
    let ips = |addresses: Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>| {
        addresses
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.ip)
            .collect::<Vec<_>>()
    };
    Ok(subset.map_or_else(Default::default, |s| {
        (ips(s.addresses), ips(s.not_ready_addresses))
    }))
}

/// (IP, ready) of each endpoint of the Service's managed slices.
async fn slice_endpoints(
    api: &Api<EndpointSlice>,
    service: &str,
) -> Result<Vec<(String, bool)>, String> {
    let slices = api
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .map_err(|e| e.to_string())?
        .items;
    Ok(slices
        .iter()
        .flat_map(|s| &s.endpoints)
        .map(|e| {
            let ready = e.conditions.as_ref().and_then(|c| c.ready) == Some(true);
            (e.addresses.join(","), ready)
        })
        .collect())
}

#[tokio::test]
async fn ready_pods_are_addresses_and_a_pod_that_turns_unready_moves_to_not_ready() {
    let (_cluster, client) = cluster().await;
    let _endpoints = Running::default().with(petset_controllers::endpoints::run(client.clone()));
    let services: Api<Service> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    create(
        &services,
        json!({"metadata": {"name": "web"},
               "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    )
    .await;
    for name in ["web-0", "web-1", "other"] {
        let app = if name == "other" { "other" } else { "web" };
        create(
            &pods,
            json!({"metadata": {"name": name, "labels": {"app": app}},
                   "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        )
        .await;
    }
    set_pod_status(&client, "web-0", "10.0.0.10", true).await;
    set_pod_status(&client, "web-1", "10.0.0.9", false).await;
    set_pod_status(&client, "other", "10.0.0.8", true).await;

    let endpoints: Api<Endpoints> = Api::default_namespaced(client.clone());
    let slices: Api<EndpointSlice> = Api::default_namespaced(client.clone());
    let ips = |ips: &[&str]| ips.iter().map(|ip| ip.to_string()).collect::<Vec<_>>();
    eventually_equal(
        "the ready pod is an address, the other a not-ready one",
        (ips(&["10.0.0.10"]), ips(&["10.0.0.9"])),
        || addresses(&endpoints, "web"),
    )
    .await;
    eventually_equal(
        "the slice lists both, ordered by IP",
        vec![
            ("10.0.0.9".to_string(), false),
            ("10.0.0.10".to_string(), true),
        ],
        || slice_endpoints(&slices, "web"),
    )
    .await;

    set_pod_status(&client, "web-0", "10.0.0.10", false).await;
    eventually_equal(
        "the pod that turned unready is a not-ready address",
        (Vec::new(), ips(&["10.0.0.9", "10.0.0.10"])),
        || addresses(&endpoints, "web"),
    )
    .await;
    eventually_equal(
        "and not ready in the slice",
        vec![
            ("10.0.0.9".to_string(), false),
            ("10.0.0.10".to_string(), false),
        ],
        || slice_endpoints(&slices, "web"),
    )
    .await;
}

#[tokio::test]
async fn the_endpoints_of_a_deleted_service_go_with_it() {
    let (_cluster, client) = cluster().await;
    let _endpoints = Running::default().with(petset_controllers::endpoints::run(client.clone()));
    let services: Api<Service> = Api::default_namespaced(client.clone());
    create(
        &services,
        json!({"metadata": {"name": "db"}, "spec": {"selector": {"app": "db"}, "ports": [{"port": 5432}]}}),
    )
    .await;
    let endpoints: Api<Endpoints> = Api::default_namespaced(client.clone());
    wait_exists(&endpoints, "db").await;
    services
        .delete("db", &Default::default())
        .await
        .expect("delete the Service");
    wait_gone(&endpoints, "db").await;
}
