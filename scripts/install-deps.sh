#!/usr/bin/env bash
# Installs the Debian packages petset needs when they are missing.
#   scripts/install-deps.sh build   protoc, for building the etcd client
#   scripts/install-deps.sh test    also etcd and etcdctl, runc, dig, ip and a static busybox (test images),
#                                   which the tests drive for real
# As root it runs apt-get; otherwise it names what to install and fails.
set -euo pipefail

# protoc needs the well-known types, which Debian ships apart from the compiler.
want=(protoc:protobuf-compiler /usr/include/google/protobuf/descriptor.proto:libprotobuf-dev)
if [ "${1:-build}" = test ]; then
  want+=(etcd:etcd-server etcdctl:etcd-client runc:runc dig:dnsutils ip:iproute2 curl:curl script:bsdutils
    /var/lib/dpkg/info/busybox-static.list:busybox-static)
fi

missing=()
for pair in "${want[@]}"; do
  need="${pair%%:*}"
  if [[ "$need" == /* ]]; then
    [ -e "$need" ] || missing+=("${pair#*:}")
  else
    command -v "$need" >/dev/null 2>&1 || missing+=("${pair#*:}")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "petset needs these Debian packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
