#!/usr/bin/env bash
# Builds the tutorials' images offline, from Debian's busybox-static, as OCI image layouts, and
# imports them into the node-wide image store with `petset image import`:
#   busybox          sh, sleep, hostname, nslookup, wget, …
#   nginx-slim:0.8   a web server on port 80 serving /usr/share/nginx/html, with Debian's curl
#   nginx-slim:0.7   the same, with a visibly different default page
#   kubia-pet        the kubia tutorial's app on port 8080: GET answers with the hostname and
#                    /var/data/kubia.txt, POST stores the body there
#   etcd             Debian's etcd and etcdctl (etcd-server, etcd-client) on busybox, for
#                    examples/etcd.yaml (skipped, with a note, when either is not installed)
# Each is imported once, under every name the tutorials write for it (see `names` below).
# No registry and no Docker engine is involved.
#
# Usage: scripts/build-images.sh [--image-store DIR]   (PETSET=path/to/petset to choose the binary)
set -euo pipefail

cd "$(dirname "$0")/.."

# The names each stand-in is imported under: every spelling the tutorials use. The store
# normalizes names as containerd does, so `busybox` is `busybox:latest` is
# `docker.io/library/busybox:latest`, but `k8s.gcr.io/…` and `registry.k8s.io/…` differ.
declare -A names=(
  [busybox]="busybox:1.28 busybox:latest"
  [nginx-slim:0.8]="registry.k8s.io/nginx-slim:0.8 k8s.gcr.io/nginx-slim:0.8 gcr.io/google_containers/nginx-slim:0.8 r.deso.tech/library/nginx:latest"
  [nginx-slim:0.7]="registry.k8s.io/nginx-slim:0.7 k8s.gcr.io/nginx-slim:0.7 gcr.io/google_containers/nginx-slim:0.7"
  [kubia-pet]="luksa/kubia-pet:latest"
  [etcd]="petset/etcd:3.4"
)

store_args=("$@")
petset=${PETSET:-target/release/petset}
if [[ ! -x $petset ]]; then
  cargo build --release --locked -p petset
fi

# require_package PACKAGE WHY: installs a Debian package that is missing (as root), else stops.
require_package() {
  dpkg -s "$1" >/dev/null 2>&1 && return
  if [[ $(id -u) -eq 0 ]]; then
    apt-get install -y "$1" >/dev/null
  else
    echo "build-images: needs Debian's $1 for $2 (apt-get install $1)" >&2
    exit 1
  fi
}
# Debian's busybox-static: one binary with no shared libraries, so it runs in any root.
require_package busybox-static "every image"
# The nginx stand-ins carry curl, as the tutorials run `kubectl exec … -- curl localhost`.
require_package curl "the nginx stand-ins"
busybox=/bin/busybox

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A root filesystem with busybox and a link for every applet the images promise.
base_rootfs() {
  local root=$1
  mkdir -p "$root"/{bin,etc,tmp,root,var/log,proc,sys,dev}
  chmod 1777 "$root/tmp"
  cp "$busybox" "$root/bin/busybox"
  for applet in $("$busybox" --list); do
    [[ $applet == busybox ]] || ln -sf busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
}

# with_libraries ROOT PROGRAM: copies PROGRAM and the shared libraries it loads (as ldd lists
# them) into ROOT at the same paths.
with_libraries() {
  local root=$1 program=$2 library
  mkdir -p "$root$(dirname "$program")"
  cp "$program" "$root$program"
  for library in $(ldd "$program" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$library")"
    cp -L "$library" "$root$library"
  done
}

# blob FILE: stores FILE under blobs/sha256 of the layout in $layout, prints "sha256:HEX SIZE".
blob() {
  local hex size
  hex=$(sha256sum "$1" | cut -d' ' -f1)
  size=$(stat -c %s "$1")
  mkdir -p "$layout/blobs/sha256"
  cp "$1" "$layout/blobs/sha256/$hex"
  echo "sha256:$hex $size"
}

# layout STAND_IN ROOTFS CONFIG_JSON: an OCI image layout of one layer, imported once under
# every name of the stand-in.
layout() {
  local stand_in=$1 root=$2 config_body=$3 other
  local -a image_names name_args=()
  read -ra image_names <<< "${names[$stand_in]}"
  local name=${image_names[0]}
  for other in "${image_names[@]}"; do
    name_args+=(--name "$other")
  done
  layout="$work/layout-${stand_in//[\/:]/_}"
  mkdir -p "$layout"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$work/layer.tar" .
  local diff_id
  diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  gzip -n -f "$work/layer.tar"
  read -r layer_digest layer_size < <(blob "$work/layer.tar.gz")
  cat > "$work/config.json" <<EOF
{"architecture":"amd64","os":"linux","config":$config_body,"rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]}}
EOF
  read -r config_digest config_size < <(blob "$work/config.json")
  cat > "$work/manifest.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$config_digest","size":$config_size},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"$layer_digest","size":$layer_size}]}
