//! Protobuf round trips of networking.k8s.io, discovery.k8s.io, policy; Service and Namespace statuses: built in `k8s-pb`'s structs, encoded by prost, decoded by
//! petset, compared with the JSON form (see `round_trip_tests`).
