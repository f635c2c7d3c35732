//! `petset up`: opens the data directory and the store, serves the API, and stops cleanly on
//! SIGINT or SIGTERM.

use std::time::Duration;

use anyhow::Context;
use petset_apiserver::{serve, tls};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::UpArgs;
use crate::cluster::{Cluster, NodeSettings};
use crate::datadir::DataDir;

/// How long open requests may take to finish once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let data_dir = DataDir::lock(&args.data_dir)?;
    tracing::info!(data_dir = %data_dir.path().display(), store = %args.store, "starting petset");
    let store = petset_store::open(&args.store, data_dir.path())
        .await
        .context("opening the store")?;
    let compactor =
        petset_store::spawn_compactor(store.clone(), Duration::from_secs(args.compaction_interval));

    let kubernetes_ip = std::net::Ipv4Addr::from(u32::from(args.service_cidr.network()) + 1);
    let credentials = tls::load_or_create(data_dir.path(), args.api_listen, kubernetes_ip.into())
        .context("setting up the cluster CA and serving certificate")?;
    let mut cluster = Cluster::start(
        store.clone(),
        Some(credentials.admin_token.clone()),
        data_dir.path(),
        NodeSettings {
            runtime: args.node_runtime,
            image_store: crate::image::image_store_root(args.image_store.clone()),
            network: petset_runtime::network::NetworkConfig {
                bridge: args.bridge.clone(),
                cidr: args.pod_cidr,
                services: Some(args.service_cidr),
            },
            dns_listen: args.dns_listen,
            api_address: Some(api_endpoint(args.api_listen)),
        },
    )
    .await?;
    if cluster.node_name().is_some()
        && let Err(error) = serve_node_api(&mut cluster, data_dir.path(), args.kubelet_port).await
    {
        cluster.stop().await;
        compactor.abort();
        store.close().await;
        return Err(error);
    }
    let state = cluster.state.clone();
    // The Endpoints are in place, and the kubeconfig written, before the API answers: a
    // client that sees /readyz say ok finds both.
    if let Err(error) =
        point_kubernetes_service_at(&cluster.client, api_endpoint(args.api_listen)).await
    {
        tracing::warn!(%error, "could not write the kubernetes Service's endpoints");
    }
    let kubeconfig = tls::write_kubeconfig(data_dir.path(), &credentials, args.api_listen)
        .context("writing the kubeconfig")?;
    let listener = TcpListener::bind(args.api_listen)
        .await
        .with_context(|| format!("listening on {}", args.api_listen))?;
    let app = petset_apiserver::router(state.clone());
    let mut server = tokio::spawn(serve::serve_tls(
        listener,
        credentials.server_config.clone(),
        app,
        state.stopping(),
        SHUTDOWN_GRACE,
    ));
    tracing::info!(
        address = %args.api_listen,
        kubeconfig = %kubeconfig.display(),
        "API server listening; ready"
    );

    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received; shutting down"),
        _ = interrupt.recv() => tracing::info!("SIGINT received; shutting down"),
        ended = &mut server => {
            compactor.abort();
            cluster.stop().await;
            store.close().await;
            return match ended {
                Ok(()) => Err(anyhow::anyhow!("the API server stopped unexpectedly")),
                Err(error) => Err(error).context("the API server task failed"),
            };
        }
    }
    state.begin_shutdown();
    if let Err(error) = server.await {
        tracing::warn!(%error, "the API server task failed while stopping");
    }
    cluster.stop().await;
    compactor.abort();
    store.close().await;
    tracing::info!("petset stopped");
    Ok(())
}

/// Serves this machine's node API over HTTPS on loopback (a certificate of the cluster CA for
/// the node; only the API server's client certificate, `DIR/pki/apiserver-kubelet-client.*`,
/// gets in), and publishes its port on the Node.
async fn serve_node_api(
    cluster: &mut Cluster,
    data_dir: &std::path::Path,
    port: Option<u16>,
) -> anyhow::Result<()> {
    let address = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    let node = cluster.node_name().unwrap_or_default().to_string();
    let config = tls::kubelet_server_config(data_dir, &node, address)
        .context("signing the node API's serving certificate")?;
    tls::write_kubelet_client(data_dir)
        .context("writing the API server's client certificate for the node API")?;
    let listener = match port {
        Some(port) => TcpListener::bind((address, port))
            .await
            .with_context(|| format!("listening for the node API on {address}:{port}"))?,
        // The default port may be another kubelet's, or another petset's: then any free one
        // (the Node says which, as upstream's kubelet publishes its port).
        None => match TcpListener::bind((address, petset_agent::kubelet::DEFAULT_PORT)).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, port = petset_agent::kubelet::DEFAULT_PORT, "the node API's default port is taken; using any free port (see --kubelet-port)");
                TcpListener::bind((address, 0))
                    .await
                    .context("listening for the node API")?
            }
        },
    };
    let serving = cluster.serve_kubelet(listener, config)?;
    tracing::info!(address = %serving, node = %node, "node API listening");
    Ok(())
}

/// Where pods reach the API: the listen address, or loopback when it listens on all addresses.
fn api_endpoint(listen: std::net::SocketAddr) -> std::net::SocketAddr {
    if listen.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), listen.port())
    } else {
        listen
    }
}

/// The `kubernetes` Service's Endpoints name the API server, as upstream's endpoint reconciler
/// writes them, so the node's service proxy relays its ClusterIP to the API.
async fn point_kubernetes_service_at(
    client: &kube::Client,
    api: std::net::SocketAddr,
) -> Result<(), kube::Error> {
    use k8s_openapi::api::core::v1::Endpoints;
    let endpoints: kube::Api<Endpoints> = kube::Api::namespaced(client.clone(), "default");
    let desired = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{
            "addresses": [{"ip": api.ip().to_string()}],
            "ports": [{"name": "https", "port": api.port(), "protocol": "TCP"}],
        }],
    });
    endpoints
        .patch(
            "kubernetes",
            &kube::api::PatchParams::apply("petset").force(),
            &kube::api::Patch::Apply(&desired),
        )
        .await
        .map(|_| ())
}
