//! The routes between the nodes' pod networks, as flannel's host-gw backend makes them: one
//! `<pod CIDR of a node> via <that node's address>` per other node, no encapsulation.
//!
//! Every route petset makes carries the routing protocol number [`ROUTE_PROTOCOL`]
//! (`ip route … proto 126`), and petset lists and removes only routes with that mark, so it
//! never touches a route it did not make. 126 is free in iproute2's `rt_protos` (0–18, 42,
//! 99 and 186–192 are named there) and is none of the numbers other pod networks use
//! (Calico's 80, BIRD's 12).
//!
//! These act on the network namespace of the calling thread: a node in a namespace of its
//! own (`petset cluster up`) routes there and nowhere else.

use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;

use super::{Cidr, ip, route_destination};
use crate::pods::RuntimeError;

/// The `proto` number of petset's routes.
pub const ROUTE_PROTOCOL: u8 = 126;

/// A route to a pod network through a gateway (another node's address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodRoute {
    pub destination: Cidr,
    pub gateway: Ipv4Addr,
}

/// An address of an interface of this namespace, with its subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub device: String,
    pub address: Ipv4Addr,
    /// The directly connected subnet the address is on.
    pub subnet: Cidr,
}

fn protocol() -> String {
    ROUTE_PROTOCOL.to_string()
}

/// Adds the route, or changes the gateway of petset's route to that destination. The kernel
/// itself refuses a gateway that is not on a connected subnet.
pub fn replace_route(route: &PodRoute) -> Result<(), RuntimeError> {
    ip(
        &[
            "-4",
            "route",
            "replace",
            &route.destination.to_string(),
            "via",
            &route.gateway.to_string(),
            "proto",
            &protocol(),
        ],
        None,
    )
    .map(drop)
}

/// Removes petset's route to `destination`; a route to it that petset did not make (another
/// protocol) is left alone, as is a route already gone.
pub fn remove_route(destination: Cidr) -> Result<(), RuntimeError> {
    if !petset_routes()?
        .iter()
        .any(|r| r.destination == destination)
    {
        return Ok(());
    }
    ip(
        &[
            "-4",
            "route",
            "del",
            &destination.to_string(),
            "proto",
            &protocol(),
        ],
        None,
    )
    .map(drop)
}

/// The routes petset made in this namespace (its main table).
pub fn petset_routes() -> Result<Vec<PodRoute>, RuntimeError> {
    let listed = ip(&["-4", "-o", "route", "show", "proto", &protocol()], None)?;
    Ok(parse_routes(&listed))
}

/// Reads `ip -o route show` lines: the destination and the `via` address of each; routes
/// without a gateway are not petset's kind.
fn parse_routes(listed: &str) -> Vec<PodRoute> {
    listed
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let destination = route_destination(words.first()?)?;
            let gateway = words
                .iter()
                .skip_while(|w| **w != "via")
                .nth(1)?
                .parse()
                .ok()?;
            Some(PodRoute {
                destination,
                gateway,
            })
        })
        .collect()
}

/// The IPv4 addresses of this namespace's interfaces.
pub fn interface_addresses() -> Result<Vec<InterfaceAddress>, RuntimeError> {
    Ok(parse_addresses(&ip(&["-4", "-o", "addr", "show"], None)?))
}

/// Reads `ip -o addr show` lines (`2: eth0    inet 10.250.0.11/24 brd … scope global eth0`).
fn parse_addresses(listed: &str) -> Vec<InterfaceAddress> {
    listed
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let device = words.get(1)?.trim_end_matches(':');
            let inet = words.iter().skip_while(|w| **w != "inet").nth(1)?;
            let (address, prefix) = inet.split_once('/')?;
            let address: Ipv4Addr = address.parse().ok()?;
            Some(InterfaceAddress {
                device: device.to_string(),
                address,
                subnet: Cidr::holding(address, prefix.parse().ok()?)?,
            })
        })
        .collect()
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Turns IPv4 forwarding on in this network namespace (the setting is per namespace): a node
/// forwards what arrives for its pods from other nodes. Never for the host's namespace.
pub fn enable_ipv4_forwarding() -> Result<(), RuntimeError> {
    let path = Path::new(IP_FORWARD);
    if fs::read_to_string(path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    fs::write(path, "1").map_err(|source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_routes_and_addresses_are_read() {
        let routes = parse_routes(
            "10.42.2.0/24 via 10.250.0.12 dev eth0 proto 126 \n\
             10.42.3.0/24 via 10.250.0.13 dev eth0 proto 126 onlink \n\
             10.250.0.0/24 dev eth0 proto kernel scope link src 10.250.0.11 \n",
        );
        assert_eq!(
            routes,
            [
                PodRoute {
                    destination: "10.42.2.0/24".parse().expect("cidr"),
                    gateway: Ipv4Addr::new(10, 250, 0, 12),
                },
                PodRoute {
                    destination: "10.42.3.0/24".parse().expect("cidr"),
                    gateway: Ipv4Addr::new(10, 250, 0, 13),
                },
            ]
        );
        let addresses = parse_addresses(
            "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n\
             2: eth0    inet 10.250.0.11/24 brd 10.250.0.255 scope global eth0\\       valid_lft forever\n\
             3: petset0    inet 10.42.1.1/24 scope global petset0\n",
        );
        assert_eq!(addresses.len(), 3);
        assert_eq!(addresses[1].device, "eth0");
        assert_eq!(addresses[1].address, Ipv4Addr::new(10, 250, 0, 11));
        assert_eq!(addresses[1].subnet.to_string(), "10.250.0.0/24");
        assert_eq!(addresses[0].subnet.to_string(), "127.0.0.0/8");
    }
}
