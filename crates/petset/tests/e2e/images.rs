//! Image names as the tutorials write them, and the stand-ins' tools (`curl localhost`).
