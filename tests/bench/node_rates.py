#!/usr/bin/env python3
"""What each running Capstan node does per second: reads every node's `/metrics` and the
kernel's counters for its process (`/proc/<pid>/io`, each thread's context switches) twice, some
seconds apart, during a load, and prints the differences as rates — counters, histogram counts
and sums (a sum's rate over its count's rate is the mean), bytes written, context switches by
thread kind (tokio workers, sled's I/O threads, ...). Per node, since a leader and its followers
do different work. Stdlib only; run it beside a benchmark, e.g.:
    target/release/bench-vs-etcd 40 64 &   # then, once Capstan's run has started:
    tests/bench/node_rates.py --comm capstan --seconds 8
The nodes are found by process name (`--comm`, as `ps -o comm` shows it: 15 characters at most)
and their REST address read from their `--http` argument (with port 0: found among the ports the
process listens on).
"""
import argparse
import os
import re
import time
import urllib.request


def node_pids(comm):
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() == comm[:15]:
                    pids.append(int(entry))
        except OSError:
            continue
    return sorted(pids)


def http_addr(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        args = f.read().decode(errors="replace").split("\0")
    for i, a in enumerate(args):
        if a == "--http" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--http="):
            return a.split("=", 1)[1]
    return None


def listening_ports(pid):
    """The TCP ports process `pid` listens on (from its socket inodes and /proc/net/tcp*)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] == "0A" and cols[9] in inodes:  # state LISTEN
                ports.append(int(cols[1].rsplit(":", 1)[1], 16))
    return sorted(set(ports))


def rest_addr(pid):
    """The node's REST address: its `--http` argument, or — when that asked for port 0 — the
    one of its listening ports that serves `/metrics`."""
    addr = http_addr(pid)
    if addr is None or not addr.endswith(":0"):
        return addr
    host = addr.rsplit(":", 1)[0]
    for port in listening_ports(pid):
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=2) as r:
                if r.status == 200:
                    return f"{host}:{port}"
        except OSError:
            continue
    return None


def metrics(addr):
    """Counter, histogram `_sum`/`_count` and `_total` samples of a node's `/metrics`."""
    values = {}
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("#") or "_bucket{" in line:
                continue
            name, _, value = line.rpartition(" ")
            base = name.split("{", 1)[0]
            if base.endswith(("_sum", "_count", "_total")):
                try:
                    values[name] = float(value)
                except ValueError:
                    pass
    return values


def kernel(pid):
    """Bytes and write calls from `/proc/<pid>/io`, context switches per thread kind."""
    values = {}
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("wchar", "syscw", "write_bytes"):
                values[key] = float(value)
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                kind = re.sub(r"-?\d+$", "", f.read().strip()) or "?"
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        key = f"context switches ({kind})"
                        values[key] = values.get(key, 0.0) + float(line.split()[1])
        except OSError:
            continue  # a thread that ended between the listing and the read
    return values


def sample(nodes):
    return {pid: {**metrics(addr), **kernel(pid)} for pid, addr in nodes}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comm", default="capstan", help="the nodes' process name")
    parser.add_argument("--seconds", type=float, default=8.0, help="time between the two readings")
    args = parser.parse_args()
    nodes = [(pid, rest_addr(pid)) for pid in node_pids(args.comm)]
    nodes = [(pid, addr) for pid, addr in nodes if addr]
    if not nodes:
        raise SystemExit(f"no running process named {args.comm!r} with an --http address")
    before = sample(nodes)
    time.sleep(args.seconds)
    after = sample(nodes)
    for pid, addr in nodes:
        print(f"== node pid {pid}, http {addr}")
        for key in sorted(after[pid]):
            rate = (after[pid][key] - before[pid].get(key, 0.0)) / args.seconds
            if rate > 0:
                print(f"{rate:14.2f}/s  {key}")


if __name__ == "__main__":
    main()
