//! NetworkPolicies (networking.k8s.io/v1): upstream's
//! `pkg/registry/networking/networkpolicy/strategy.go`, `SetDefaults_NetworkPolicy`,
//! `ValidateNetworkPolicy` and `printNetworkPolicy`. petset stores them (Helm charts ship
//! them) but restricts no pod traffic, and says so on every create and update.

use std::net::IpAddr;

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::defaults::{array_mut, set_default};
use crate::error::Cause;
use crate::json::{items, text};
use crate::kinds::Strategy;
use crate::kinds::job::selector_text;
use crate::kinds::networking::{self, go_invalid, go_slice, label_selector};
use crate::proto::{Field, Kind, LABEL_SELECTOR, OBJECT_META, f, many};
use crate::resources::{ResourceType, entry};
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, col};

pub type Typed = k8s_openapi::api::networking::v1::NetworkPolicy;

pub const RESOURCE: ResourceType = ResourceType {
    short_names: &["netpol"],
    printing: Printing {
        columns: COLUMNS,
        cells,
    },
    strategy: &PolicyStrategy,
    protobuf: Some(NETWORK_POLICY),
    ..entry(
        networking::GROUP,
        "NetworkPolicy",
        "networkpolicies",
        "networkpolicy",
        true,
        round_trip::<Typed>,
    )
};

/// networking/v1 NetworkPolicyPort: every field is a Go pointer.
const NETWORK_POLICY_PORT: &[Field] = &[
    f(1, "protocol", Kind::OptionalString),
    f(2, "port", Kind::IntOrString),
    f(3, "endPort", Kind::OptionalInt),
];

/// networking/v1 NetworkPolicyPeer.
const NETWORK_POLICY_PEER: &[Field] = &[
    f(1, "podSelector", Kind::Message(LABEL_SELECTOR)),
    f(2, "namespaceSelector", Kind::Message(LABEL_SELECTOR)),
    f(
        3,
        "ipBlock",
        Kind::Message(&[f(1, "cidr", Kind::String), many(2, "except", Kind::String)]),
    ),
];

/// The protobuf layout of a NetworkPolicy (v1 has no status). Ingress rules name their
/// peers `from` and egress rules `to`, both field 2.
const NETWORK_POLICY: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Message(&[
            f(1, "podSelector", Kind::Message(LABEL_SELECTOR)),
            many(
                2,
                "ingress",
                Kind::Message(&[
                    many(1, "ports", Kind::Message(NETWORK_POLICY_PORT)),
                    many(2, "from", Kind::Message(NETWORK_POLICY_PEER)),
                ]),
            ),
            many(
                3,
                "egress",
                Kind::Message(&[
                    many(1, "ports", Kind::Message(NETWORK_POLICY_PORT)),
                    many(2, "to", Kind::Message(NETWORK_POLICY_PEER)),
                ]),
            ),
            many(4, "policyTypes", Kind::String),
        ]),
    ),
];

/// What every create and update of a NetworkPolicy is answered with (a `Warning` header).
pub const NOT_ENFORCED: &str = "networking.k8s.io/v1 NetworkPolicy is stored but not enforced by petset: pod traffic is not restricted";

const COLUMNS: &[Column] = &[
    NAME,
    Column {
        description: "Selects the pods to which this NetworkPolicy object applies.",
        ..col("Pod-Selector", "string", 0)
    },
    AGE,
];

fn cells(policy: &Value, name: Value, age: Value, _: Timestamp) -> Vec<Value> {
    vec![
        name,
        json!(selector_text(policy.pointer("/spec/podSelector"))),
        age,
    ]
}

pub struct PolicyStrategy;

