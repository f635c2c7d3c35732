//! `petset up` and `petset server`: open the data directory and the store, serve the API
//! (with `petset up`'s own node), and stop cleanly on SIGINT or SIGTERM.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use petset_apiserver::{serve, tls};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use petset_runtime::network::Cidr;

use crate::cli::{IngressListen, NodeRuntime, UpArgs};
use crate::cluster::{Cluster, ControlPlane};
use crate::datadir::DataDir;
use crate::node_role::{NodeOptions, OpenedNode};
use crate::server_endpoints::ServerEndpoint;

/// How long open requests may take to finish once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let image_store = crate::image::image_store_root(args.image_store.clone());
    let node = NodeOptions {
        name: petset_agent::node_name(),
        runtime: args.node_runtime,
        runtime_dir: PathBuf::new(),
        image_store,
        network: petset_runtime::network::NetworkConfig {
            bridge: args.bridge.clone(),
            cidr: args.pod_cidr,
            services: Some(args.service_cidr),
        },
        cluster_cidr: None,
        dns_listen: args.dns_listen,
        api_addresses: vec![api_endpoint(args.api_listen, None)],
        volumes: PathBuf::new(),
        pod_routes: false,
        fence: None,
        ingress_listen: match args.ingress_listen {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 80))),
            Some(IngressListen::Off) => None,
            Some(IngressListen::At(address)) => Some(address),
        },
    };
    serve(Server {
        data_dir: args.data_dir,
        api_listen: args.api_listen,
        advertise_address: None,
        store: args.store,
        compaction_interval: args.compaction_interval,
        service_cidr: args.service_cidr,
        cluster_cidr: None,
        local_path_dir: None,
        join: false,
        node: Some(node),
        kubelet_port: args.kubelet_port,
        node_lifecycle: Default::default(),
    })
    .await
}

/// What a server process runs: the control plane and, for `petset up`, its own node.
pub struct Server {
    pub data_dir: PathBuf,
    pub api_listen: SocketAddr,
    pub advertise_address: Option<IpAddr>,
    pub store: petset_store::StoreSpec,
    pub compaction_interval: u64,
    pub service_cidr: Cidr,
    /// Where nodes without a pod range get one (`petset server`).
    pub cluster_cidr: Option<Cidr>,
    /// Where `local-path` volumes are made on their nodes [default: DIR/volumes, as `petset up`
    /// has it; `petset server` always names one].
    pub local_path_dir: Option<PathBuf>,
    /// Whether agents may join (the join endpoints and DIR/node-token), and the API server
    /// dials nodes on other machines.
    pub join: bool,
    /// This process's node; its runtime and volume directories are set from the data dir.
    pub node: Option<NodeOptions>,
    pub kubelet_port: Option<u16>,
    /// How the servers judge silent nodes (upstream's defaults for `petset up`).
    pub node_lifecycle: petset_controllers::NodeLifecycleConfig,
}

