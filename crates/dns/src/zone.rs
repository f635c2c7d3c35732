//! The answers: what a name under the cluster domain means, read from the Services and
//! Endpoints at the moment of the query, following the Kubernetes DNS specification (as
//! CoreDNS's `kubernetes` plugin serves it):
//!
//! - `<svc>.<ns>.svc.<domain>`: the ClusterIP; for a headless Service, every address of its
//!   Endpoints (the endpoints controller already includes not-ready pods when the Service
//!   publishes them).
//! - `<hostname>.<svc>.<ns>.svc.<domain>` (headless Services): the endpoint address with that hostname (a pod whose
//!   `hostname` and `subdomain` put it there), or the one whose IP is `<a-b-c-d>`.
//! - `_<port>._<proto>.<svc>.<ns>.svc.<domain>` and `<svc>.<ns>.svc.<domain>` SRV: the ports.
//! - `<a-b-c-d>.<ns>.pod.<domain>`: that address.
//! - `<d.c.b.a>.in-addr.arpa` PTR: the headless Service's endpoint or the Service holding the
//!   address.
//!
//! Reading at query time means a name resolves as soon as the Endpoints show the address;
//! nothing is rebuilt. Negative answers carry a 1-second SOA minimum, so resolvers do not
//! remember a missing name for long (upstream's 30 s is kubernetes#92559).

use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, PTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service};

/// Seconds a positive answer may be cached (CoreDNS's default for the cluster zone).
pub const TTL: u32 = 5;
/// Seconds a negative answer may be cached.
pub const NEGATIVE_TTL: u32 = 1;

/// The objects the answers come from.
pub trait ClusterView {
    fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>>;
    fn endpoints(&self, namespace: &str, name: &str) -> Option<Arc<Endpoints>>;
    fn services(&self) -> Vec<Arc<Service>>;
    fn all_endpoints(&self) -> Vec<Arc<Endpoints>>;
    /// The namespace of the pod with this address, for the server-side search path.
    fn namespace_of(&self, address: std::net::IpAddr) -> Option<String>;
}

/// What a query resolves to.
#[derive(Debug, PartialEq)]
enum Found {
    Records(Vec<Record>, Vec<Record>),
    /// The name exists, without records of the asked type.
    NoData,
    NxDomain,
    /// Not ours: this server answers for the cluster domain and reverse lookups only.
    Refused,
}

pub struct Zone {
    domain: String,
    soa: Record,
}

fn name(text: &str) -> Option<Name> {
    Name::from_str(&format!("{}.", text.trim_end_matches('.'))).ok()
}

fn dashed(ip: &str) -> String {
    ip.replace('.', "-")
}

fn addresses(endpoints: &Endpoints) -> impl Iterator<Item = &EndpointAddress> {
    endpoints
        .subsets
        .iter()
        .flatten()
        .flat_map(|s| s.addresses.iter().flatten())
}

fn is_headless(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_none_or(|ip| ip == "None" || ip.is_empty())
}

