#!/usr/bin/env bash
# Capstan's replicated writes against etcd's on this box, side by side in one run (issue 13's
# yardstick): installs Debian's etcd-server when it is missing (as root), builds the release
# binaries, then runs bench-vs-etcd (a 3-member etcd and a 3-node Capstan on loopback, the same
# load generator and ~1 KiB bodies for both, etcd then Capstan at each connection level).
# Usage: tests/bench/vs-etcd.sh [SECONDS_PER_RUN] [LEVELS]   e.g. tests/bench/vs-etcd.sh 10 1,16,64,256
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
if ! command -v etcd >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq etcd-server >/dev/null
  else
    echo "etcd is not installed: apt-get install etcd-server (as root), or set ETCD_BIN" >&2
    exit 1
  fi
fi
cd "$root"
cargo build --release -q -p capstan --bin capstan -p capstan-tests --bin bench-vs-etcd
exec ./target/release/bench-vs-etcd "${1:-10}" "${2:-1,16,64,256}"
