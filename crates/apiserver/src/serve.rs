//! Serving the router over TLS (HTTP/1.1 and HTTP/2 by ALPN), with a graceful stop.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::auth::ClientCertificate;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until `stop` fires, then waits up to `grace` for open requests.
pub async fn serve_tls(
    listener: TcpListener,
    tls: crate::tls::ServingTls,
    app: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
    grace: Duration,
) {
    let acceptor = TlsAcceptor::from(tls.config());
    let tls_settings = tls;
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let tls_settings = tls_settings.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            // The handshake proved the client holds the key; authentication reads who the
            // certificate names only when it chains to the cluster CA (another CA's is a 401).
            let chain = tls.get_ref().1.peer_certificates().unwrap_or_default();
            let certificate = match chain.first() {
                Some(first) if tls_settings.trusted(chain) => {
                    Some(ClientCertificate::from_der(first.to_vec()))
                }
                Some(_) => {
                    tracing::debug!(%peer, "a client certificate of another CA");
                    None
                }
                None => None,
            };
            let app = match certificate {
                Some(certificate) => app.layer(axum::Extension(certificate)),
                None => app,
            };
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(app))
                .into_owned();
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "connections still open after the grace period; closing them"
        );
    }
}
