//! Protobuf round trips of core/v1 storage, nodes, endpoints and events; events.k8s.io, coordination.k8s.io; batch statuses: built in `k8s-pb`'s structs, encoded by prost, decoded by
//! petset, compared with the JSON form (see `round_trip_tests`).
