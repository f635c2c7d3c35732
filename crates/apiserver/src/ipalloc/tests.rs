use std::collections::HashSet;
use std::sync::Arc;

use petset_store::LocalStore;

use super::*;
use crate::ApiState;
use crate::registry::{DeleteOptions, Scope};

fn services() -> Scope<'static> {
    Scope {
        resource: resources::find("", "v1", "services").expect("services are served"),
        namespace: Some("default"),
    }
}

fn service(name: &str, cluster_ip: Option<&str>) -> Value {
    let mut spec = json!({"ports": [{"port": 80}]});
    if let Some(ip) = cluster_ip {
        spec["clusterIP"] = json!(ip);
    }
    json!({"metadata": {"name": name}, "spec": spec})
}

fn cluster_ip(object: &Value) -> String {
    object
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Two API servers over one store, as two `petset` processes over one etcd would be.
async fn two_servers() -> (Arc<dyn Store>, ApiState, ApiState) {
    let store: Arc<dyn Store> = Arc::new(LocalStore::in_memory());
    let first = ApiState::new(store.clone(), None);
    first.registry().bootstrap().await.expect("bootstrap");
    let second = ApiState::new(store.clone(), None);
    second.registry().bootstrap().await.expect("bootstrap");
    (store, first, second)
}

/// A Service made through `server`'s registry.
async fn create(
    server: &ApiState,
    name: &str,
    cluster_ip: Option<&str>,
) -> Result<Value, ApiError> {
    server
        .registry()
        .create(services(), service(name, cluster_ip), false)
        .await
}

async fn address_keys(store: &dyn Store) -> Vec<Ipv4Addr> {
    addresses(store)
        .await
        .expect("list")
        .iter()
        .filter_map(|kv| address_of(&kv.key))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_creating_services_at_once_never_share_an_address() {
    let (store, first, second) = two_servers().await;
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..40 {
        let server = if i % 2 == 0 { &first } else { &second };
        let registry = server.registry().clone();
        creates.spawn(async move {
            registry
                .create(services(), service(&format!("svc-{i}"), None), false)
                .await
                .map(|created| cluster_ip(&created))
        });
    }
    let mut given = HashSet::new();
    while let Some(created) = creates.join_next().await {
        let ip = created.expect("task").expect("create");
        assert!(given.insert(ip.clone()), "{ip} was handed out twice");
    }
    assert_eq!(given.len(), 40);
    // One key per address, the `kubernetes` Service's included.
    assert_eq!(address_keys(store.as_ref()).await.len(), 41);
}

#[tokio::test]
async fn a_requested_address_another_server_gave_out_is_refused_in_upstreams_words() {
    let (_store, first, second) = two_servers().await;
    create(&first, "a", Some("10.96.0.10"))
        .await
        .expect("create a");
    let Err(error) = create(&second, "b", Some("10.96.0.10")).await else {
        panic!("one address, two Services");
    };
    assert_eq!(error.code, 422);
    assert_eq!(
        error.message,
        "Service \"b\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.96.0.10\"}: failed to allocate IP 10.96.0.10: provided IP is already allocated"
    );
    let Err(error) = create(&second, "c", Some("10.200.0.1")).await else {
        panic!("an address out of range");
    };
    assert_eq!(
        error.message,
        "Service \"c\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.200.0.1\"}: failed to allocate IP 10.200.0.1: provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12"
    );
}

#[tokio::test]
async fn a_deleted_services_address_is_free_again() {
    let (store, first, second) = two_servers().await;
    create(&first, "a", Some("10.96.0.10"))
        .await
        .expect("create a");
    first
        .registry()
        .delete(services(), "a", &DeleteOptions::default())
        .await
        .expect("delete a");
    assert!(
        !address_keys(store.as_ref())
            .await
            .contains(&Ipv4Addr::new(10, 96, 0, 10))
    );
    let b = create(&second, "b", Some("10.96.0.10"))
        .await
        .expect("the address is free again");
    assert_eq!(cluster_ip(&b), "10.96.0.10");
}

/// A Service that waited for a finalizer (a foreground or orphan deletion, or anyone's) frees
/// its address when the last finalizer goes.
#[tokio::test]
async fn a_service_that_goes_with_its_last_finalizer_frees_its_address() {
    let (store, first, _second) = two_servers().await;
    let mut held = service("a", Some("10.96.0.11"));
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    first
        .registry()
        .create(services(), held, false)
        .await
        .expect("create a");
    first
        .registry()
        .delete(services(), "a", &DeleteOptions::default())
        .await
        .expect("delete a");
    let ip = Ipv4Addr::new(10, 96, 0, 11);
    assert!(address_keys(store.as_ref()).await.contains(&ip));
    let mut current = first
        .registry()
        .get(services(), "a")
        .await
        .expect("still there");
    current["metadata"]["finalizers"] = json!([]);
    first
        .registry()
        .update(services(), "a", None, current, false)
        .await
        .expect("the last finalizer goes");
    assert!(!address_keys(store.as_ref()).await.contains(&ip));
}

#[tokio::test]
async fn a_dry_run_or_a_failed_create_keeps_no_address() {
    let (store, first, _second) = two_servers().await;
    let before = address_keys(store.as_ref()).await;
    let dry = first
        .registry()
        .create(services(), service("a", Some("10.96.0.20")), true)
        .await
        .expect("dry run");
    assert_eq!(cluster_ip(&dry), "10.96.0.20");
    assert_eq!(address_keys(store.as_ref()).await, before);
    create(&first, "a", Some("10.96.0.20"))
        .await
        .expect("the dry run reserved nothing");
    let with_a = address_keys(store.as_ref()).await;
    // The same name again: 409, and the address it was about to get goes back.
    let again = create(&first, "a", None).await;
    assert_eq!(again.err().map(|e| e.code), Some(409));
    assert_eq!(address_keys(store.as_ref()).await, with_a);
}

/// An address key as an earlier process left it: naming `parent`, made `age` ago.
async fn leave_key(store: &dyn Store, ip: Ipv4Addr, parent: &str, age: Duration) {
    let created = jiff::Timestamp::now() - jiff::SignedDuration::try_from(age).expect("age");
    let mut address: Value = serde_json::from_slice(
        &Parent {
            namespace: "default".into(),
            name: parent.into(),
            uid: "gone".into(),
        }
        .address(ip),
    )
    .expect("json");
    address["metadata"]["creationTimestamp"] = json!(time::format(created));
    store
        .create(&key_of(ip), Bytes::from(address.to_string()))
        .await
        .expect("leave a key");
}

#[tokio::test]
async fn a_requested_address_leaked_long_ago_is_taken_over_and_a_fresh_one_is_not() {
    let (store, first, _second) = two_servers().await;
    let old = Ipv4Addr::new(10, 96, 0, 30);
    let fresh = Ipv4Addr::new(10, 96, 0, 31);
    leave_key(store.as_ref(), old, "crashed", Duration::from_secs(120)).await;
    leave_key(store.as_ref(), fresh, "in-flight", Duration::ZERO).await;
    create(&first, "a", Some("10.96.0.30"))
        .await
        .expect("a leaked address is reclaimed");
    let in_flight = create(&first, "b", Some("10.96.0.31")).await;
    assert_eq!(in_flight.err().map(|e| e.code), Some(422));
}

#[tokio::test]
async fn repair_records_services_without_a_key_and_releases_keys_without_a_service() {
    let (store, first, _second) = two_servers().await;
    // A Service stored before address keys existed.
    let legacy = json!({"metadata": {"name": "legacy", "namespace": "default", "uid": "u1"},
        "spec": {"clusterIP": "10.96.0.40", "clusterIPs": ["10.96.0.40"]}});
    let services_type = resources::find("", "v1", "services").expect("services");
    store
        .create(
            &services_type.store_key(Some("default"), "legacy"),
            Bytes::from(legacy.to_string()),
        )
        .await
        .expect("store a legacy Service");
    let orphan = Ipv4Addr::new(10, 96, 0, 41);
    let recent = Ipv4Addr::new(10, 96, 0, 42);
    leave_key(store.as_ref(), orphan, "deleted", Duration::from_secs(120)).await;
    leave_key(store.as_ref(), recent, "being-created", Duration::ZERO).await;
    let live = create(&first, "live", None).await.expect("create");
    let live_ip: Ipv4Addr = cluster_ip(&live).parse().expect("an address");

    let network = ServiceNetwork::new(crate::registry::DEFAULT_SERVICE_NETWORK);
    let repaired = repair(store.as_ref(), network, RESERVATION_GRACE)
        .await
        .expect("repair");
    assert_eq!(
        repaired,
        Repaired {
            recorded: vec![Ipv4Addr::new(10, 96, 0, 40)],
            released: vec![orphan],
        }
    );
    let keys = address_keys(store.as_ref()).await;
    assert!(keys.contains(&Ipv4Addr::new(10, 96, 0, 40)), "{keys:?}");
    assert!(keys.contains(&live_ip), "{keys:?}");
    assert!(keys.contains(&recent), "{keys:?}");
    assert!(!keys.contains(&orphan), "{keys:?}");
    // The recorded address is the legacy Service's: nobody else gets it.
    let taken = create(&first, "b", Some("10.96.0.40")).await;
    assert_eq!(taken.err().map(|e| e.code), Some(422));
    // A second pass finds nothing to do.
    assert_eq!(
        repair(store.as_ref(), network, RESERVATION_GRACE)
            .await
            .expect("repair"),
        Repaired::default()
    );
}
