"""Decode attention variants side by side, each reading its KV cache from memory.

Builds ``kernels/decode_attention.py``'s kernel for one model's head shapes in two variants
(with and without prefetching the next page) and runs them in turn, round after round, over
``--caches`` separate KV caches of L keys each (by default as many as fill 256 MiB, 8x a 32 MiB
last-level cache: at 30 MiB, 1000-key SmolLM2 caches read at 29 GB/s from L3 where 256 MiB gave
20), so that a call finds its cache in memory rather than in a cache level, as a decode step
does after the other layers' weights went by. Prints microseconds per call (median of the
rounds), the KV cache's GB/s, each variant's ratio to the first, and whether both give the same
output.

    python benchmarks/decode_attention.py [--shape 3,9,64] [--lengths 200,1000] [--caches N]

Shapes are KV heads, query heads, head size: 3,9,64 SmolLM2-135M; 2,14,64 Qwen2-0.5B;
8,32,128 Llama-3-8B / Mistral-7B. The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

PAGE = 16
MEMORY_BYTES = 256 << 20  # KV bytes the caches called in turn add up to, by default


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", default="3,9,64", help="KV heads, query heads, head size")
    p.add_argument("--lengths", default="200,1000", help="keys in the cache, comma separated")
    p.add_argument(
        "--caches",
        type=int,
        default=0,
        help="KV caches called in turn (default: as many as fill 256 MiB at each L)",
    )
    p.add_argument("--rounds", type=int, default=15, help="rounds over every variant")
    args = p.parse_args(argv)
    args.shape = tuple(int(x) for x in args.shape.split(","))
    args.lengths = [int(x) for x in args.lengths.split(",")]
    return args


def variants(h_kv: int, h_qo: int, d: int) -> dict:
    """name -> built function: the kernel as built, and without its software prefetch."""
    import tvm

    from harness.engines.tvm.kernels import decode_attention as da
    from harness.engines.tvm.targets import resolve

    target = resolve("llvm")
    budget = da.decode_group_acc(target)  # as the engine builds it for this CPU
    built, saved = {}, da.PREFETCH
    try:
        for name, prefetch in (("as built", da.PREFETCH), ("no prefetch", 0)):
            da.PREFETCH = prefetch  # read when the kernel is built
            f = da.decode_paged(h_kv, h_qo, d, "float16", PAGE, budget=budget)
            f = f.with_attr("global_symbol", "main")
            built[name] = tvm.tirx.build(tvm.IRModule({"main": f}), target=target)["main"]
    finally:
        da.PREFETCH = saved
    return built


def measure(kernels: dict, shape, length: int, caches: int, rounds: int) -> dict:
    import tvm

    h_kv, h_qo, d = shape
    pages = -(-length // PAGE)
    rng = np.random.default_rng(0)
    t = lambda a: tvm.runtime.tensor(a, tvm.cpu())  # noqa: E731
    q = t(rng.standard_normal((1, h_qo, d)).astype(np.float16))
    pools = [
        t(rng.standard_normal((pages, 2, h_kv, PAGE, d)).astype(np.float16)) for _ in range(caches)
    ]
    tables = [t(rng.permutation(pages).astype(np.int32)) for _ in range(caches)]  # scattered
    fixed = [
        t(np.array([0, pages], np.int32)),
        t(np.array([length - (pages - 1) * PAGE], np.int32)),
        t(np.zeros(1, np.int32)),
        t(np.array([length - 1], np.int32)),
    ]
    outs = {
        n: (t(np.zeros((1, h_qo, d), np.float16)), t(np.zeros((1, h_qo), np.float32)))
        for n in kernels
    }
    times = {n: [] for n in kernels}
    for round_ in range(rounds + 1):  # the first round warms up and is not kept
        for name, f in kernels.items():
            out, lse = outs[name]
            t0 = time.perf_counter_ns()
            for pool, table in zip(pools, tables, strict=True):
                f(q, pool, fixed[0], table, *fixed[1:], out, lse, 0, 1.0, 10000.0, d**-0.5)
            if round_:
                times[name].append((time.perf_counter_ns() - t0) / caches / 1e3)
    first = next(iter(outs.values()))[0].numpy()
    same = all(np.array_equal(first, o[0].numpy()) for o in outs.values())
    return {n: statistics.median(v) for n, v in times.items()} | {"same_output": same}


def main(argv=None) -> None:
    args = parse_args(argv)
    h_kv, h_qo, d = args.shape
    kernels = variants(h_kv, h_qo, d)
    results = []
    threads = os.environ.get("TVM_NUM_THREADS", "default")
    print(f"shape {args.shape} (KV heads, query heads, head size), TVM threads {threads}")
    for length in args.lengths:
        kv_bytes = 2 * length * h_kv * d * 2
        caches = args.caches or max(2, MEMORY_BYTES // kv_bytes)
        row = measure(kernels, args.shape, length, caches, args.rounds)
        base = row[next(iter(kernels))]
        for name in kernels:
            us = row[name]
            print(
                f"L={length:5d}  {name:28s} {us:8.1f} us a call  {kv_bytes / us / 1e3:5.1f} GB/s"
                f" of KV  x{base / us:.2f} of the first"
            )
        print(f"L={length:5d}  same output from every variant: {row['same_output']}")
        results.append(
            {
                "L": length,
                "caches": caches,
                **{k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()},
            }
        )
    print(json.dumps({"shape": list(args.shape), "results": results}))


if __name__ == "__main__":
    main()
