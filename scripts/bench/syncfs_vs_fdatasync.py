#!/usr/bin/env python3
"""One O_DIRECT 4 KiB write to each of N preallocated files, then make them durable three ways:
an fdatasync per file one after another, all fdatasyncs at once from 64 threads, and one
syncfs(2) of the file system. Prints the sync time per round and the process CPU per round
(the writes included). Why shardlog shares one syncfs among partitions syncing at the same
time (engine/src/shard_sync.rs; docs/benchmarks.md, "Many partitions").

Usage: python3 scripts/bench/syncfs_vs_fdatasync.py [N files] [rounds] [dir on the disk to test]
(default 200 files, 20 rounds, a temp dir under /tmp; not tmpfs: O_DIRECT needs a real one)."""
import ctypes
import mmap
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

libc = ctypes.CDLL("libc.so.6", use_errno=True)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
base = sys.argv[3] if len(sys.argv) > 3 else "/tmp"
d = tempfile.mkdtemp(prefix="syncfs-bench-", dir=base)
try:
    fds = []
    for i in range(n):
        fd = os.open(f"{d}/f{i}", os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o644)
        os.posix_fallocate(fd, 0, 64 << 20)
        fds.append(fd)
    buf = mmap.mmap(-1, 4096)  # page-aligned, as O_DIRECT needs
    buf.write(b"x" * 4096)
    pos = 0
    pool = ThreadPoolExecutor(64)

    def run(mode):
        global pos
        sync_s = 0.0
        cpu0 = os.times()
        for _ in range(rounds):
            for fd in fds:
                os.pwritev(fd, [buf], pos)
            pos += 4096
            t = time.perf_counter()
            if mode == "one by one":
                for fd in fds:
                    os.fdatasync(fd)
            elif mode == "at once":
                list(pool.map(os.fdatasync, fds))
            elif libc.syncfs(fds[0]) != 0:
                raise OSError(ctypes.get_errno(), "syncfs")
            sync_s += time.perf_counter() - t
        cpu1 = os.times()
        cpu = cpu1.user + cpu1.system - cpu0.user - cpu0.system
        print(f"{mode:10s} N={n}: sync {sync_s / rounds * 1e3:.2f} ms/round, process CPU {cpu / rounds * 1e3:.2f} ms/round")

    for mode in ["syncfs", "at once", "one by one", "syncfs", "at once"]:
        run(mode)
finally:
    shutil.rmtree(d)
