#!/usr/bin/env bash
# Builds the capstan image locally (no registry, no pulls): release binary + its shared libraries.
# Usage: deploy/build-image.sh [TAG] [BINARY]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tag="${1:-capstan:latest}"
bin="${2:-}"
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
# A shell and the usual tools for the cells' process driver (instances and task runs are commands
# like `sh -c ...`): Debian's busybox-static when the host has it (apt-get install busybox-static).
if [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; then
  mkdir -p "$ctx/rootfs/bin"
  cp /bin/busybox "$ctx/rootfs/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ -e "$ctx/rootfs/bin/$applet" ] || ln -s busybox "$ctx/rootfs/bin/$applet"
  done
else
  echo "note: no static /bin/busybox on this host: the image has no shell, so its cells can run only what is in it" >&2
fi
mkdir -p "$ctx/rootfs/etc"
printf 'hosts: files dns\n' > "$ctx/rootfs/etc/nsswitch.conf"
cp "$here/Dockerfile" "$ctx/Dockerfile"
docker build -q -t "$tag" "$ctx"
echo "built $tag"
