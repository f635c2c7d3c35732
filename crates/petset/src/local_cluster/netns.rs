//! The nodes' network of a runc local cluster, in the host namespace: one bridge holding the
//! first address of a /24 nobody else on the machine uses, and per node a network namespace
//! whose `eth0` is one end of a veth pair, the other end on the bridge. Nothing else: no
//! default route in the namespaces, no forwarding and no NAT in the host namespace, so the
//! nodes reach the bridge's subnet and nothing beyond it.
//!
//! The links are made by `ip` (iproute2), as the pod network's are.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use petset_runtime::network::Cidr;

use super::layout::Layout;

/// The subnets a local cluster may take: 10.250.0.0/24 … 10.250.255.0/24.
const SUBNET_BASE: [u8; 2] = [10, 250];

/// Held while a cluster up picks its subnet and makes its bridge, so two of them at once never
/// pick the same one.
const PICK_LOCK: &str = "/run/petset/local-cluster/subnets.lock";

/// Where the pod network of a runc node keeps its address allocations (petset-runtime's
/// `network.rs`), one directory and one lock file per pod bridge.
const POD_NETWORK_STATE: &str = "/run/petset/networks";

/// Runs `ip` with `args`; its output, or what it said on failure.
fn ip(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `argv` run in the network namespace `namespace` (and no other namespace: the mounts a node
/// makes for its pods stay visible to the host).
pub(crate) fn in_namespace(namespace: &str, argv: &[String]) -> Command {
    let mut command = Command::new("nsenter");
    command
        .arg(format!("--net=/run/netns/{namespace}"))
        .arg("--")
        .args(argv);
    command
}

/// An IPv4 network or address with its prefix length, as `ip` prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InUse {
    address: Ipv4Addr,
    prefix: u8,
}

impl InUse {
    fn parse(text: &str) -> Option<Self> {
        let (address, prefix) = text.split_once('/').unwrap_or((text, "32"));
        Some(Self {
            address: address.parse().ok()?,
            prefix: prefix.parse().ok().filter(|p| *p <= 32)?,
        })
    }

    fn overlaps(&self, subnet: &Cidr) -> bool {
        let prefix = self.prefix.min(subnet.prefix());
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        u32::from(self.address) & mask == u32::from(subnet.network()) & mask
    }
}

/// The networks `ip -4 -o route show table all` and `ip -4 -o addr show` name.
fn networks_in_use(routes: &str, addresses: &str) -> Vec<InUse> {
    const ROUTE_TYPES: [&str; 10] = [
        "unicast",
        "local",
        "broadcast",
        "multicast",
        "anycast",
        "unreachable",
        "blackhole",
        "prohibit",
        "throw",
        "nat",
    ];
    let from_routes = routes.lines().filter_map(|line| {
        let mut words = line.split_whitespace().peekable();
        if words.peek().is_some_and(|w| ROUTE_TYPES.contains(w)) {
            words.next();
        }
        words.next().and_then(InUse::parse)
    });
    let from_addresses = addresses.lines().filter_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words.iter().position(|w| *w == "inet")?;
        words.get(at + 1).and_then(|a| InUse::parse(a))
    });
    from_routes.chain(from_addresses).collect()
}

/// The first subnet of 10.250.0.0/16 (`preferred` first, when given: a restarted cluster
/// keeps its addresses) that overlaps nothing in use.
fn free_subnet(in_use: &[InUse], preferred: Option<Cidr>) -> Option<Cidr> {
    let candidates = (0..=255u8).filter_map(|k| {
        Cidr::from_str(&format!("{}.{}.{k}.0/24", SUBNET_BASE[0], SUBNET_BASE[1])).ok()
    });
    preferred
        .into_iter()
        .chain(candidates)
        .find(|subnet| !in_use.iter().any(|used| used.overlaps(subnet)))
}

/// Six random hex digits, from the kernel's random source.
pub(crate) fn random_id() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 3];
    File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The names of this machine's links and network namespaces that `layout` makes.