impl Zone {
    pub fn new(domain: &str) -> Self {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let origin = name(&domain).unwrap_or_else(Name::root);
        let mname = name(&format!("ns.dns.{domain}")).unwrap_or_else(Name::root);
        let rname = name(&format!("hostmaster.{domain}")).unwrap_or_else(Name::root);
        let soa = Record::from_rdata(
            origin,
            NEGATIVE_TTL,
            RData::SOA(SOA::new(mname, rname, 1, 7200, 1800, 86400, NEGATIVE_TTL)),
        );
        Self { domain, soa }
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The response to a request message from `client`.
    pub fn answer(
        &self,
        view: &dyn ClusterView,
        request: &Message,
        client: Option<std::net::IpAddr>,
    ) -> Message {
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.message_type = MessageType::Response;
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.recursion_available = false;
        response.queries = request.queries.clone();
        if request.metadata.op_code != OpCode::Query || request.queries.len() != 1 {
            response.metadata.response_code = ResponseCode::NotImp;
            return response;
        }
        let query = &request.queries[0];
        let qname = query.name().to_ascii().to_ascii_lowercase();
        let mut found = self.resolve(view, &qname, query.query_type());
        if found == Found::Refused
            && let Some(namespace) = client.and_then(|c| view.namespace_of(c))
        {
            found = self.search(view, &qname, query.query_type(), &namespace);
        }
        match found {
            Found::Records(answers, additionals) => {
                response.metadata.authoritative = true;
                response.answers = answers;
                response.additionals = additionals;
            }
            Found::NoData => {
                response.metadata.authoritative = true;
                response.authorities = vec![self.soa.clone()];
            }
            Found::NxDomain => {
                response.metadata.authoritative = true;
                response.metadata.response_code = ResponseCode::NXDomain;
                response.authorities = vec![self.soa.clone()];
            }
            Found::Refused => response.metadata.response_code = ResponseCode::Refused,
        }
        response
    }

    /// The search path applied by the server, as CoreDNS's `autopath` does: a name outside
    /// the cluster domain, asked by a pod, is tried under the pod's search domains
    /// (`<ns>.svc.<domain>`, `svc.<domain>`, `<domain>`), and the first that exists answers
    /// with a CNAME to it. Resolvers that do not apply `search` themselves (busybox's
    /// `nslookup`, musl) then find `web-0.nginx` as the kubelet's resolv.conf promises.
    fn search(
        &self,
        view: &dyn ClusterView,
        qname: &str,
        qtype: RecordType,
        namespace: &str,
    ) -> Found {
        let short = qname.trim_end_matches('.');
        for suffix in [
            format!("{namespace}.svc.{}", self.domain),
            format!("svc.{}", self.domain),
            self.domain.clone(),
        ] {
            let full = format!("{short}.{suffix}");
            let found = self.resolve(view, &full, qtype);
            let (mut answers, additionals) = match found {
                Found::NxDomain | Found::Refused => continue,
                Found::NoData => (Vec::new(), Vec::new()),
                Found::Records(answers, additionals) => (answers, additionals),
            };
            let (Some(alias), Some(target)) = (name(short), name(&full)) else {
                return Found::NxDomain;
            };
            answers.insert(
                0,
                Record::from_rdata(alias, TTL, RData::CNAME(CNAME(target))),
            );
            return Found::Records(answers, additionals);
        }
        Found::Refused
    }

    fn resolve(&self, view: &dyn ClusterView, qname: &str, qtype: RecordType) -> Found {
        let qname = qname.trim_end_matches('.');
        if let Some(reversed) = qname.strip_suffix(".in-addr.arpa") {
            return self.reverse(view, reversed, qtype);
        }
        let relative = if qname == self.domain {
            ""
        } else if let Some(relative) = qname.strip_suffix(&format!(".{}", self.domain)) {
            relative
        } else {
            return Found::Refused;
        };
        let labels: Vec<&str> = if relative.is_empty() {
            Vec::new()
        } else {
            relative.split('.').collect()
        };
        match labels.as_slice() {
            [] => {
                if qtype == RecordType::SOA {
                    Found::Records(vec![self.soa.clone()], Vec::new())
                } else {
                    Found::NoData
                }
            }
            ["svc"] | ["pod"] => Found::NoData,
            [service, namespace, "svc"] => self.service(view, qname, namespace, service, qtype),
            [host, service, namespace, "svc"] => {
                self.endpoint(view, qname, namespace, service, host, qtype)
            }
            [port, protocol, service, namespace, "svc"]
                if port.starts_with('_') && protocol.starts_with('_') =>
            {
                self.ports(
                    view,
                    qname,
                    namespace,
                    service,
                    Some((&port[1..], &protocol[1..])),
                    qtype,
                )
            }
            [ip, _namespace, "pod"] => match ip.replace('-', ".").parse::<Ipv4Addr>() {
                Ok(address) if qtype == RecordType::A => {
                    Found::Records(vec![a_record(qname, address)], Vec::new())
                }
                Ok(_) => Found::NoData,
                Err(_) => Found::NxDomain,
            },
            _ => Found::NxDomain,
        }
    }

    fn service(
        &self,
        view: &dyn ClusterView,
        qname: &str,
        namespace: &str,
        service_name: &str,
        qtype: RecordType,
    ) -> Found {
        let Some(service) = view.service(namespace, service_name) else {
            return Found::NxDomain;
        };
        let spec = service.spec.clone().unwrap_or_default();
        if spec.type_.as_deref() == Some("ExternalName") {
            return match spec.external_name.as_deref().and_then(name) {
                Some(target) => Found::Records(
                    vec![Record::from_rdata(
                        name(qname).unwrap_or_else(Name::root),
                        TTL,
                        RData::CNAME(CNAME(target)),
                    )],
                    Vec::new(),
                ),
                None => Found::NxDomain,
            };
        }
        match qtype {
            RecordType::SRV => self.ports(view, qname, namespace, service_name, None, qtype),
            RecordType::A | RecordType::ANY => {
                if !is_headless(&service) {
                    let ip = spec.cluster_ip.as_deref().unwrap_or_default();
                    return match ip.parse() {
                        Ok(address) => Found::Records(vec![a_record(qname, address)], Vec::new()),
                        Err(_) => Found::NoData,
                    };
                }
                let endpoints = view.endpoints(namespace, service_name);
                let records: Vec<Record> = endpoints
                    .iter()
                    .flat_map(|e| addresses(e).cloned().collect::<Vec<_>>())
                    .filter_map(|a| a.ip.parse().ok())
                    .map(|address| a_record(qname, address))
                    .collect();
                if records.is_empty() {
                    Found::NxDomain
                } else {
                    Found::Records(records, Vec::new())
                }
            }
            _ => Found::NoData,
        }
    }

    fn endpoint(
        &self,
        view: &dyn ClusterView,
        qname: &str,
        namespace: &str,
        service: &str,
        host: &str,
        qtype: RecordType,
    ) -> Found {
        if !view
            .service(namespace, service)
            .is_some_and(|s| is_headless(&s))
        {
            return Found::NxDomain;
        }
        let Some(endpoints) = view.endpoints(namespace, service) else {
            return Found::NxDomain;
        };
        let found: Vec<Ipv4Addr> = addresses(&endpoints)
            .filter(|a| a.hostname.as_deref() == Some(host) || dashed(&a.ip) == host)
            .filter_map(|a| a.ip.parse().ok())
            .collect();
        if found.is_empty() {
            Found::NxDomain
        } else if matches!(qtype, RecordType::A | RecordType::ANY) {
            Found::Records(
                found.into_iter().map(|a| a_record(qname, a)).collect(),
                Vec::new(),
            )
        } else {
            Found::NoData
        }
    }

    /// SRV records of a Service's ports: all of them, or the one named `port` with protocol
    /// `protocol` (`_http._tcp…`).
    fn ports(
        &self,
        view: &dyn ClusterView,
        qname: &str,
        namespace: &str,
        service_name: &str,
        named: Option<(&str, &str)>,
        qtype: RecordType,
    ) -> Found {
        let Some(service) = view.service(namespace, service_name) else {
            return Found::NxDomain;
        };
        let spec = service.spec.clone().unwrap_or_default();
        let wanted = |port_name: Option<&str>, protocol: Option<&str>| match named {
            None => true,
            Some((name, proto)) => {
                port_name == Some(name) && protocol.unwrap_or("TCP").eq_ignore_ascii_case(proto)
            }
        };
        let base = format!("{service_name}.{namespace}.svc.{}", self.domain);
        let owner = name(qname).unwrap_or_else(Name::root);
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        if is_headless(&service) {
            let endpoints = view.endpoints(namespace, service_name);
            for subset in endpoints.iter().flat_map(|e| e.subsets.iter().flatten()) {
                for port in subset.ports.iter().flatten() {
                    if !wanted(port.name.as_deref(), port.protocol.as_deref()) {
                        continue;
                    }
                    for address in subset.addresses.iter().flatten() {
                        let host = address
                            .hostname
                            .clone()
                            .unwrap_or_else(|| dashed(&address.ip));
                        let target = format!("{host}.{base}");
                        let Some(target_name) = name(&target) else {
                            continue;
                        };
                        answers.push(Record::from_rdata(
                            owner.clone(),
                            TTL,
                            RData::SRV(SRV::new(0, 100, port.port as u16, target_name)),
                        ));
                        if let Ok(ip) = address.ip.parse() {
                            additionals.push(a_record(&target, ip));
                        }
                    }
                }
            }
        } else {
            let ip = spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok());
            for port in spec.ports.iter().flatten() {
                if !wanted(port.name.as_deref(), port.protocol.as_deref()) {
                    continue;
                }
                let Some(target) = name(&base) else {
                    continue;
                };
                answers.push(Record::from_rdata(
                    owner.clone(),
                    TTL,
                    RData::SRV(SRV::new(0, 100, port.port as u16, target)),
                ));
            }
            if let (Some(ip), false) = (ip, answers.is_empty()) {
                additionals.push(a_record(&base, ip));
            }
        }
        if answers.is_empty() {
            if named.is_some() {
                Found::NxDomain
            } else {
                Found::NoData
            }
        } else if qtype == RecordType::SRV || qtype == RecordType::ANY {
            Found::Records(answers, additionals)
        } else {
            Found::NoData
        }
    }

