//! The pod network of one node: a Linux bridge that holds the first address of the pod CIDR,
//! and one veth pair per pod sandbox (`eth0` inside the pod's network namespace, its peer on
//! the bridge). Pods reach each other over the bridge and the host reaches them through it.
//! Nothing is routed off the machine: petset neither enables forwarding nor adds NAT. With
//! many nodes, [`routes`] carries traffic between the nodes' pod networks (flannel host-gw):
//! only inside a node's own network namespace, never in the host's.
//!
//! Addresses are allocated as the CNI host-local plugin does, one file per address under
//! `/run/petset/networks/<bridge>/` holding the sandbox id (created with `O_EXCL`, so two
//! sandboxes never get one address), the next search starting after the last one handed out
//! so a freed address is not reused at once. `/run` is a tmpfs, as network namespaces are:
//! both vanish on reboot together. An address whose namespace is gone (a crash) is freed when
//! the network is opened again.
//!
//! The links are made by `ip` (iproute2), two invocations per pod: a netlink crate would save
//! a few milliseconds per pod at the cost of a dependency tree of its own.

use std::fmt;
use std::fs::{self, File};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

use crate::pods::RuntimeError;

pub mod routes;

const STATE_ROOT: &str = "/run/petset/networks";

/// An IPv4 network in CIDR notation, such as `10.244.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

impl Cidr {
    /// The network of `prefix` bits holding `address` (host bits cleared), for any prefix
    /// the kernel shows (`/32` host routes, `/0`); `None` above 32.
    pub fn holding(address: Ipv4Addr, prefix: u8) -> Option<Self> {
        if prefix > 32 {
            return None;
        }
        let mut cidr = Cidr {
            network: address,
            prefix,
        };
        cidr.network = Ipv4Addr::from(u32::from(address) & cidr.mask());
        Some(cidr)
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network)
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The first address, which the bridge holds and pods route through.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// Whether a pod may have `ip`: inside, and not the network, gateway or broadcast address.
    pub fn is_pod_address(&self, ip: Ipv4Addr) -> bool {
        let (first, last) = self.pod_range();
        self.contains(ip) && (first..=last).contains(&u32::from(ip))
    }