impl Strategy for PolicyStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    /// Upstream's defaulters: ports are TCP, and a policy without `policyTypes` is about
    /// ingress (and egress when it has egress rules). Go writes the pod selector always, as
    /// `{}` (every pod of the namespace) when none was given.
    fn defaults(&self, policy: &mut Value) {
        set_default(policy, "spec", json!({}));
        let Some(spec) = policy.get_mut("spec").filter(|s| s.is_object()) else {
            return;
        };
        set_default(spec, "podSelector", json!({}));
        for rules in ["ingress", "egress"] {
            for rule in array_mut(spec, rules) {
                for port in array_mut(rule, "ports") {
                    set_default(port, "protocol", json!("TCP"));
                }
            }
        }
        if items(spec, "/policyTypes").is_empty() {
            let mut types = vec![json!("Ingress")];
            if !items(spec, "/egress").is_empty() {
                types.push(json!("Egress"));
            }
            spec["policyTypes"] = Value::Array(types);
        }
    }

    fn validate(&self, policy: &Value) -> Vec<Cause> {
        let empty = json!({});
        let spec = policy.get("spec").unwrap_or(&empty);
        let mut causes = Vec::new();
        if let Some(selector) = spec.get("podSelector").filter(|s| !s.is_null()) {
            causes.extend(label_selector(selector, "spec.podSelector"));
        }
        for (rules, peers) in [("ingress", "from"), ("egress", "to")] {
            for (index, rule) in items(spec, &format!("/{rules}")).iter().enumerate() {
                let field = format!("spec.{rules}[{index}]");
                for (port_index, port) in items(rule, "/ports").iter().enumerate() {
                    causes.extend(validate_port(port, &format!("{field}.ports[{port_index}]")));
                }
                for (peer_index, peer) in items(rule, &format!("/{peers}")).iter().enumerate() {
                    causes.extend(validate_peer(
                        peer,
                        &format!("{field}.{peers}[{peer_index}]"),
                    ));
                }
            }
        }
        causes.extend(validate_policy_types(spec));
        causes
    }

    fn warnings(&self, _policy: &Value) -> Vec<String> {
        vec![NOT_ENFORCED.to_string()]
    }
}

fn validate_policy_types(spec: &Value) -> Vec<Cause> {
    let types = items(spec, "/policyTypes");
    if types.len() > 2 {
        return vec![go_invalid(
            "spec.policyTypes",
            &go_slice("networking.PolicyType", spec.get("policyTypes")),
            "may not specify more than two policyTypes",
        )];
    }
    types
        .iter()
        .enumerate()
        .filter(|(_, kind)| !matches!(kind.as_str(), Some("Ingress" | "Egress")))
        .map(|(index, kind)| {
            Cause::not_supported(
                format!("spec.policyTypes[{index}]"),
                kind,
                &["Ingress", "Egress"],
            )
        })
        .collect()
}

/// Upstream's `ValidateNetworkPolicyPort`.
fn validate_port(port: &Value, field: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    if let Some(protocol) = port.get("protocol").filter(|p| !p.is_null())
        && !matches!(protocol.as_str(), Some("TCP" | "UDP" | "SCTP"))
    {
        causes.push(Cause::not_supported(
            format!("{field}.protocol"),
            protocol,
            &["TCP", "UDP", "SCTP"],
        ));
    }
    let end_port = port.get("endPort").and_then(Value::as_i64);
    let end_field = format!("{field}.endPort");
    match port.get("port").filter(|p| !p.is_null()) {
        Some(Value::String(name)) => {
            if let Some(end) = end_port {
                causes.push(Cause::invalid(
                    &end_field,
                    &json!(end),
                    "may not be specified when `port` is non-numeric",
                ));
            }
            causes.extend(networking::port_name(name, &format!("{field}.port")));
        }
        Some(number) => {
            let number = number.as_i64().unwrap_or(0);
            causes.extend(networking::port_number(number, &format!("{field}.port")));
            if let Some(end) = end_port {
                if end < number {
                    causes.push(Cause::invalid(
                        &end_field,
                        &json!(end),
                        "must be greater than or equal to `port`",
                    ));
                }
                causes.extend(networking::port_number(end, &end_field));
            }
        }
        None => {
            if let Some(end) = end_port {
                causes.push(Cause::invalid(
                    &end_field,
                    &json!(end),
                    "may not be specified when `port` is not specified",
                ));
            }
        }
    }
    causes
}

/// Upstream's `ValidateNetworkPolicyPeer`: at least one of the two selectors and an IP
/// block, and an IP block alone.
fn validate_peer(peer: &Value, field: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let given = |name: &str| peer.get(name).filter(|v| !v.is_null());
    let mut count = 0;
    for selector in ["podSelector", "namespaceSelector"] {
        if let Some(selector_value) = given(selector) {
            count += 1;
            causes.extend(label_selector(
                selector_value,
                &format!("{field}.{selector}"),
            ));
        }
    }
    let block = given("ipBlock");
    if let Some(block) = block {
        count += 1;
        causes.extend(validate_ip_block(block, &format!("{field}.ipBlock")));
    }
    if count == 0 {
        causes.push(Cause::required(field, "must specify a peer"));
    } else if count > 1 && block.is_some() {
        causes.push(Cause::forbidden(
            field,
            "may not specify both ipBlock and another peer",
        ));
    }
    causes
}

