//! What a local cluster is made of, as a pure function of its id, its subnet and its size: the
//! names of the links and namespaces, the addresses, and the command lines of the server and
//! the agents. Nothing here touches the machine.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use petset_runtime::network::Cidr;

use super::NodeRuntime;

/// The prefix of every link and namespace a local cluster makes, so that what is left of one
/// is recognisable at a glance in `ip link` and `ip netns list`.
pub(crate) const NAME_PREFIX: &str = "pstc";

/// The port every node serves its node API on (each node has an address of its own).
pub(crate) const KUBELET_PORT: u16 = 10250;

/// The most nodes one machine is asked to run: the node addresses .11–.60 of the /24 leave
/// room for the bridge's .1, and 50 agents are already a lot for one machine.
pub(crate) const MAX_NODES: u32 = 50;

/// The most servers a local cluster runs (each over a member of the cluster's etcd).
pub(crate) const MAX_SERVERS: u32 = 5;

/// A local cluster: `nodes` agents and one server on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Six hex digits, unique per cluster on this machine; every name below carries it.
    pub id: String,
    /// The cluster's name; node i is `<name>-n<i>`.
    pub name: String,
    pub runtime: NodeRuntime,
    pub nodes: u32,
    /// The first server's port; server i listens on `api_port + i - 1`.
    pub api_port: u16,
    /// How many servers: one on the embedded store, or several over an etcd of as many
    /// members on loopback ports.
    pub servers: u32,
    /// The nodes' network (runc): the host bridge holds its first address.
    pub subnet: Option<Cidr>,
}

/// One node of the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeLayout {
    /// 1-based, as in the node's name.
    pub index: u32,
    pub name: String,
    /// The node's own address: on the nodes' bridge (runc) or on loopback (simulated).
    pub address: Ipv4Addr,
    /// Its network namespace (runc only).
    pub namespace: Option<String>,
    /// The host end of its veth pair (runc only); the other end is `eth0` in the namespace.
    pub veth: Option<String>,
    /// The bridge of its pods, inside its namespace (runc only).
    pub pod_bridge: Option<String>,
}

impl Layout {
    /// The bridge in the host namespace that the nodes' veths are on (runc only).
    pub fn bridge(&self) -> Option<String> {
        self.subnet.map(|_| format!("{NAME_PREFIX}-{}", self.id))
    }

    /// Where the server listens for the nodes, and what it advertises: the bridge's address
    /// (runc), or loopback (simulated).
    pub fn server_address(&self) -> Ipv4Addr {
        self.subnet.map_or(Ipv4Addr::LOCALHOST, |s| s.gateway())
    }

    pub fn node(&self, index: u32) -> NodeLayout {
        let name = format!("{}-n{index}", self.name);
        match self.subnet {
            Some(subnet) => NodeLayout {
                index,
                name,
                address: Ipv4Addr::from(u32::from(subnet.network()) + 10 + index),
                namespace: Some(format!("{NAME_PREFIX}-{}-n{index}", self.id)),
                veth: Some(format!("{NAME_PREFIX}{}v{index}", self.id)),
                pod_bridge: Some(format!("{NAME_PREFIX}{}p{index}", self.id)),
            },
            None => NodeLayout {
                index,
                name,
                address: Ipv4Addr::new(127, 0, 0, 10 + index as u8),
                namespace: None,
                veth: None,
                pod_bridge: None,
            },
        }
    }