pub(crate) fn leftovers(layout: &Layout) -> anyhow::Result<Vec<String>> {
    let links = ip(&["-o", "link", "show"])?;
    let link_names = links.lines().filter_map(|line| {
        // `2784: pstc0a1b2cv1@if2: <BROADCAST,…`
        let name = line.split(':').nth(1)?.trim();
        Some(name.split('@').next().unwrap_or(name).to_string())
    });
    let namespaces = ip(&["netns", "list"])?;
    let namespace_names = namespaces
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_string));
    Ok(link_names
        .chain(namespace_names)
        .filter(|name| layout.owns_name(name))
        .collect())
}

/// Whether any link or namespace with a name of this id exists (a fresh id must not).
pub(crate) fn id_in_use(id: &str) -> anyhow::Result<bool> {
    let probe = Layout {
        id: id.to_string(),
        name: String::new(),
        runtime: super::NodeRuntime::Runc,
        nodes: 0,
        api_port: 0,
        servers: 1,
        subnet: None,
    };
    Ok(!leftovers(&probe)?.is_empty())
}

/// The nodes' network of a layout while it exists. Dropping it removes nothing (a crash
/// does not either): `remove` does, and `cluster.json` says what to remove after a crash.
pub(crate) struct NodesNetwork {
    layout: Layout,
}