/// Upstream's `ValidateIPBlock`: a CIDR, and exceptions strictly inside it.
fn validate_ip_block(block: &Value, field: &str) -> Vec<Cause> {
    let cidr_text = text(block, "/cidr");
    if cidr_text.is_empty() {
        return vec![Cause::required(format!("{field}.cidr"), "")];
    }
    let Some(cidr) = Cidr::parse(cidr_text) else {
        return vec![not_a_cidr(&format!("{field}.cidr"), cidr_text)];
    };
    let mut causes = Vec::new();
    for (index, except) in items(block, "/except").iter().enumerate() {
        let except_field = format!("{field}.except[{index}]");
        let except_text = except.as_str().unwrap_or_default();
        match Cidr::parse(except_text) {
            None => causes.push(not_a_cidr(&except_field, except_text)),
            Some(inner) if !cidr.strictly_contains(&inner) => causes.push(Cause::invalid(
                except_field,
                &json!(except_text),
                "must be a strict subset of `cidr`",
            )),
            Some(_) => {}
        }
    }
    causes
}

fn not_a_cidr(field: &str, value: &str) -> Cause {
    Cause::invalid(
        field,
        &json!(value),
        "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
    )
}

/// An address block: its network address (the bits past the prefix cleared) and its prefix
/// length. As upstream's parser, an address with host bits set is taken as its network.
#[derive(Debug, PartialEq, Eq)]
struct Cidr {
    network: u128,
    prefix: u32,
    v6: bool,
}