    pub fn all_nodes(&self) -> impl Iterator<Item = NodeLayout> + '_ {
        (1..=self.nodes).map(|i| self.node(i))
    }

    /// Whether a link or namespace name is one this cluster makes (or its agents make).
    pub fn owns_name(&self, name: &str) -> bool {
        name.starts_with(&format!("{NAME_PREFIX}-{}", self.id))
            || name.starts_with(&format!("{NAME_PREFIX}{}", self.id))
    }

    /// Server i's port (1-based).
    pub fn server_port(&self, index: u32) -> u16 {
        self.api_port
            .saturating_add(u16::try_from(index - 1).unwrap_or(u16::MAX))
    }

    /// The servers' URLs, as the agents are given them.
    pub fn server_urls(&self) -> Vec<String> {
        (1..=self.servers)
            .map(|i| format!("https://{}:{}", self.server_address(), self.server_port(i)))
            .collect()
    }

    /// Etcd member i's client and peer ports (1-based), on loopback: `api_port + 1000` on.
    pub fn etcd_ports(&self, index: u32) -> (u16, u16) {
        let client = u32::from(self.api_port) + 1000 + 2 * (index - 1);
        let port = |p: u32| u16::try_from(p).unwrap_or(u16::MAX);
        (port(client), port(client + 1))
    }

    /// The servers' `--store`: the embedded one, or every etcd member.
    fn store(&self) -> String {
        if self.servers <= 1 {
            return "embedded".into();
        }
        let members: Vec<String> = (1..=self.servers)
            .map(|i| format!("127.0.0.1:{}", self.etcd_ports(i).0))
            .collect();
        format!("etcd://{}", members.join(","))
    }

    /// `etcd …` for member i of the cluster's etcd (several servers only).
    pub fn etcd_args(&self, dir: &Path, index: u32) -> Vec<String> {
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        let (client, peer) = self.etcd_ports(index);
        let members: Vec<String> = (1..=self.servers)
            .map(|i| format!("e{i}={}", url(self.etcd_ports(i).1)))
            .collect();
        vec![
            "etcd".into(),
            "--name".into(),
            format!("e{index}"),
            "--data-dir".into(),
            etcd_dir(dir, index).display().to_string(),
            "--listen-client-urls".into(),
            url(client),
            "--advertise-client-urls".into(),
            url(client),
            "--listen-peer-urls".into(),
            url(peer),
            "--initial-advertise-peer-urls".into(),
            url(peer),
            "--initial-cluster".into(),
            members.join(","),
            "--initial-cluster-token".into(),
            format!("{NAME_PREFIX}-{}", self.id),
            "--logger".into(),
            "zap".into(),
            "--log-level".into(),
            "warn".into(),
        ]
    }

    /// `petset server …` for server i (1-based): in the host namespace. With runc it listens
    /// on every address, so the nodes reach it on the bridge and the user's kubectl on
    /// loopback.
    pub fn server_args(&self, dir: &Path, index: u32) -> Vec<String> {
        let listen = match self.subnet {
            Some(_) => Ipv4Addr::UNSPECIFIED,
            None => Ipv4Addr::LOCALHOST,
        };
        vec![
            "server".into(),
            "--data-dir".into(),
            server_dir_of(dir, index).display().to_string(),
            "--api-listen".into(),
            format!("{listen}:{}", self.server_port(index)),
            "--advertise-address".into(),
            self.server_address().to_string(),
            "--store".into(),
            self.store(),
            "--local-path-dir".into(),
            volumes_dir(dir).display().to_string(),
        ]
    }

    /// `petset agent …` for one node (run inside its namespace with runc). The join token is
    /// read from the server's file, so it never shows in `ps`.
    pub fn agent_args(&self, dir: &Path, node: &NodeLayout) -> Vec<String> {
        let mut args = vec![
            "agent".into(),
            "--server".into(),
            self.server_urls().join(","),
            "--token-file".into(),
            token_file(dir).display().to_string(),
            "--data-dir".into(),
            node_dir(dir, node.index).display().to_string(),
            "--node-name".into(),
            node.name.clone(),
            "--node-ip".into(),
            node.address.to_string(),
            "--node-runtime".into(),
            self.runtime.flag().into(),
            "--kubelet-port".into(),
            KUBELET_PORT.to_string(),
            "--local-path-dir".into(),
            volumes_dir(dir).display().to_string(),
        ];
        if let Some(bridge) = &node.pod_bridge {
            args.extend(["--bridge".into(), bridge.clone(), "--pod-routes".into()]);
        }
        args
    }
}

/// The server's data directory.
pub(crate) fn server_dir(dir: &Path) -> PathBuf {
    dir.join("server")
}

/// Server i's data directory: the first's is `server/`, the others' `servers/s<i>/`.
pub(crate) fn server_dir_of(dir: &Path, index: u32) -> PathBuf {
    match index {
        0 | 1 => server_dir(dir),
        _ => dir.join("servers").join(format!("s{index}")),
    }
}

/// Etcd member i's data directory.
pub(crate) fn etcd_dir(dir: &Path, index: u32) -> PathBuf {
    dir.join("etcd").join(format!("e{index}"))
}

/// The join token the server writes.
pub(crate) fn token_file(dir: &Path) -> PathBuf {
    server_dir(dir).join("node-token")
}

/// Where every node makes its `local-path` volumes: one directory, as all nodes are on this
/// machine (a volume's path is `pvc-<uid>` in it, and the server decides it, so the server and
/// every agent must be given the same one).
pub(crate) fn volumes_dir(dir: &Path) -> PathBuf {
    dir.join("volumes")
}

