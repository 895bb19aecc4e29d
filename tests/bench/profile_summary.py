#!/usr/bin/env python3
"""Where the CPU goes: reads `perf script` output (call graphs recorded with
`perf record --call-graph dwarf -p <capstan pids>`) on stdin and prints the share of samples
spent in each part of Capstan: a sample belongs to the part of the innermost frame of its stack
that some rule names (so the shares add up to 100%; time in libc or the kernel counts for the
code that called it); then the samples spent in sled, by the Capstan code that called into it
(apply's transaction, the raft log, durability passes, reads) or sled's own threads; then the
samples by thread kind, with the part spent switching that thread in. Usage:
    perf script -i perf.data | tests/bench/profile_summary.py
"""
import re
import sys

# (part, pattern over one frame's function); among rules matching the same frame, the first wins.
PARTS = [
    ("sled blob files (values over ~128 KiB)", r"sled::pagecache::blob_io|sync_new_blobs"),
    ("durability (sled flush, fdatasync)", r"capstan_storage::disk|fdatasync|sync_file_range|sled::Db::flush|sled::tree::Tree::flush"),
    ("apply: decide + fold + staging", r"stage_entry|capstan_storage::rules|state_machine::fold|staged::|view_read"),
    ("apply: sled transaction commit", r"StateMachine::commit|sled::transaction"),
    ("raft log: append, read, encode", r"capstan_storage::log_store|capstan_storage::codec"),
    ("scheduler + hub", r"leader::scheduler|leader::hub|leader::converger"),
    ("openraft core + replication", r"^openraft::|capstan_raft::"),
    # hyper's HTTP/1.1 is the REST side only (gRPC is HTTP/2): serving a REST request's bytes.
    ("REST gateway (axum, JSON, HTTP/1.1)", r"^capstan_gateway|^axum::|^serde_json|^hyper::proto::h1"),
    ("gRPC services (capstan::api)", r"^capstan::api|^capstan::auth"),
    ("gRPC + HTTP/2 transport (tonic, hyper, h2)", r"^tonic|^h2::|^hyper|^tower"),
    ("sled (reads, background writer)", r"^sled::"),
    ("metrics + tracing", r"^metrics|^tracing"),
]
COMPILED = [(name, re.compile(p)) for name, p in PARTS]

# Who made sled work: a sample with a sled frame belongs to the first of these matching a frame
# outside sled's (its caller, looked for from the innermost frame outwards); sled's own threads
# (its I/O buffers, flusher) have no Capstan caller.
SLED_CALLERS = [
    ("apply's transaction", r"StateMachine::commit|state_machine::"),
    ("raft log (append, purge, read)", r"capstan_storage::log_store"),
    ("durability passes", r"capstan_storage::disk"),
    ("views read by the services", r"capstan_storage::views|capstan_storage::view_read|capstan::"),
    ("sled's own threads (I/O buffers, flusher, epoch GC)", r"sled::threadpool|sled::flusher"),
]
SLED_COMPILED = [(name, re.compile(p)) for name, p in SLED_CALLERS]


def frame(line):
    """The function of one `perf script` stack line, its generic parameters left out (a frame
    like `poll<tonic::..::ServerIo<capstan_gateway::..>>` is tonic's, not the gateway's)."""
    name = re.sub(r"^\s*[0-9a-f]+\s+", "", line).rsplit(" (", 1)[0]
    name = re.sub(r"^<([^ <>]+) as [^>]*>", r"\1", name)  # <T as Trait>::f -> T::f
    out, depth = [], 0
    for ch in name:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def stacks(lines):
    cur = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if cur:
                yield cur
            cur = []
            continue
        cur.append(line)
    if cur:
        yield cur


def thread_kind(header):
    """The thread of a sample from its header line (`comm [pid/]tid time: ...`), its number left
    out (`sled-io-3` -> `sled-io`)."""
    m = re.match(r"^\s*(.+?)\s+(?:\d+/)?\d+\s+\d+\.\d+:", header)
    return re.sub(r"-?\d+$", "", m.group(1)) if m else "?"


def sled_caller(frames):
    """The Capstan caller of a sample spent in sled, or None if no sled frame is in it."""
    inner = [i for i, f in enumerate(frames) if f.startswith("sled::")]
    if not inner:
        return None
    for f in frames[inner[0]:]:
        if f.startswith("sled::threadpool") or not f.startswith("sled::"):
            hit = next((name for name, rx in SLED_COMPILED if rx.search(f)), None)
            if hit:
                return hit
    return "other callers"


def main():
    counts = {}
    sled = {}
    threads = {}
    total = 0
    for s in stacks(sys.stdin):
        kind = thread_kind(s[0])
        switching = any("finish_task_switch" in line for line in s[1:3])
        seen, switched = threads.get(kind, (0, 0))
        threads[kind] = (seen + 1, switched + int(switching))
        caller = sled_caller([frame(line) for line in s[1:]])
        if caller:
            sled[caller] = sled.get(caller, 0) + 1
        part = None
        for line in s[1:]:  # innermost frame first
            f = frame(line)
            part = next((name for name, rx in COMPILED if rx.search(f)), None)
            if part:
                break
        if part is None:
            text = "\n".join(s[1:])
            part = "kernel + runtime (network, scheduling, idle wake-ups)" if "[kernel" in text or "tokio::" in text else "other"
        counts[part] = counts.get(part, 0) + 1
        total += 1
    if total == 0:
        print("no samples")
        return
    for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"{100.0 * n / total:6.1f}%  {name}")
    print(f"({total} samples)")
    # The parts above give sled's frames to sled; here the samples with any sled frame, by who
    # called into it (a sample may count in another part above, e.g. durability).
    print(f"{100.0 * sum(sled.values()) / total:6.1f}%  with a sled frame, by caller:")
    for name, n in sorted(sled.items(), key=lambda kv: -kv[1]):
        print(f"{100.0 * n / total:10.1f}%  {name}")
    # By thread kind, and how much of it is the kernel switching that thread in (a pool whose
    # idle threads are all woken for each task shows up here).
    print("by thread (of it: switching in, finish_task_switch):")
    for kind, (n, switched) in sorted(threads.items(), key=lambda kv: -kv[1][0]):
        print(f"{100.0 * n / total:6.1f}%  {kind}  ({100.0 * switched / total:.1f}%)")


if __name__ == "__main__":
    main()