impl NodesNetwork {
    /// Picks the layout's subnet (its recorded one when still free, else the first free one)
    /// and returns the layout with it; `make` is called with that layout while the pick lock
    /// is held (it records the layout, then makes the network), so no other cluster picks the
    /// same subnet meanwhile.
    pub fn pick_and_make(
        mut layout: Layout,
        record: impl FnOnce(&Layout) -> anyhow::Result<()>,
    ) -> anyhow::Result<Self> {
        let lock_path = Path::new(PICK_LOCK);
        if let Some(parent) = lock_path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let lock =
            File::create(lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
        // Held only for the few `ip` calls below.
        lock.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
        let in_use = networks_in_use(
            &ip(&["-4", "-o", "route", "show", "table", "all"])?,
            &ip(&["-4", "-o", "addr", "show"])?,
        );
        let Some(subnet) = free_subnet(&in_use, layout.subnet) else {
            bail!(
                "every subnet of {}.{}.0.0/16 overlaps a route or address of this machine; \
                 a local cluster needs a free /24 there",
                SUBNET_BASE[0],
                SUBNET_BASE[1]
            );
        };
        layout.subnet = Some(subnet);
        record(&layout)?;
        let network = Self { layout };
        if let Err(error) = network.make() {
            let _ = network.remove();
            return Err(error);
        }
        Ok(network)
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn make(&self) -> anyhow::Result<()> {
        let (Some(bridge), Some(subnet)) = (self.layout.bridge(), self.layout.subnet) else {
            bail!("a simulated cluster has no nodes' network");
        };
        let prefix = subnet.prefix();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/{prefix}", subnet.gateway()),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        for node in self.layout.all_nodes() {
            let (Some(namespace), Some(veth)) = (&node.namespace, &node.veth) else {
                continue;
            };
            ip(&["netns", "add", namespace])?;
            ip(&[
                "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace,
            ])?;
            ip(&["link", "set", veth, "master", &bridge, "up"])?;
            let address = format!("{}/{prefix}", node.address);
            ip(&["-n", namespace, "addr", "add", &address, "dev", "eth0"])?;
            ip(&["-n", namespace, "link", "set", "eth0", "up"])?;
            ip(&["-n", namespace, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// Removes everything `layout` makes that still exists, then checks that nothing of its
    /// names is left. Safe to run again, and on what a crash left.
    pub fn remove(&self) -> anyhow::Result<()> {
        remove(&self.layout)
    }
}

/// Removes what a runc layout makes: veths (which takes their `eth0` ends along), namespaces,
/// the bridge, and the pod networks' allocation state of its nodes; then checks that none of
/// its names is left.
pub(crate) fn remove(layout: &Layout) -> anyhow::Result<()> {
    let mut failures = Vec::new();
    let mut attempt = |args: &[&str]| {
        if let Err(error) = ip(args) {
            failures.push(format!("{error:#}"));
        }
    };
    for node in layout.all_nodes() {
        if let Some(veth) = &node.veth
            && Path::new("/sys/class/net").join(veth).exists()
        {
            attempt(&["link", "del", veth]);
        }
        if let Some(namespace) = &node.namespace
            && Path::new("/run/netns").join(namespace).exists()
        {
            attempt(&["netns", "del", namespace]);
        }
        if let Some(pod_bridge) = &node.pod_bridge {
            forget_pod_network(pod_bridge);
        }
    }
    if let Some(bridge) = layout.bridge()
        && Path::new("/sys/class/net").join(&bridge).exists()
    {
        attempt(&["link", "del", &bridge]);
    }
    if !failures.is_empty() {
        bail!("removing the nodes' network: {}", failures.join("; "));
    }
    // The kernel lets go of a namespace's links a moment after its last reference goes.
    let mut left = leftovers(layout)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !left.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        left = leftovers(layout)?;
    }
    if !left.is_empty() {
        bail!(
            "still on this machine after removing them: {}",
            left.join(", ")
        );
    }
    Ok(())
}

/// A node that stopped cleanly removed its pod network's state itself; one that was killed
/// left it (its bridge went with its namespace). Only when no process holds its lock.
fn forget_pod_network(pod_bridge: &str) {
    let root = Path::new(POD_NETWORK_STATE);
    let lock_path = root.join(format!("{pod_bridge}.lock"));
    let Ok(lock) = File::open(&lock_path) else {
        return;
    };
    if lock.try_lock().is_ok() {
        let _ = std::fs::remove_dir_all(root.join(pod_bridge));
        let _ = std::fs::remove_file(&lock_path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str = "default via 192.0.2.1 dev eth0 \n\
        192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2 \n\
        10.250.0.0/24 dev pstc-aaaaaa proto kernel scope link src 10.250.0.1 \n\
        local 10.96.0.0/12 dev lo table local scope host \n\
        broadcast 10.250.1.255 dev other table local proto kernel scope link src 10.250.1.1 \n\
        local 127.0.0.0/8 dev lo table local proto kernel scope host src 127.0.0.1 \n";
    const ADDRESSES: &str = "1: lo    inet 127.0.0.1/8 scope host lo\\ valid_lft forever\n\
        4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\ valid_lft forever\n\
        9: wg0    inet 10.250.2.7/16 scope global wg0\\ valid_lft forever\n";

    #[test]
    fn a_subnet_overlapping_any_route_or_address_is_passed_over() {
        let in_use = networks_in_use(ROUTES, "");
        let picked = free_subnet(&in_use, None).expect("a free subnet");
        // .0 has a route; .1 has an address (its broadcast route says so).
        assert_eq!(picked.to_string(), "10.250.2.0/24");
        // An address whose /16 covers the whole range leaves nothing.
        let in_use = networks_in_use(ROUTES, ADDRESSES);
        assert_eq!(free_subnet(&in_use, None), None);
    }

    #[test]
    fn the_recorded_subnet_is_kept_while_it_is_free() {
        let in_use = networks_in_use(ROUTES, "");
        let recorded = Cidr::from_str("10.250.9.0/24").ok();
        assert_eq!(free_subnet(&in_use, recorded), recorded);
        let taken = Cidr::from_str("10.250.0.0/24").ok();
        assert_eq!(
            free_subnet(&in_use, taken)
                .map(|s| s.to_string())
                .as_deref(),
            Some("10.250.2.0/24")
        );
    }

    #[test]
    fn default_routes_and_words_are_not_networks() {
        let in_use = networks_in_use(
            "default via 10.250.0.1 dev x\nunreachable 10.250.5.0/24\n",
            "",
        );
        assert_eq!(
            in_use,
            [InUse {
                address: Ipv4Addr::new(10, 250, 5, 0),
                prefix: 24
            }]
        );
    }

    #[test]
    fn a_random_id_is_six_hex_digits() {
        let id = random_id().expect("id");
        assert_eq!(id.len(), 6);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    }
}