/// Node i's data directory.
pub(crate) fn node_dir(dir: &Path, index: u32) -> PathBuf {
    dir.join("nodes").join(format!("n{index}"))
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn runc_layout() -> Layout {
        Layout {
            id: "a1b2c3".into(),
            name: "petset".into(),
            runtime: NodeRuntime::Runc,
            nodes: 50,
            api_port: 6443,
            servers: 1,
            subnet: Some(Cidr::from_str("10.250.7.0/24").expect("cidr")),
        }
    }

    #[test]
    fn runc_nodes_are_on_the_bridge_each_in_a_namespace_of_its_own() {
        let layout = runc_layout();
        assert_eq!(layout.bridge().as_deref(), Some("pstc-a1b2c3"));
        assert_eq!(layout.server_address(), Ipv4Addr::new(10, 250, 7, 1));
        let first = layout.node(1);
        assert_eq!(first.name, "petset-n1");
        assert_eq!(first.address, Ipv4Addr::new(10, 250, 7, 11));
        assert_eq!(first.namespace.as_deref(), Some("pstc-a1b2c3-n1"));
        assert_eq!(first.veth.as_deref(), Some("pstca1b2c3v1"));
        assert_eq!(first.pod_bridge.as_deref(), Some("pstca1b2c3p1"));
        let last = layout.node(MAX_NODES);
        assert_eq!(last.address, Ipv4Addr::new(10, 250, 7, 60));
        // Linux link names are at most 15 bytes.
        for node in layout.all_nodes() {
            for link in [node.veth, node.pod_bridge].into_iter().flatten() {
                assert!(link.len() <= 15, "{link}");
                assert!(layout.owns_name(&link), "{link}");
            }
        }
        assert!(layout.bridge().is_some_and(|b| b.len() <= 15));
        assert!(!layout.owns_name("pstc-ffffff"));
        assert!(!layout.owns_name("petset0"));
    }

    #[test]
    fn simulated_nodes_get_loopback_addresses_of_their_own() {
        let layout = Layout {
            runtime: NodeRuntime::Simulated,
            subnet: None,
            nodes: 3,
            ..runc_layout()
        };
        assert_eq!(layout.bridge(), None);
        let addresses: Vec<_> = layout.all_nodes().map(|n| n.address.to_string()).collect();
        assert_eq!(addresses, ["127.0.0.11", "127.0.0.12", "127.0.0.13"]);
        assert!(layout.all_nodes().all(|n| n.namespace.is_none()));
        let agent = layout.agent_args(Path::new("/c"), &layout.node(2));
        assert_eq!(
            agent.join(" "),
            "agent --server https://127.0.0.1:6443 --token-file /c/server/node-token \
             --data-dir /c/nodes/n2 --node-name petset-n2 --node-ip 127.0.0.12 \
             --node-runtime simulated --kubelet-port 10250 --local-path-dir /c/volumes"
        );
        assert_eq!(
            layout.server_args(Path::new("/c"), 1).join(" "),
            "server --data-dir /c/server --api-listen 127.0.0.1:6443 --advertise-address 127.0.0.1 \
             --store embedded --local-path-dir /c/volumes"
        );
    }

    #[test]
    fn runc_commands_name_the_bridge_address_and_the_pod_bridge() {
        let layout = runc_layout();
        assert_eq!(
            layout.server_args(Path::new("/c"), 1).join(" "),
            "server --data-dir /c/server --api-listen 0.0.0.0:6443 --advertise-address 10.250.7.1 \
             --store embedded --local-path-dir /c/volumes"
        );
        assert_eq!(
            layout
                .agent_args(Path::new("/c"), &layout.node(3))
                .join(" "),
            "agent --server https://10.250.7.1:6443 --token-file /c/server/node-token \
             --data-dir /c/nodes/n3 --node-name petset-n3 --node-ip 10.250.7.13 \
             --node-runtime runc --kubelet-port 10250 --local-path-dir /c/volumes \
             --bridge pstca1b2c3p3 --pod-routes"
        );
    }

    #[test]
    fn several_servers_share_an_etcd_of_as_many_members_and_the_agents_know_them_all() {
        let layout = Layout {
            servers: 3,
            ..runc_layout()
        };
        assert_eq!(
            layout.server_args(Path::new("/c"), 3).join(" "),
            "server --data-dir /c/servers/s3 --api-listen 0.0.0.0:6445 --advertise-address 10.250.7.1 \
             --store etcd://127.0.0.1:7443,127.0.0.1:7445,127.0.0.1:7447 --local-path-dir /c/volumes"
        );
        assert_eq!(
            layout.etcd_args(Path::new("/c"), 2).join(" "),
            "etcd --name e2 --data-dir /c/etcd/e2 --listen-client-urls http://127.0.0.1:7445 \
             --advertise-client-urls http://127.0.0.1:7445 --listen-peer-urls http://127.0.0.1:7446 \
             --initial-advertise-peer-urls http://127.0.0.1:7446 \
             --initial-cluster e1=http://127.0.0.1:7444,e2=http://127.0.0.1:7446,e3=http://127.0.0.1:7448 \
             --initial-cluster-token pstc-a1b2c3 --logger zap --log-level warn"
        );
        let agent = layout.agent_args(Path::new("/c"), &layout.node(1));
        assert_eq!(
            agent[..3].join(" "),
            "agent --server https://10.250.7.1:6443,https://10.250.7.1:6444,https://10.250.7.1:6445"
        );
    }
}