/// Opens the data directory and the store, serves the API (with this process's node, if
/// any) and stops cleanly on SIGINT or SIGTERM.
pub async fn serve(server: Server) -> anyhow::Result<()> {
    let data_dir = DataDir::lock(&server.data_dir)?;
    tracing::info!(data_dir = %data_dir.path().display(), store = %server.store, "starting petset");
    let store = petset_store::open(&server.store, data_dir.path())
        .await
        .context("opening the store")?;
    // Servers that share a store (etcd) elect who runs the controllers and the compaction;
    // an embedded or memory store has one server only (the data dir is locked).
    let elected = matches!(server.store, petset_store::StoreSpec::Etcd { .. }) && server.join;
    let compaction = Duration::from_secs(server.compaction_interval);
    let compactor = (!elected).then(|| petset_store::spawn_compactor(store.clone(), compaction));
    let advertised = api_endpoint(server.api_listen, server.advertise_address);
    let kubernetes_ip = Ipv4Addr::from(u32::from(server.service_cidr.network()) + 1);
    let credentials = tls::load_or_create(data_dir.path(), advertised, kubernetes_ip.into())
        .context("setting up the cluster CA and serving certificate")?;
    let volumes = server
        .local_path_dir
        .clone()
        .unwrap_or_else(|| data_dir.path().join("volumes"));
    let remote_nodes = if server.join {
        let (cert, key) = tls::write_kubelet_client(data_dir.path())
            .context("writing the API server's client certificate for the node API")?;
        let read = |path: &std::path::Path| {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
        };
        let (cert, key) = (read(&cert)?, read(&key)?);
        let config = tls::kubelet_client_config(&credentials.ca_pem, Some((&cert, &key)))
            .context("setting up the API server's TLS for node APIs")?;
        Some(petset_apiserver::nodes::Tls::new(config))
    } else {
        None
    };
    // `petset up`'s node has its pod range from the command line and starts with the
    // control plane; a server's own node gets its range from node IPAM, once the API runs.
    let (early, late) = match server.node {
        Some(mut node) => {
            node.runtime_dir = crate::node_role::runtime_dir(data_dir.path());
            node.volumes = volumes.clone();
            if server.join {
                (None, Some(node))
            } else {
                (Some(node), None)
            }
        }
        None => (None, None),
    };
    let opened = match early {
        Some(node) => OpenedNode::open(node)?,
        None => None,
    };
    let identity = server_identity(data_dir.path())?;
    let election = elected.then(|| {
        petset_controllers::leader::ElectionConfig::new(
            petset_controllers::leader::CONTROLLERS_LEASE,
            &identity,
        )
    });
    let plane = ControlPlane {
        services: Some(server.service_cidr),
        cluster_cidr: server.cluster_cidr,
        volumes,
        remote_nodes,
        election,
        elected_compaction: elected.then_some(compaction),
        node_lifecycle: server.node_lifecycle,
        cluster_ca: Some(credentials.ca_pem.clone()),
        service_account_key: Some(credentials.service_account_key.clone()),
    };
    let mut cluster = Cluster::start_with(
        store.clone(),
        Some(credentials.admin_token.clone()),
        plane,
        opened,
    )
    .await?;
    let node_started = match late {
        Some(node) => start_own_node(&mut cluster, node, advertised, server.cluster_cidr).await,
        None => Ok(()),
    };
    if let Err(error) = node_started {
        cluster.stop().await;
        stop_compactor(&compactor);
        store.close().await;
        return Err(error);
    }
    // A server's own node serves where other nodes reach it (and route its pods via);
    // `petset up`'s serves on loopback.
    let node_address = if server.join {
        advertised.ip()
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    };
    if cluster.node_name().is_some()
        && let Err(error) = serve_node_api(
            &mut cluster,
            data_dir.path(),
            server.kubelet_port,
            node_address,
        )
        .await
    {
        cluster.stop().await;
        stop_compactor(&compactor);
        store.close().await;
        return Err(error);
    }
    let mut state = cluster.state.clone();
    if server.join {
        match allow_joins(
            state,
            data_dir.path(),
            server.cluster_cidr,
            server.service_cidr,
            &credentials.ca_pem,
        )
        .await
        {
            Ok(joining) => state = joining,
            Err(error) => {
                cluster.stop().await;
                stop_compactor(&compactor);
                store.close().await;
                return Err(error);
            }
        }
    }
    // The Endpoints are in place, and the kubeconfig written, before the API answers: a
    // client that sees /readyz say ok finds both.
    let endpoint = ServerEndpoint::new(cluster.client.clone(), &identity, advertised);
    if let Err(error) = endpoint.publish().await {
        tracing::warn!(%error, "could not write the kubernetes Service's endpoints");
    }
    let publishing = tokio::spawn(endpoint.clone().run());
    let kubeconfig = tls::write_kubeconfig(data_dir.path(), &credentials, server.api_listen)
        .context("writing the kubeconfig")?;
    let listener = TcpListener::bind(server.api_listen)
        .await
        .with_context(|| format!("listening on {}", server.api_listen))?;
    let app = petset_apiserver::router(state.clone());
    let mut serving = tokio::spawn(serve::serve_tls(
        listener,
        credentials.server_config.clone(),
        app,
        state.stopping(),
        SHUTDOWN_GRACE,
    ));
    tracing::info!(
        address = %server.api_listen,
        kubeconfig = %kubeconfig.display(),
        "API server listening; ready"
    );

    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received; shutting down"),
        _ = interrupt.recv() => tracing::info!("SIGINT received; shutting down"),
        ended = &mut serving => {
            publishing.abort();
            stop_compactor(&compactor);
            cluster.stop().await;
            store.close().await;
            return match ended {
                Ok(()) => Err(anyhow::anyhow!("the API server stopped unexpectedly")),
                Err(error) => Err(error).context("the API server task failed"),
            };
        }
    }
    publishing.abort();
    if let Err(error) = endpoint.withdraw().await {
        tracing::warn!(%error, "could not take this server out of the kubernetes Endpoints");
    }
    state.begin_shutdown();
    if let Err(error) = serving.await {
        tracing::warn!(%error, "the API server task failed while stopping");
    }
    cluster.stop().await;
    stop_compactor(&compactor);
    store.close().await;
    tracing::info!("petset stopped");
    Ok(())
}

