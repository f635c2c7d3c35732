//! The kubelet as users see it on the runc node: events, `$(VAR)` expansion, resource env vars, statuses.
