#!/usr/bin/env bash
# Builds the capstan image locally (no registry, no pulls): release binary + its shared libraries.
# Usage: deploy/build-image.sh [TAG] [BINARY]
# The image carries a static busybox (Debian's busybox-static; BUSYBOX=PATH names another static
# one): the cells' process driver runs every instance and task run as `sh -c ...`, so an image
# without a shell could run nothing it is asked to. Without one, and where it cannot be installed
# (apt-get as root), the script stops with exit code 3 and builds nothing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tag="${1:-capstan:latest}"
bin="${2:-}"
busybox="${BUSYBOX:-/bin/busybox}"
static_busybox() { [ -x "$1" ] && ! ldd "$1" >/dev/null 2>&1; }
if ! static_busybox "$busybox" && [ -z "${BUSYBOX:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "no static busybox at $busybox: installing Debian's busybox-static" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null) || true
fi
if ! static_busybox "$busybox"; then
  echo "error: no static busybox at $busybox, and it could not be installed: the image would have no shell," >&2
  echo "so every instance and task run of its cells would crash ('sh' not found). Install Debian's" >&2
  echo "busybox-static (apt-get install busybox-static) or name a static busybox with BUSYBOX=PATH." >&2
  exit 3
fi
if [ -z "$bin" ]; then
  (cd "$here/.." && cargo build --release -p capstan --bin capstan)
  bin="$here/../target/release/capstan"
fi
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/var/lib/capstan" "$ctx/rootfs/tmp"
cp "$bin" "$ctx/rootfs/usr/local/bin/capstan"
# Every shared library the binary needs, at the path the loader expects.
ldd "$bin" | awk '/=>/ {print $3} /^\s*\/lib/ {print $1}' | while read -r lib; do
  [ -f "$lib" ] || continue
  mkdir -p "$ctx/rootfs$(dirname "$lib")"
  cp -L "$lib" "$ctx/rootfs$lib"
done
# The loader path the binary asks for, even where /lib64 is a link on the host.
interp="$(ldd "$bin" | awk '/ld-linux/ {print $1}')"
if [ -n "$interp" ] && [ ! -f "$ctx/rootfs$interp" ]; then
  mkdir -p "$ctx/rootfs$(dirname "$interp")"
  cp -L "$interp" "$ctx/rootfs$interp"
fi
# A shell and the usual tools for the cells' process driver (checked above).
mkdir -p "$ctx/rootfs/bin"
cp "$busybox" "$ctx/rootfs/bin/busybox"
for applet in $("$busybox" --list); do
  [ -e "$ctx/rootfs/bin/$applet" ] || ln -s busybox "$ctx/rootfs/bin/$applet"
done
mkdir -p "$ctx/rootfs/etc"
printf 'hosts: files dns\n' > "$ctx/rootfs/etc/nsswitch.conf"
cp "$here/Dockerfile" "$ctx/Dockerfile"
docker build -q -t "$tag" "$ctx"
echo "built $tag"