    fn reverse(&self, view: &dyn ClusterView, reversed: &str, qtype: RecordType) -> Found {
        let mut octets: Vec<&str> = reversed.split('.').collect();
        octets.reverse();
        let Ok(address) = octets.join(".").parse::<Ipv4Addr>() else {
            return Found::NxDomain;
        };
        let ip = address.to_string();
        let mut targets = Vec::new();
        for endpoints in view.all_endpoints() {
            let (Some(namespace), Some(service)) = (
                endpoints.metadata.namespace.as_deref(),
                endpoints.metadata.name.as_deref(),
            ) else {
                continue;
            };
            // Only a headless Service's endpoints have names of their own.
            if !view
                .service(namespace, service)
                .is_some_and(|s| is_headless(&s))
            {
                continue;
            }
            for found in addresses(&endpoints).filter(|a| a.ip == ip) {
                let host = found.hostname.clone().unwrap_or_else(|| dashed(&ip));
                targets.push(format!("{host}.{service}.{namespace}.svc.{}", self.domain));
            }
        }
        for service in view.services() {
            let spec = service.spec.as_ref();
            if spec.and_then(|s| s.cluster_ip.as_deref()) == Some(ip.as_str()) {
                targets.push(format!(
                    "{}.{}.svc.{}",
                    service.metadata.name.as_deref().unwrap_or_default(),
                    service.metadata.namespace.as_deref().unwrap_or_default(),
                    self.domain
                ));
            }
        }
        targets.sort();
        targets.dedup();
        if targets.is_empty() {
            return Found::NxDomain;
        }
        if !matches!(qtype, RecordType::PTR | RecordType::ANY) {
            return Found::NoData;
        }
        let owner = name(&format!("{reversed}.in-addr.arpa")).unwrap_or_else(Name::root);
        Found::Records(
            targets
                .iter()
                .filter_map(|t| name(t))
                .map(|t| Record::from_rdata(owner.clone(), TTL, RData::PTR(PTR(t))))
                .collect(),
            Vec::new(),
        )
    }
}

