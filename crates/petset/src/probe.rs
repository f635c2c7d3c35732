//! `petset probe tcp|http PORT …`: one probe from inside a pod's network namespace (the runc
//! node runs it there with `ip netns exec`). It only ever dials the namespace's loopback.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::cli::ProbeArgs;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Exits 0 when the probe succeeds.
pub fn run(args: ProbeArgs) -> anyhow::Result<()> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT)?;
    if args.kind == "tcp" {
        return Ok(());
    }
    anyhow::ensure!(args.kind == "http", "unknown probe {:?}", args.kind);
    stream.set_read_timeout(Some(TIMEOUT))?;
    let path = args.path.as_deref().unwrap_or("/");
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\n\r\n",
        args.port
    )?;
    let mut head = [0u8; 64];
    let read = stream.read(&mut head)?;
    let status_line = String::from_utf8_lossy(&head[..read]);
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    // As the kubelet: 200 to 399 is success.
    anyhow::ensure!((200..400).contains(&code), "HTTP status {code}");
    Ok(())
}
