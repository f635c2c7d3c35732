//! What a node needs to run containers: the node-wide image store and pods as OCI containers
//! run by runc, on a bridge of their own.

pub mod detach;
pub mod images;
pub mod logs;
pub mod network;
pub mod pods;
pub mod shim;