fn a_record(owner: &str, address: Ipv4Addr) -> Record {
    Record::from_rdata(
        name(owner).unwrap_or_else(Name::root),
        TTL,
        RData::A(A(address)),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use hickory_proto::op::Query;
    use serde_json::json;

    use super::*;

    #[derive(Default)]
    struct Objects {
        services: HashMap<(String, String), Arc<Service>>,
        endpoints: HashMap<(String, String), Arc<Endpoints>>,
        /// Pod address → namespace, besides the fixture's one pod.
        pods: HashMap<String, String>,
    }

    impl ClusterView for Objects {
        fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
            self.services.get(&(namespace.into(), name.into())).cloned()
        }
        fn endpoints(&self, namespace: &str, name: &str) -> Option<Arc<Endpoints>> {
            self.endpoints
                .get(&(namespace.into(), name.into()))
                .cloned()
        }
        fn services(&self) -> Vec<Arc<Service>> {
            self.services.values().cloned().collect()
        }
        fn all_endpoints(&self) -> Vec<Arc<Endpoints>> {
            self.endpoints.values().cloned().collect()
        }
        fn namespace_of(&self, address: std::net::IpAddr) -> Option<String> {
            let address = address.to_string();
            (address == "10.244.0.9")
                .then(|| "default".to_string())
                .or_else(|| self.pods.get(&address).cloned())
        }
    }

    /// The headless Service `nginx` in `default`, its Endpoints holding `addresses`.
    fn headless_nginx(addresses: serde_json::Value) -> Objects {
        let mut objects = Objects::default();
        let nginx: Service = serde_json::from_value(json!({
            "metadata": {"name": "nginx", "namespace": "default"},
            "spec": {"clusterIP": "None", "ports": [{"name": "web", "port": 80}]},
        }))
        .expect("service");
        let endpoints: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "nginx", "namespace": "default"},
            "subsets": [{
                "addresses": addresses,
                "ports": [{"name": "web", "port": 80, "protocol": "TCP"}],
            }],
        }))
        .expect("endpoints");
        objects
            .services
            .insert(("default".into(), "nginx".into()), Arc::new(nginx));
        objects
            .endpoints
            .insert(("default".into(), "nginx".into()), Arc::new(endpoints));
        objects
    }

    fn cluster() -> Objects {
        let mut objects = headless_nginx(json!([
            {"ip": "10.244.0.5", "hostname": "web-0"},
            {"ip": "10.244.0.6", "hostname": "web-1"},
        ]));
        let public: Service = serde_json::from_value(json!({
            "metadata": {"name": "public", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 8080}]},
        }))
        .expect("service");
        objects
            .services
            .insert(("default".into(), "public".into()), Arc::new(public));
        objects
    }

    fn ask(name: &str, qtype: RecordType) -> Message {
        ask_from(name, qtype, "10.244.0.99")
    }

    fn ask_from(name: &str, qtype: RecordType, client: &str) -> Message {
        let mut request = Message::query();
        request.metadata.recursion_desired = true;
        request.add_query(Query::query(Name::from_str(name).expect("name"), qtype));
        let client = client.parse().ok();
        Zone::new("cluster.local").answer(&cluster(), &request, client)
    }

    #[test]
    fn pods_get_their_search_path_applied_by_the_server() {
        let response = ask_from("web-0.nginx.", RecordType::A, "10.244.0.9");
        assert_eq!(
            addresses_in(&response),
            ["web-0.nginx.default.svc.cluster.local.", "10.244.0.5"]
        );
        let response = ask_from("public.default.", RecordType::A, "10.244.0.9");
        assert_eq!(addresses_in(&response)[1], "10.96.0.20");
        // Only pods have a search path; a name nobody has stays refused.
        let response = ask_from("web-0.nginx.", RecordType::A, "10.244.0.99");
        assert_eq!(response.metadata.response_code, ResponseCode::Refused);
        let response = ask_from("nosuch.", RecordType::A, "10.244.0.9");
        assert_eq!(response.metadata.response_code, ResponseCode::Refused);
    }

    fn addresses_in(response: &Message) -> Vec<String> {
        response
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::A(a) => a.0.to_string(),
                RData::SRV(srv) => format!("{} {}", srv.port, srv.target),
                RData::PTR(ptr) => ptr.0.to_string(),
                RData::CNAME(cname) => cname.0.to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn pods_of_a_headless_service_have_names() {
        let response = ask("web-0.nginx.default.svc.cluster.local.", RecordType::A);
        assert_eq!(response.metadata.response_code, ResponseCode::NoError);
        assert!(response.metadata.authoritative);
        assert_eq!(addresses_in(&response), ["10.244.0.5"]);
        let response = ask("WEB-1.nginx.default.svc.cluster.local.", RecordType::A);
        assert_eq!(addresses_in(&response), ["10.244.0.6"]);
        let response = ask("10-244-0-6.nginx.default.svc.cluster.local.", RecordType::A);
        assert_eq!(addresses_in(&response), ["10.244.0.6"]);
    }

    #[test]
    fn services_resolve_to_their_cluster_ip_or_their_endpoints() {
        let response = ask("nginx.default.svc.cluster.local.", RecordType::A);
        assert_eq!(addresses_in(&response), ["10.244.0.5", "10.244.0.6"]);
        let response = ask("public.default.svc.cluster.local.", RecordType::A);
        assert_eq!(addresses_in(&response), ["10.96.0.20"]);
        let response = ask("public.default.svc.cluster.local.", RecordType::AAAA);
        assert_eq!(response.metadata.response_code, ResponseCode::NoError);
        assert!(response.answers.is_empty());
        assert_eq!(response.authorities.len(), 1);
    }

    #[test]
    fn named_ports_have_srv_records() {
        let response = ask(
            "_web._tcp.nginx.default.svc.cluster.local.",
            RecordType::SRV,
        );
        assert_eq!(
            addresses_in(&response),
            [
                "80 web-0.nginx.default.svc.cluster.local.",
                "80 web-1.nginx.default.svc.cluster.local."
            ]
        );
        assert_eq!(response.additionals.len(), 2);
        let response = ask(
            "_http._tcp.public.default.svc.cluster.local.",
            RecordType::SRV,
        );
        assert_eq!(
            addresses_in(&response),
            ["8080 public.default.svc.cluster.local."]
        );
        let response = ask(
            "_nope._tcp.public.default.svc.cluster.local.",
            RecordType::SRV,
        );
        assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn missing_names_are_nxdomain_with_a_short_negative_ttl() {
        let response = ask("web-2.nginx.default.svc.cluster.local.", RecordType::A);
        assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
        let soa = &response.authorities[0];
        assert_eq!(soa.ttl, NEGATIVE_TTL);
        match &soa.data {
            RData::SOA(soa) => assert_eq!(soa.minimum, NEGATIVE_TTL),
            other => panic!("not a SOA: {other:?}"),
        }
        let response = ask("nosuch.default.svc.cluster.local.", RecordType::A);
        assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn names_outside_the_cluster_are_refused_never_forwarded() {
        let response = ask("example.com.", RecordType::A);
        assert_eq!(response.metadata.response_code, ResponseCode::Refused);
    }

    /// Three nodes, each with its /24 of the cluster CIDR 10.42.0.0/16 and one `web` pod.
    fn cluster_of_three_nodes() -> Objects {
        let mut objects = headless_nginx(json!([
            {"ip": "10.42.1.2", "hostname": "web-0", "nodeName": "node-1"},
            {"ip": "10.42.2.2", "hostname": "web-1", "nodeName": "node-2"},
            {"ip": "10.42.3.2", "hostname": "web-2", "nodeName": "node-3"},
        ]));
        for pod in ["10.42.1.2", "10.42.2.2", "10.42.3.2"] {
            objects.pods.insert(pod.into(), "default".into());
        }
        objects
    }

    #[test]
    fn pods_of_every_node_have_names_pointers_and_search_paths() {
        let zone = Zone::new("cluster.local");
        let objects = cluster_of_three_nodes();
        let ask = |name: &str, qtype: RecordType, client: &str| {
            let mut request = Message::query();
            request.add_query(Query::query(Name::from_str(name).expect("name"), qtype));
            addresses_in(&zone.answer(&objects, &request, client.parse().ok()))
        };
        // web-0 on node-1 asks its node's DNS for web-2 on node-3, by its short name.
        assert_eq!(
            ask("web-2.nginx.", RecordType::A, "10.42.1.2"),
            ["web-2.nginx.default.svc.cluster.local.", "10.42.3.2"]
        );
        assert_eq!(
            ask("2.2.42.10.in-addr.arpa.", RecordType::PTR, "10.42.1.2"),
            ["web-1.nginx.default.svc.cluster.local."]
        );
        assert_eq!(
            ask(
                "10-42-3-2.default.pod.cluster.local.",
                RecordType::A,
                "10.42.2.2"
            ),
            ["10.42.3.2"]
        );
        assert_eq!(
            ask(
                "nginx.default.svc.cluster.local.",
                RecordType::A,
                "10.42.3.2"
            ),
            ["10.42.1.2", "10.42.2.2", "10.42.3.2"]
        );
    }

    #[test]
    fn pod_ips_have_pointer_records_and_pod_names() {
        let response = ask("6.0.244.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(
            addresses_in(&response),
            ["web-1.nginx.default.svc.cluster.local."]
        );
        let response = ask("20.0.96.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(
            addresses_in(&response),
            ["public.default.svc.cluster.local."]
        );
        let response = ask("10-244-0-9.default.pod.cluster.local.", RecordType::A);
        assert_eq!(addresses_in(&response), ["10.244.0.9"]);
    }
}
