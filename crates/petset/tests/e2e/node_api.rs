//! The node API: the only way the API server reaches a node, and only with its certificate.
