//! Protobuf round trips of apps/v1 workloads and the core/v1 ReplicationController: built in `k8s-pb`'s structs, encoded by prost, decoded by
//! petset, compared with the JSON form (see `round_trip_tests`).
