//! `petset server`: the API server, the controllers and the store, which agents join
//! (`petset agent`); no node of its own.

use crate::cli::ServerArgs;
use crate::up::{Server, serve};

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
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
        node: None,
        kubelet_port: None,
    })
    .await
}
