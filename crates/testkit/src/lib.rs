//! Test helpers shared by every crate's tests: free loopback ports, HTTP and HTTPS probes, the
//! skip-or-fail rule for tests that need something from the machine, a real etcd, a real
//! `petset` process, and a busybox test image. Everything started here is stopped when its handle drops.

mod agent;
mod etcd;
mod images;
mod local_cluster;
pub mod netns;
mod process;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

pub use agent::Agent;
pub use etcd::Etcd;
pub use images::{
    build_tutorial_images, busybox_image, can_build_etcd_image, can_build_tutorial_images,
    can_run_containers, etcd_image, image_with_programs,
};
pub use local_cluster::LocalCluster;
pub use process::{KUBECTL, Kubectl, Petset};

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("binding a loopback port")
}

/// A plain-HTTP GET on loopback: the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// An HTTPS GET on loopback through curl (the server's certificate is not checked: this probes
/// health endpoints, which need no credentials): the status code and the body.
pub fn https_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let output = std::process::Command::new("curl")
        .args(["-sk", "--max-time", "10", "-w", "\n%{http_code}"])
        .arg(format!("https://{addr}{path}"))
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    Ok((status.trim().parse().unwrap_or(0), body.to_string()))
}

/// Whether this run must not skip anything (`CI=true`).
pub fn strict() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Reports that a test cannot run here: under CI that is a failure, elsewhere a printed skip.
/// Returns so that the caller can `return` from the test.
pub fn skip(test: &str, reason: &str) {
    if strict() {
        panic!("{test} cannot run: {reason} (CI=true, so this is a failure)");
    }
    eprintln!("SKIPPED {test}: {reason}");
}

/// Polls `ready` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if ready() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a program is on `PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
