//! The controllers against an in-process API server (`TestCluster`: the whole router over a
//! memory store, no sockets), each test running only the controllers it is about.

mod clusterroleaggregation;
mod deployment;
mod endpoints;
mod leader;
mod many_nodes;
mod node_lifecycle;
mod node_loss;
mod nodeipam;
mod rootcacertpublisher;
mod scheduler;
mod serviceaccounts;
mod statefulset;
mod support;
mod volumes;