EOF
  read -r manifest_digest manifest_size < <(blob "$work/manifest.json")
  cat > "$layout/index.json" <<EOF
{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$manifest_digest","size":$manifest_size,"annotations":{"io.containerd.image.name":"$name","org.opencontainers.image.ref.name":"${name##*:}"}}]}
EOF
  echo '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
  "$petset" image "${store_args[@]}" import "$layout" "${name_args[@]}"
}

path_env='"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]'

tools="$work/tools"
base_rootfs "$tools"
layout busybox "$tools" "{$path_env,\"Cmd\":[\"sh\"]}"

for version in 0.8 0.7; do
  web="$work/web-$version"
  base_rootfs "$web"
  mkdir -p "$web/usr/share/nginx/html"
  cat > "$web/usr/share/nginx/html/index.html" <<EOF
<!DOCTYPE html>
<html><head><title>Welcome to nginx-slim $version</title></head>
<body><h1>Welcome to nginx-slim $version</h1><p>petset's offline stand-in (busybox httpd).</p></body></html>
EOF
  # As PID 1, httpd would ignore SIGTERM; nginx stops on it, so the stand-in does too.
  printf '%s\n' '#!/bin/sh' \
    '/bin/httpd -f -v -p 80 -h /usr/share/nginx/html &' \
    'server=$!' \
    "trap 'kill \$server; exit 0' TERM INT" \
    'wait $server' > "$web/docker-entrypoint.sh"
  chmod 755 "$web/docker-entrypoint.sh"
  with_libraries "$web" /usr/bin/curl
  # glibc without nsswitch.conf asks DNS before /etc/hosts and stops at its NXDOMAIN.
  echo 'hosts: files dns' > "$web/etc/nsswitch.conf"
  layout "nginx-slim:$version" "$web" \
    "{$path_env,\"ExposedPorts\":{\"80/tcp\":{}},\"Entrypoint\":[\"/docker-entrypoint.sh\"]}"
done

# The kubia tutorial's pet app: busybox httpd runs cgi-bin/index.cgi for "/" (there is no
# index.html), which answers as the book's Node.js app does.
kubia="$work/kubia"
base_rootfs "$kubia"
mkdir -p "$kubia/srv/kubia/cgi-bin" "$kubia/var/data"
cat > "$kubia/srv/kubia/cgi-bin/index.cgi" <<'EOF'
#!/bin/sh
data=/var/data/kubia.txt
printf 'Content-Type: text/plain\r\n\r\n'
if [ "$REQUEST_METHOD" = POST ]; then
  head -c "${CONTENT_LENGTH:-0}" > "$data"
  echo "New data has been received and stored." >&2
  echo "Data stored on pod $(hostname)"
else
  echo "Received request from $REMOTE_ADDR" >&2
  echo "You've hit $(hostname)"
  if [ -f "$data" ]; then
    echo "Data stored on this pod: $(cat "$data")"
  else
    echo "Data stored on this pod: No data posted yet"
  fi
fi
EOF
chmod 755 "$kubia/srv/kubia/cgi-bin/index.cgi"
printf '%s\n' '#!/bin/sh' \
  'echo "Kubia server starting..."' \
  '/bin/httpd -f -p 8080 -h /srv/kubia &' \
  'server=$!' \
  "trap 'kill \$server; exit 0' TERM INT" \
  'wait $server' > "$kubia/start.sh"
chmod 755 "$kubia/start.sh"
layout kubia-pet "$kubia" \
  "{$path_env,\"ExposedPorts\":{\"8080/tcp\":{}},\"Entrypoint\":[\"/start.sh\"]}"

# etcd from Debian's etcd-server and etcdctl from etcd-client (examples/etcd.yaml's members
# use it to rejoin), with the shared libraries they load.
if [[ -x /usr/bin/etcd && -x /usr/bin/etcdctl ]]; then
  etcd_root="$work/etcd"
  base_rootfs "$etcd_root"
  mkdir -p "$etcd_root/var/lib/etcd"
  with_libraries "$etcd_root" /usr/bin/etcd
  with_libraries "$etcd_root" /usr/bin/etcdctl
  layout etcd "$etcd_root" \
    "{$path_env,\"ExposedPorts\":{\"2379/tcp\":{},\"2380/tcp\":{}},\"Entrypoint\":[\"/usr/bin/etcd\"]}"
else
  echo "build-images: /usr/bin/etcd or /usr/bin/etcdctl not found, petset/etcd:3.4 skipped (apt-get install etcd-server etcd-client)" >&2
fi
