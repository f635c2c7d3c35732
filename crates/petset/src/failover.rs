//! How an agent reaches several servers through one address, as k3s's agent load balancer
//! does: a TCP relay on loopback that dials the server that answered last, and the others in
//! turn when it does not. TLS stays end to end (every server's certificate names 127.0.0.1),
//! so the relay sees only ciphertext, and a client that loses its connection to a dead server
//! reconnects to a live one without knowing.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long one server may take to accept before the next is tried.
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);

/// The relay: where it listens, and its task (aborted on drop).
pub struct Failover {
    pub address: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Failover {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Failover {
    /// Listens on a free loopback port and relays each connection to one of `servers`.
    pub async fn start(servers: Vec<SocketAddr>) -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let address = listener.local_addr()?;
        let servers = Arc::new(servers);
        let preferred = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            loop {
                let client = match listener.accept().await {
                    Ok((client, _)) => client,
                    Err(error) => {
                        // Out of descriptors, say: wait rather than spin.
                        tracing::warn!(%error, "the agent's server relay could not accept");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (servers, preferred) = (servers.clone(), preferred.clone());
                tokio::spawn(async move {
                    if let Some(mut server) = dial(&servers, &preferred).await {
                        let mut client = client;
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Ok(Self { address, task })
    }
}

/// The first of `servers` that accepts, starting with the one that did last time.
async fn dial(servers: &[SocketAddr], preferred: &AtomicUsize) -> Option<TcpStream> {
    let first = preferred.load(Ordering::Relaxed);
    for index in dial_order(first, servers.len()) {
        let server = servers[index];
        match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(server)).await {
            Ok(Ok(stream)) => {
                if index != first {
                    tracing::info!(%server, "the agent's server connections fail over");
                    preferred.store(index, Ordering::Relaxed);
                }
                return Some(stream);
            }
            Ok(Err(error)) => tracing::debug!(%server, %error, "server not reachable"),
            Err(_) => tracing::debug!(%server, "server did not accept in time"),
        }
    }
    tracing::warn!("no server is reachable");
    None
}

/// Every index below `count` once, beginning at `first`.
fn dial_order(first: usize, count: usize) -> impl Iterator<Item = usize> {
    (0..count).map(move |offset| (first + offset) % count.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_last_good_server_is_tried_first_and_every_other_once() {
        assert_eq!(dial_order(0, 3).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(dial_order(2, 3).collect::<Vec<_>>(), [2, 0, 1]);
        assert_eq!(dial_order(0, 0).count(), 0);
    }

    /// A server that answers every connection with `name`.
    async fn named_server(name: &'static str) -> (SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream.write_all(name.as_bytes()).await;
            }
        });
        (address, task)
    }

    async fn answer(relay: SocketAddr) -> String {
        let mut stream = TcpStream::connect(relay).await.expect("connect");
        let mut text = String::new();
        stream.read_to_string(&mut text).await.expect("read");
        text
    }

    #[tokio::test]
    async fn connections_go_to_the_next_server_once_one_is_gone() {
        let (first, first_task) = named_server("first").await;
        let (second, _second_task) = named_server("second").await;
        let relay = Failover::start(vec![first, second]).await.expect("relay");
        assert_eq!(answer(relay.address).await, "first");
        first_task.abort();
        let _ = first_task.await;
        assert_eq!(answer(relay.address).await, "second");
        // And it stays with the one that answers.
        assert_eq!(answer(relay.address).await, "second");
    }
}