fn stop_compactor(compactor: &Option<tokio::task::JoinHandle<()>>) {
    if let Some(compactor) = compactor {
        compactor.abort();
    }
}

/// This server's holder identity in elections, `<hostname>_<uuid>` as upstream's, kept in
/// DIR/server-identity: a server restarted on its data dir (which no other process can hold)
/// takes its Lease back at once instead of waiting out its own lease.
fn server_identity(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("server-identity");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| format!("reading {}", path.display()));
        }
    }
    let identity = format!("{}_{}", petset_agent::node_name(), uuid::Uuid::new_v4());
    std::fs::write(&path, format!("{identity}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(identity)
}

/// Lets agents join: the join routes sign with the cluster CA, and DIR/node-token holds a
/// token that pins it (made once, kept while it is valid).
async fn allow_joins(
    state: petset_apiserver::ApiState,
    data_dir: &std::path::Path,
    cluster_cidr: Option<Cidr>,
    service_cidr: Cidr,
    ca_pem: &str,
) -> anyhow::Result<petset_apiserver::ApiState> {
    let ca = tls::certificate_authority(data_dir)
        .context("loading the cluster CA to sign joining nodes' certificates")?;
    let cluster_cidr = cluster_cidr
        .map(|cidr| cidr.to_string())
        .unwrap_or_default();
    let state = state.with_join(petset_apiserver::join::JoinConfig {
        ca,
        cluster_cidr,
        service_cidr: service_cidr.to_string(),
    });
    petset_apiserver::join::ensure_initial_token(&state, data_dir, ca_pem)
        .await
        .context("writing the initial join token")?;
    tracing::info!(
        token_file = %data_dir.join(petset_apiserver::join::tokens::NODE_TOKEN_FILE).display(),
        "agents join with the token in this file (petset agent --token-file)"
    );
    Ok(state)
}

/// Registers a server's own node, waits for its pod range from node IPAM, and starts it.
async fn start_own_node(
    cluster: &mut Cluster,
    mut node: NodeOptions,
    advertised: SocketAddr,
    cluster_cidr: Option<Cidr>,
) -> anyhow::Result<()> {
    let kind = match node.runtime {
        Some(NodeRuntime::Simulated) => petset_agent::node::Kind::Simulated,
        _ => petset_agent::node::Kind::Runc,
    };
    let pod_cidr = petset_agent::node::await_pod_cidr(&cluster.client, &node.name, kind)
        .await
        .context("registering the server's own node")?;
    node.network.cidr = pod_cidr.parse().map_err(|e: String| {
        anyhow::anyhow!("node IPAM gave this node a pod range petset cannot use: {e}")
    })?;
    node.api_addresses = vec![advertised];
    node.cluster_cidr = cluster_cidr;
    tracing::info!(node = %node.name, %pod_cidr, "the server's own node has its pod range");
    match OpenedNode::open(node)? {
        Some(opened) => cluster.attach_node(opened).await,
        None => Ok(()),
    }
}

/// Serves this machine's node API over HTTPS on `address` (a certificate of the cluster CA for
/// the node; only the API server's client certificate, `DIR/pki/apiserver-kubelet-client.*`,
/// gets in), and publishes the address and port on the Node.
async fn serve_node_api(
    cluster: &mut Cluster,
    data_dir: &std::path::Path,
    port: Option<u16>,
    address: IpAddr,
) -> anyhow::Result<()> {
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

/// Where nodes and pods reach the API: the advertised address, else the listen address, or
/// loopback when it listens on every address.
fn api_endpoint(listen: SocketAddr, advertise: Option<IpAddr>) -> SocketAddr {
    match advertise {
        Some(address) => SocketAddr::new(address, listen.port()),
        None if listen.ip().is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port())
        }
        None => listen,
    }
}