impl Cidr {
    fn parse(text: &str) -> Option<Self> {
        let (address, prefix) = text.split_once('/')?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let prefix: u32 = prefix.parse().ok()?;
        let (bits, width, v6) = match address.parse::<IpAddr>().ok()? {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32, false),
            IpAddr::V6(v6) => (u128::from(v6), 128, true),
        };
        if prefix > width {
            return None;
        }
        Some(Self {
            network: bits & Self::mask(prefix, width),
            prefix,
            v6,
        })
    }

    /// The bits of the first `prefix` of `width`.
    fn mask(prefix: u32, width: u32) -> u128 {
        if prefix == 0 {
            return 0;
        }
        let all = if width == 128 {
            u128::MAX
        } else {
            (1u128 << width) - 1
        };
        all & !((1u128 << (width - prefix)) - 1)
    }

    /// Whether `inner` lies in this block and is smaller than it.
    fn strictly_contains(&self, inner: &Self) -> bool {
        let width = if self.v6 { 128 } else { 32 };
        self.v6 == inner.v6
            && self.prefix < inner.prefix
            && inner.network & Self::mask(self.prefix, width) == self.network
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(spec: Value) -> Value {
        json!({"metadata": {"name": "db"}, "spec": spec})
    }

    fn problems(spec: Value) -> Vec<String> {
        PolicyStrategy
            .validate(&policy(spec))
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn a_well_formed_policy_is_valid_and_defaulted_as_upstream() {
        let mut object = policy(json!({
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}},
                    {"namespaceSelector": {}, "podSelector": {}},
                    {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                "ports": [{"port": 5432}, {"port": "metrics", "protocol": "UDP"},
                    {"port": 8000, "endPort": 8080}]}],
            "egress": [{"to": [{"ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8:1::/48"]}}]}]
        }));
        PolicyStrategy.defaults(&mut object);
        assert_eq!(object.pointer("/spec/podSelector"), Some(&json!({})));
        assert_eq!(
            object.pointer("/spec/policyTypes"),
            Some(&json!(["Ingress", "Egress"]))
        );
        assert_eq!(
            object.pointer("/spec/ingress/0/ports/0/protocol"),
            Some(&json!("TCP"))
        );
        assert_eq!(
            object.pointer("/spec/ingress/0/ports/1/protocol"),
            Some(&json!("UDP"))
        );
        assert_eq!(PolicyStrategy.validate(&object), vec![]);
        let mut ingress_only = policy(json!({"podSelector": {"matchLabels": {"app": "db"}}}));
        PolicyStrategy.defaults(&mut ingress_only);
        assert_eq!(
            ingress_only.pointer("/spec/policyTypes"),
            Some(&json!(["Ingress"]))
        );
        let row = cells(&ingress_only, json!("db"), json!("1s"), Timestamp::now());
        assert_eq!(row, [json!("db"), json!("app=db"), json!("1s")]);
        let row = cells(&object, json!("db"), json!("1s"), Timestamp::now());
        assert_eq!(row[1], json!("<none>"));
    }

    #[test]
    fn policy_types_are_ingress_and_egress_at_most_two() {
        assert_eq!(
            problems(json!({"policyTypes": ["Ingress", "Sideways"]})),
            [
                "spec.policyTypes[1]: Unsupported value: \"Sideways\": supported values: \"Ingress\", \"Egress\""
            ]
        );
        assert_eq!(
            problems(json!({"policyTypes": ["Ingress", "Egress", "Ingress"]})),
            [
                "spec.policyTypes: Invalid value: []networking.PolicyType{\"Ingress\", \"Egress\", \"Ingress\"}: may not specify more than two policyTypes"
            ]
        );
    }

    #[test]
    fn ports_have_a_known_protocol_and_end_ports_follow_numeric_ports() {
        let port = |p: Value| problems(json!({"ingress": [{"ports": [p]}]}));
        let at = "spec.ingress[0].ports[0]";
        assert_eq!(
            port(json!({"protocol": "ICMP"})),
            [format!(
                "{at}.protocol: Unsupported value: \"ICMP\": supported values: \"TCP\", \"UDP\", \"SCTP\""
            )]
        );
        assert_eq!(
            port(json!({"port": 0})),
            [format!(
                "{at}.port: Invalid value: 0: must be between 1 and 65535, inclusive"
            )]
        );
        assert_eq!(
            port(json!({"port": 8080, "endPort": 8000})),
            [format!(
                "{at}.endPort: Invalid value: 8000: must be greater than or equal to `port`"
            )]
        );
        assert_eq!(
            port(json!({"port": 8080, "endPort": 70000})),
            [format!(
                "{at}.endPort: Invalid value: 70000: must be between 1 and 65535, inclusive"
            )]
        );
        assert_eq!(
            port(json!({"port": "http", "endPort": 90})),
            [format!(
                "{at}.endPort: Invalid value: 90: may not be specified when `port` is non-numeric"
            )]
        );
        assert_eq!(
            port(json!({"endPort": 90})),
            [format!(
                "{at}.endPort: Invalid value: 90: may not be specified when `port` is not specified"
            )]
        );
        assert_eq!(
            port(json!({"port": "Http"})),
            [format!(
                "{at}.port: Invalid value: \"Http\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"
            )]
        );
    }

    #[test]
    fn peers_are_selectors_or_one_ip_block_within_its_cidr() {
        let peer = |p: Value| problems(json!({"egress": [{"to": [p]}]}));
        let at = "spec.egress[0].to[0]";
        assert_eq!(
            peer(json!({})),
            [format!("{at}: Required value: must specify a peer")]
        );
        assert_eq!(
            peer(json!({"podSelector": {}, "ipBlock": {"cidr": "10.0.0.0/8"}})),
            [format!(
                "{at}: Forbidden: may not specify both ipBlock and another peer"
            )]
        );
        assert_eq!(
            peer(json!({"ipBlock": {}})),
            [format!("{at}.ipBlock.cidr: Required value")]
        );
        assert_eq!(
            peer(json!({"ipBlock": {"cidr": "10.0.0.0"}})),
            [format!(
                "{at}.ipBlock.cidr: Invalid value: \"10.0.0.0\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
            )]
        );
        assert_eq!(
            peer(json!({"ipBlock": {"cidr": "10.0.0.0/8",
                "except": ["10.0.0.0/8", "11.0.0.0/16", "10.1.0.0/33", "2001:db8::/64"]}})),
            [
                format!(
                    "{at}.ipBlock.except[0]: Invalid value: \"10.0.0.0/8\": must be a strict subset of `cidr`"
                ),
                format!(
                    "{at}.ipBlock.except[1]: Invalid value: \"11.0.0.0/16\": must be a strict subset of `cidr`"
                ),
                format!(
                    "{at}.ipBlock.except[2]: Invalid value: \"10.1.0.0/33\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
                ),
                format!(
                    "{at}.ipBlock.except[3]: Invalid value: \"2001:db8::/64\": must be a strict subset of `cidr`"
                ),
            ]
        );
        let bad_selector = peer(json!({"podSelector": {"matchLabels": {"bad key": "x"}}}));
        assert_eq!(bad_selector.len(), 1);
        assert!(bad_selector[0].starts_with(&format!(
            "{at}.podSelector.matchLabels: Invalid value: \"bad key\""
        )));
    }

    #[test]
    fn host_bits_are_cleared_as_upstreams_sloppy_parser_does() {
        let outer = Cidr::parse("10.0.0.1/8").expect("parses");
        assert_eq!(outer, Cidr::parse("10.0.0.0/8").expect("parses"));
        assert!(outer.strictly_contains(&Cidr::parse("10.200.0.0/16").expect("parses")));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .expect("parses")
                .strictly_contains(&outer)
        );
        assert_eq!(Cidr::parse("10.0.0.0/+8"), None);
    }

    #[test]
    fn every_write_is_warned_about() {
        assert_eq!(PolicyStrategy.warnings(&policy(json!({}))), [NOT_ENFORCED]);
    }
}
