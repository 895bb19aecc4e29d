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
mkdir -p "$ctx/rootfs/etc"
printf 'hosts: files dns\n' > "$ctx/rootfs/etc/nsswitch.conf"
cp "$here/Dockerfile" "$ctx/Dockerfile"
docker build -q -t "$tag" "$ctx"
echo "built $tag"
