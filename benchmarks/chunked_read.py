"""Read bandwidth in kernel-sized pieces against one long read: the ceiling a decode step's
kernels can see.

A decode step reads its weights matrix by matrix, one kernel call each: SmolLM2-135M's largest
GEMV reads 1 MB, its smallest 0.2 MB. ``harness.profiling.peaks`` measures the read bandwidth
over 256 MiB in one call, the ceiling the profile and ``engine_vs_llamacpp.py`` compare decode
with. This script runs the same read loop (2 threads summing into vector accumulators) over
distinct buffers of SIZE MiB called in turn, so each call starts cold in DRAM as a GEMV does,
interleaved with the long read, and prints the ratio of the two per size: what is left to a
kernel-per-matrix engine before any arithmetic.

    python benchmarks/chunked_read.py [--sizes 0.25,1,4] [--threads N] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

TOTAL_MIB = 128  # bytes of distinct buffers per size: beyond the last-level cache


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="0.25,1,4", help="MiB per call, comma separated")
    p.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="threads of the read loop (default: cores in this process's affinity)",
    )
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median taken)")
    args = p.parse_args(argv)
    args.sizes = [float(x) for x in args.sizes.split(",") if x.strip()]
    if not args.sizes or min(args.sizes) <= 0 or args.threads < 1 or args.rounds < 1:
        p.error("need 1+ positive sizes, threads and rounds")
    return args


def read_function(nbytes: int, threads: int, target):
    """The peaks module's read loop over ``nbytes``; returns (function, bytes it reads)."""
    import tvm

    from harness.engines.tvm.kernels import vector_lanes
    from harness.profiling import peaks

    func, read = peaks.read_loop(threads, vector_lanes(target), nbytes)
    return tvm.tirx.build(tvm.IRModule({"main": func}), target=target)["main"], read


def gbps_of(fn, out, buffers, nbytes: int) -> float:
    t0 = time.perf_counter()
    for buffer in buffers:
        fn(out, buffer)
    return nbytes * len(buffers) / (time.perf_counter() - t0) / 1e9


def main(argv=None) -> None:
    args = parse_args(argv)
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    import numpy as np
    import tvm

    from harness.engines.tvm.kernels import vector_lanes
    from harness.engines.tvm.targets import resolve
    from harness.profiling import peaks

    target = resolve("llvm")
    lanes = vector_lanes(target)
    out = tvm.runtime.tensor(np.zeros((args.threads, lanes), np.float32))
    long_fn, long_bytes = read_function(peaks.READ_BYTES, args.threads, target)
    long_buffer = [tvm.runtime.tensor(np.ones(peaks.READ_BYTES // 4, np.float32))]
    print(
        f"{args.threads} threads, {TOTAL_MIB} MiB of distinct buffers per size, median of"
        f" {args.rounds} rounds, each size interleaved with a {peaks.READ_BYTES >> 20} MiB read"
    )
    print(
        f"{'MiB a call':>10} {'calls':>6} {'us a call':>10} {'GB/s':>7} {'long GB/s':>10}"
        f" {'ratio':>6}"
    )
    for size in args.sizes:
        nbytes = int(size * 2**20) // 4096 * 4096
        fn, read = read_function(nbytes, args.threads, target)
        calls = max(1, TOTAL_MIB * 2**20 // nbytes)
        buffers = [tvm.runtime.tensor(np.ones(nbytes // 4, np.float32)) for _ in range(calls)]
        gbps_of(fn, out, buffers, read)  # first touch
        pieces, longs = [], []
        for _ in range(args.rounds):
            longs.append(gbps_of(long_fn, out, long_buffer, long_bytes))
            pieces.append(gbps_of(fn, out, buffers, read))
        piece, long = statistics.median(pieces), statistics.median(longs)
        print(
            f"{size:>10g} {calls:>6} {read / piece / 1e3:>10.1f} {piece:>7.1f} {long:>10.1f}"
            f" {piece / long:>6.2f}"
        )
        del buffers


if __name__ == "__main__":
    main()
