//! `petset server`: the API server, the controllers and the store, which agents join
//! (`petset agent`); with `--node-runtime runc|simulated` it runs a node of its own too.

use crate::cli::{NodeRuntime, ServerArgs};
use crate::node_role::NodeOptions;
use crate::up::{Server, serve};

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let node = (args.node_runtime != NodeRuntime::None).then(|| NodeOptions {
        name: args
            .node_name
            .clone()
            .unwrap_or_else(petset_agent::node_name),
        runtime: Some(args.node_runtime),
        runtime_dir: std::path::PathBuf::new(),
        image_store: crate::image::image_store_root(args.image_store.clone()),
        network: petset_runtime::network::NetworkConfig {
            bridge: args.bridge.clone(),
            // Replaced by the range node IPAM gives the node.
            cidr: args.cluster_cidr,
            services: Some(args.service_cidr),
        },
        cluster_cidr: Some(args.cluster_cidr),
        dns_listen: None,
        api_addresses: Vec::new(),
        volumes: args.local_path_dir.clone(),
        pod_routes: args.pod_routes,
        fence: None,
        ingress_listen: None,
    });
    serve(Server {
        data_dir: args.data_dir,
        api_listen: args.api_listen,
        advertise_address: args.advertise_address,
        store: args.store,
        compaction_interval: args.compaction_interval,
        service_cidr: args.service_cidr,
        cluster_cidr: Some(args.cluster_cidr),
        local_path_dir: Some(args.local_path_dir),
        join: true,
        node,
        kubelet_port: Some(
            args.kubelet_port
                .unwrap_or(petset_agent::kubelet::DEFAULT_PORT),
        ),
        node_lifecycle: petset_controllers::NodeLifecycleConfig {
            grace_period: std::time::Duration::from_secs(args.node_monitor_grace_period),
            ..Default::default()
        },
    })
    .await
}
