#!/usr/bin/env bash
# Measures the store backends side by side for BENCHMARKS.md: the embedded store, then a
# throwaway single-member etcd on loopback (its data on the same disk, in a temp dir).
#   scripts/bench-store.sh [extra petset bench store flags, e.g. --seconds 10]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/install-deps.sh" test
cargo build --release --locked --manifest-path "$root/Cargo.toml" -p petset
petset="$root/target/release/petset"

work=$(mktemp -d)
etcd_pid=
cleanup() {
  [ -n "$etcd_pid" ] && kill "$etcd_pid" 2>/dev/null && wait "$etcd_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
client=$(free_port); peer=$(free_port)
etcd --name bench --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
  --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
  --initial-cluster "bench=http://127.0.0.1:$peer" --logger zap --log-level warn \
  >"$work/etcd.log" 2>&1 &
etcd_pid=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$client/health" >/dev/null 2>&1 && break
  sleep 0.1
done

echo "## embedded"
"$petset" bench store --store embedded --data-dir "$work/embedded" "$@"
echo
echo "## etcd $(etcd --version | head -1)"
"$petset" bench store --store "etcd://127.0.0.1:$client" "$@"
