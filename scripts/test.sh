#!/usr/bin/env bash
# Runs every test of the workspace, after installing (as root) what the tests need.
# Tests that need etcd or root skip with a reason on a developer's machine and fail under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --locked --no-fail-fast "$@"
fi
exec cargo test --workspace --locked --no-fail-fast "$@"
