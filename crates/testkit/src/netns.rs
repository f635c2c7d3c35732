//! Commands in a network namespace, for tests of what petset makes in the host's network:
//! `nsenter --net=` (network namespace only, so mounts stay shared with the test).

use std::process::{Command, Output, Stdio};

use crate::on_path;

/// Runs `argv` in the network namespace `/run/netns/<namespace>` and returns what it printed.
pub fn run_in(namespace: &str, argv: &[&str]) -> std::io::Result<Output> {
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{namespace}"))
        .arg("--")
        .args(argv)
        .stdin(Stdio::null())
        .output()
}

/// Whether one ping from inside `namespace` to `address` is answered within 2 s (iputils'
/// `ping` when installed, else busybox's).
pub fn pings(namespace: &str, address: &str) -> bool {
    let ping: &[&str] = if on_path("ping") {
        &["ping"]
    } else {
        &["busybox", "ping"]
    };
    let argv: Vec<&str> = ping
        .iter()
        .copied()
        .chain(["-c1", "-W2", address])
        .collect();
    run_in(namespace, &argv).is_ok_and(|output| output.status.success())
}

/// The network namespaces `ip netns list` shows.
pub fn namespaces() -> Vec<String> {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|line| line.split_whitespace().next().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The names of the host namespace's links, as `ip -o link show` shows them.
pub fn links() -> Vec<String> {
    Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .map(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|line| {
                    let name = line.split(':').nth(1)?.trim();
                    Some(name.split('@').next().unwrap_or(name).to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether this process runs as root (uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}
