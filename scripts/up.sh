#!/usr/bin/env bash
# Builds petset (installing protoc first if needed) and starts it in the foreground:
#   scripts/up.sh                       embedded store in ./petset-data, API on 127.0.0.1:6443
#   scripts/up.sh --store etcd://127.0.0.1:2379 --data-dir /var/lib/petset
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/install-deps.sh" build
cargo build --release --locked --manifest-path "$root/Cargo.toml" -p petset
exec "$root/target/release/petset" up "$@"
