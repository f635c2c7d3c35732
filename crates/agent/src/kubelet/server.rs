//! The node API over HTTPS (HTTP/1.1: exec, attach and port-forward are upgrades). The TLS
//! layer verifies a client certificate against the cluster CA when one is offered; each
//! connection's requests then carry who it is ([`Peer`]) for `auth.rs` to decide.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::auth::Peer;

/// The node API's TLS settings (see `petset_apiserver::tls::kubelet_server_config`).
pub type TlsConfig = rustls::ServerConfig;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` (see [`super::Kubelet::router`]) on `listener` until the task is aborted.
/// `config` should verify client certificates against the cluster CA and let clients without
/// one in (they get 401 from the router, as upstream's kubelet with anonymous auth off).
pub async fn serve_tls(listener: TcpListener, config: Arc<rustls::ServerConfig>, router: Router) {
    let acceptor = TlsAcceptor::from(config);
    loop {
        let (tcp, peer_address) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "node API: accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer_address, %error, "node API: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer_address, "node API: TLS handshake timed out");
                    return;
                }
            };
            let peer = Peer::of_certificates(tls.get_ref().1.peer_certificates());
            let service = TowerToHyperService::new(router.layer(axum::Extension(peer)));
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades();
            if let Err(error) = connection.await {
                tracing::debug!(%peer_address, %error, "node API: connection ended with an error");
            }
        });
    }
}
