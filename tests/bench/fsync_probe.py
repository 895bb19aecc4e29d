#!/usr/bin/env python3
"""What one durable append costs on this filesystem: N writes of SIZE bytes, each followed by
`fdatasync`, into a file that (a) grows with every write, (b) was reserved with `fallocate`
keeping its size, (c) was reserved with `fallocate` at full size, (d) was written with zeros and
synced beforehand. Prints writes/s, p50 and p99 per case, twice over. sled writes its log at its
file's tip (case a); etcd's WAL preallocates (c). Stdlib only. Usage:
    tests/bench/fsync_probe.py [DIR] [N] [SIZE]      (defaults: the current directory, 1000, 11000)
"""
import ctypes
import ctypes.util
import os
import sys
import time

FALLOC_FL_KEEP_SIZE = 1


def fallocate(fd, mode, length):
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    if libc.fallocate(fd, mode, 0, length) != 0:
        raise OSError(ctypes.get_errno(), "fallocate")


def probe(path, case, n, size):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        room = n * size + 16384
        if case == "zeros written":
            os.pwrite(fd, b"\0" * room, 0)
        elif case == "fallocate, keep size":
            fallocate(fd, FALLOC_FL_KEEP_SIZE, room)
        elif case == "fallocate":
            fallocate(fd, 0, room)
        os.fsync(fd)
        data, latencies = b"x" * size, []
        started = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            os.pwrite(fd, data, i * size)
            os.fdatasync(fd)
            latencies.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - started
    finally:
        os.close(fd)
        os.unlink(path)
    latencies.sort()
    print(
        f"{case:22} {n / elapsed:8.0f} writes/s  p50 {latencies[n // 2] * 1e3:.3f} ms"
        f"  p99 {latencies[int(n * 0.99)] * 1e3:.3f} ms"
    )


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else "."
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 11000
    print(f"# {n} writes of {size} bytes, each followed by fdatasync, in {os.path.abspath(directory)}")
    for _ in range(2):
        for case in ("growing", "fallocate, keep size", "fallocate", "zeros written"):
            probe(os.path.join(directory, ".fsync-probe"), case, n, size)


if __name__ == "__main__":
    main()