    /// The addresses pods may get: all but the network, the gateway and the broadcast address.
    fn pod_range(&self) -> (u32, u32) {
        let first = u32::from(self.network) + 2;
        let last = u32::from(self.network) | !self.mask();
        (first, last.saturating_sub(1))
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let invalid =
            || format!("invalid CIDR {text:?}: want an IPv4 network such as 10.244.0.0/16");
        let (address, prefix) = text.split_once('/').ok_or_else(invalid)?;
        let address: Ipv4Addr = address.parse().map_err(|_| invalid())?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
        if !(8..=30).contains(&prefix) {
            return Err(format!(
                "invalid CIDR {text:?}: the prefix must be between /8 and /30"
            ));
        }
        let cidr = Cidr {
            network: address,
            prefix,
        };
        if u32::from(address) & !cidr.mask() != 0 {
            return Err(format!(
                "invalid CIDR {text:?}: host bits are set (the network is {}/{prefix})",
                Ipv4Addr::from(u32::from(address) & cidr.mask())
            ));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The destination of a route as `ip route` prints it (`10.0.0.0/8`, `192.0.2.1`); `None`
/// for `default` and other words.
fn route_destination(text: &str) -> Option<Cidr> {
    let (address, prefix) = text.split_once('/').unwrap_or((text, "32"));
    Cidr::holding(address.parse().ok()?, prefix.parse().ok()?)
}

/// What the node's pod network is made of.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// The bridge's name (at most 15 characters), e.g. `petset0`.
    pub bridge: String,
    pub cidr: Cidr,
    /// The cluster's ClusterIP range, made local to this machine (a `local` route on `lo`) so
    /// the node's service proxy can listen on any ClusterIP, for the host and, through the
    /// bridge's address, for pods; `None` leaves Services unreachable by their ClusterIP.
    pub services: Option<Cidr>,
}

/// The pod network, owned by this process while it is open (a lock keeps a second petset off
/// the same bridge).
pub struct Network {
    config: NetworkConfig,
    state: PathBuf,
    lock_path: PathBuf,
    _lock: File,
}

fn ip(args: &[&str], batch: Option<&str>) -> Result<String, RuntimeError> {
    let mut command = Command::new("ip");
    command
        .args(args)
        .stdin(if batch.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let failed = |detail: String| RuntimeError::Command {
        command: format!("ip {}", args.join(" ")),
        detail,
    };
    let mut child = command.spawn().map_err(|e| failed(e.to_string()))?;
    if let (Some(lines), Some(mut stdin)) = (batch, child.stdin.take()) {
        stdin
            .write_all(lines.as_bytes())
            .map_err(|e| failed(e.to_string()))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(failed(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Network {
    /// Takes the bridge for this process, making it when missing. Refuses a pod CIDR that
    /// overlaps a route of another interface: petset never takes over someone else's network.
    pub fn open(config: NetworkConfig) -> Result<Self, RuntimeError> {
        if config.bridge.is_empty()
            || config.bridge.len() > 15
            || !config
                .bridge
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(RuntimeError::Config(format!(
                "invalid bridge name {:?}: 1 to 15 letters, digits, '-' or '_'",
                config.bridge
            )));
        }
        let root = Path::new(STATE_ROOT);
        fs::create_dir_all(root).map_err(io(root))?;
        let lock_path = root.join(format!("{}.lock", config.bridge));
        let lock = File::create(&lock_path).map_err(io(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(RuntimeError::Config(format!(
                "bridge {} is in use by another petset on this machine (choose another --bridge and --pod-cidr)",
                config.bridge
            )));
        }
        for route in ip(&["-4", "-o", "route", "show"], None)?.lines() {
            let words: Vec<&str> = route.split_whitespace().collect();
            let device = words
                .iter()
                .skip_while(|w| **w != "dev")
                .nth(1)
                .copied()
                .unwrap_or_default();
            let Some(existing) = words.first().and_then(|d| route_destination(d)) else {
                continue;
            };
            if device != config.bridge && existing.overlaps(&config.cidr) {
                return Err(RuntimeError::Config(format!(
                    "pod CIDR {} overlaps the route {existing} of {device}: choose another --pod-cidr",
                    config.cidr
                )));
            }
            if let Some(services) = &config.services
                && existing.overlaps(services)
            {
                return Err(RuntimeError::Config(format!(
                    "service CIDR {services} overlaps the route {existing} of {device}: choose another --service-cidr"
                )));
            }
        }
        let gateway = format!("{}/{}", config.cidr.gateway(), config.cidr.prefix());
        let exists = Path::new("/sys/class/net").join(&config.bridge).exists();
        if !exists {
            ip(&["link", "add", &config.bridge, "type", "bridge"], None)?;
        }
        let addresses = ip(&["-4", "-o", "addr", "show", "dev", &config.bridge], None)?;
        if !addresses.split_whitespace().any(|w| w == gateway) {
            ip(&["addr", "add", &gateway, "dev", &config.bridge], None)?;
        }
        ip(&["link", "set", &config.bridge, "up"], None)?;
        if let Some(services) = &config.services {
            let range = services.to_string();
            // `replace`: a route left by a crash of this same petset is taken over.
            ip(
                &[
                    "route", "replace", "local", &range, "dev", "lo", "table", "local",
                ],
                None,
            )?;
        }
        let state = root.join(&config.bridge);
        fs::create_dir_all(&state).map_err(io(&state))?;
        let network = Self {
            config,
            state,
            lock_path,
            _lock: lock,
        };
        network.free_orphans();
        Ok(network)
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// Frees the addresses whose sandbox's network namespace no longer exists.
    fn free_orphans(&self) {
        for (address, id) in self.allocations() {
            if !Path::new("/run/netns")
                .join(crate::pods::Runtime::netns_name(&id))
                .exists()
            {
                let _ = fs::remove_file(self.state.join(address.to_string()));
            }
        }
    }

    fn allocations(&self) -> Vec<(Ipv4Addr, String)> {
        fs::read_dir(&self.state)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| {
                        let address = e.file_name().to_str()?.parse().ok()?;
                        let id = fs::read_to_string(e.path()).ok()?;
                        Some((address, id.trim().to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The address of the sandbox, if it has one.
    pub fn address_of(&self, id: &str) -> Option<Ipv4Addr> {
        self.allocations()
            .into_iter()
            .find(|(_, owner)| owner == id)
            .map(|(address, _)| address)
    }

    fn allocate(&self, id: &str) -> Result<Ipv4Addr, RuntimeError> {
        let (first, last) = self.config.cidr.pod_range();
        let last_path = self.state.join("last");
        let previous = fs::read_to_string(&last_path)
            .ok()
            .and_then(|t| t.trim().parse::<Ipv4Addr>().ok())
            .map(u32::from)
            .filter(|p| (first..=last).contains(p))
            .unwrap_or(last);
        let size = last - first + 1;
        for step in 1..=size {
            let candidate = first + (previous - first + step) % size;
            let address = Ipv4Addr::from(candidate);
            let path = self.state.join(address.to_string());
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    file.write_all(id.as_bytes()).map_err(io(&path))?;
                    let _ = fs::write(&last_path, address.to_string());
                    return Ok(address);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io(&path)(e)),
            }
        }
        Err(RuntimeError::Config(format!(
            "no free address left in the pod CIDR {}",
            self.config.cidr
        )))
    }

    /// Gives the sandbox's network namespace its `eth0` on the bridge and an address; returns
    /// the address it already has when it was attached before.
    pub fn attach(&self, id: &str, netns: &str) -> Result<Ipv4Addr, RuntimeError> {
        if let Some(address) = self.address_of(id) {
            return Ok(address);
        }
        let address = self.allocate(id)?;
        let host_end = format!("ps{}", &id[..id.len().min(13)]);
        let gateway = self.config.cidr.gateway();
        let attached = ip(
            &["-batch", "-"],
            Some(&format!(
                "link add {host_end} type veth peer name eth0 netns {netns}\nlink set {host_end} master {} up\n",
                self.config.bridge
            )),
        )
        .and_then(|_| {
            ip(
                &["-n", netns, "-batch", "-"],
                Some(&format!(
                    "addr add {address}/{} dev eth0\nlink set eth0 up\nroute add default via {gateway}\n",
                    self.config.cidr.prefix()
                )),
            )
        });
        if let Err(error) = attached {
            let _ = ip(&["link", "del", &host_end], None);
            self.release(id);
            return Err(error);
        }
        Ok(address)
    }

    /// Frees the sandbox's address (its veth went with its namespace).
    pub fn release(&self, id: &str) {
        for (address, owner) in self.allocations() {
            if owner == id {
                let _ = fs::remove_file(self.state.join(address.to_string()));
            }
        }
    }

    /// Removes the bridge and the allocation state; for a node stopping with no pod left.
    pub fn close(&self) -> Result<(), RuntimeError> {
        if let Some(services) = &self.config.services {
            let range = services.to_string();
            let _ = ip(
                &[
                    "route", "del", "local", &range, "dev", "lo", "table", "local",
                ],
                None,
            );
        }
        if Path::new("/sys/class/net")
            .join(&self.config.bridge)
            .exists()
        {
            ip(&["link", "del", &self.config.bridge], None)?;
        }
        let _ = fs::remove_dir_all(&self.state);
        let _ = fs::remove_file(&self.lock_path);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_contain() {
        let cidr: Cidr = "10.244.0.0/16".parse().expect("cidr");
        assert_eq!(cidr.gateway(), Ipv4Addr::new(10, 244, 0, 1));
        assert!(cidr.contains(Ipv4Addr::new(10, 244, 255, 254)));
        assert!(!cidr.contains(Ipv4Addr::new(10, 245, 0, 1)));
        assert_eq!(
            cidr.pod_range(),
            (
                u32::from(Ipv4Addr::new(10, 244, 0, 2)),
                u32::from(Ipv4Addr::new(10, 244, 255, 254))
            )
        );
        let small: Cidr = "10.244.7.0/24".parse().expect("cidr");
        assert!(cidr.overlaps(&small) && small.overlaps(&cidr));
        assert!(!small.overlaps(&"10.244.8.0/24".parse().expect("cidr")));
        assert!(small.is_pod_address(Ipv4Addr::new(10, 244, 7, 2)));
        assert!(small.is_pod_address(Ipv4Addr::new(10, 244, 7, 254)));
        for not_a_pod in [
            [10, 244, 7, 0],
            [10, 244, 7, 1],
            [10, 244, 7, 255],
            [10, 244, 8, 2],
        ] {
            assert!(!small.is_pod_address(Ipv4Addr::from(not_a_pod)));
        }
        assert_eq!(small.to_string(), "10.244.7.0/24");
        assert!("10.244.0.1/16".parse::<Cidr>().is_err());
        assert!("10.244.0.0/31".parse::<Cidr>().is_err());
        assert!("10.244.0.0".parse::<Cidr>().is_err());
    }
}
