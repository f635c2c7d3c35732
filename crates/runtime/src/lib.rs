//! What a node needs to run containers: the node-wide image store and pods as OCI containers
//! run by runc.

pub mod images;
pub mod pods;
