"""What a decode step's kernels can do on their own: each with its data in cache and from memory.

For one model's shapes, builds the decode kernels our engine compiles (the int8-activation GEMV of
every linear layer and the LM head, and decode attention at each L) and times each one twice:

- **hot**: the same weights (or KV cache) every call, so they stay in the core's caches: how fast
  the kernel's instructions go when memory is no limit, its compute roof, shown as the GB/s of
  its bytes that speed amounts to;
- **from memory**: copies of the weights (or caches) called in turn, far more bytes than the last
  level cache holds, as in a decode step, where the other layers' weights pushed them out.

Between the memory rounds the script reads the memory bandwidth (``harness/profiling/peaks.py``'s
read probe, on the same threads), so each kernel's GB/s from memory stands next to what the
machine could read at that moment. Every kernel runs as in a model library, its parallel loop on
the engine's launcher (``harness/engines/tvm/fork_join.cc``). The script also times a parallel
loop that does nothing against a serial one: what waking and joining the threads costs each
parallel kernel, there and on TVM's own pool. The last lines sum one decode
step as its kernels alone would take it, against the bandwidth ceiling.

    python benchmarks/decode_roofs.py [--model M] [--lengths 200,1000] [--threads N]

The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

MEMORY_BYTES = 256 << 20  # bytes of copies a from-memory round walks: 8x a 32 MiB L3
ROUNDS = 9
PAGE = 16


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="built-in or catalog model")
    p.add_argument("--lengths", default="200,1000", help="context lengths for decode attention")
    p.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="TVM threads (default: cores in this process's affinity)",
    )
    args = p.parse_args(argv)
    args.lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
    return args


def build(func, target, threads: int):
    """The kernel, run as in a model library: on the engine's launcher with ``threads`` threads
    (0: on TVM's pool)."""
    from harness.engines.tvm.fork_join import build_with_launcher

    func = func.with_attr("global_symbol", "main").with_attr("tirx.is_entry_func", True)
    return build_with_launcher(func, target, threads)["main"]


def gemv_case(n: int, k: int, isa: str, target, threads: int):
    """(function, argument lists, bytes a call reads) for a q4 x int8 GEMV of N x K."""
    import tvm

    from harness.engines.tvm.kernels import matmul_int8 as mi
    from harness.quantization import GROUP, LANES

    f = build(mi.q4_matmul_a8(n, k, "float16", "one", isa), target, threads)
    rng = np.random.default_rng(0)
    t = lambda a: tvm.runtime.tensor(a, tvm.cpu())  # noqa: E731
    tiles, groups = n // LANES, k // GROUP
    nbytes = tiles * groups * (mi.TILE_BYTES + LANES * 2)  # packed nibbles and fp16 scales
    copies = max(2, MEMORY_BYTES // nbytes)
    x, b, y = (
        t(rng.standard_normal((1, k)).astype(np.float32)),
        t(np.zeros(n, np.float32)),
        t(np.zeros((1, n), np.float32)),
    )
    args = [
        [
            x,
            t(rng.integers(0, 255, (tiles, groups, mi.TILE_BYTES), dtype=np.uint8)),
            t((rng.random((tiles, groups, LANES)) * 0.01).astype(np.float16)),
            b,
            y,
        ]
        for _ in range(copies)
    ]
    return f, args, nbytes


def attention_case(shape: tuple[int, int, int], length: int, target, threads: int):
    """(function, argument lists, bytes a call reads) for decode attention over ``length`` keys
    (pages in order, as a fresh sequence gets them)."""
    import tvm

    from harness.engines.tvm.kernels import decode_attention as da

    h_kv, h_qo, d = shape
    kernel = da.decode_paged(h_kv, h_qo, d, "float16", PAGE, budget=da.decode_group_acc(target))
    f = build(kernel, target, threads)
    pages = -(-length // PAGE)
    nbytes = 2 * length * h_kv * d * 2  # K and V in fp16
    copies = max(2, MEMORY_BYTES // nbytes)
    rng = np.random.default_rng(0)
    t = lambda a: tvm.runtime.tensor(a, tvm.cpu())  # noqa: E731
    q, out, lse = (
        t(rng.standard_normal((1, h_qo, d)).astype(np.float16)),
        t(np.zeros((1, h_qo, d), np.float16)),
        t(np.zeros((1, h_qo), np.float32)),
    )
    fixed = [
        t(np.array([0, pages], np.int32)),
        t(np.arange(pages, dtype=np.int32)),
        t(np.array([length - (pages - 1) * PAGE], np.int32)),
        t(np.zeros(1, np.int32)),
        t(np.array([length - 1], np.int32)),
    ]
    args = [
        [
            q,
            t(rng.standard_normal((pages, 2, h_kv, PAGE, d)).astype(np.float16)),
            *fixed,
            out,
            lse,
            0,
            1.0,
            10000.0,
            d**-0.5,
        ]
        for _ in range(copies)
    ]
    return f, args, nbytes


def time_calls(f, args: list, repeat: int) -> float:
    """Microseconds a call, calling ``f`` on each argument list in turn ``repeat`` times."""
    t0 = time.perf_counter_ns()
    for _ in range(repeat):
        for a in args:
            f(*a)
    return (time.perf_counter_ns() - t0) / (repeat * len(args)) / 1e3


def measure(f, args: list, nbytes: int, probe) -> dict:
    """Hot (the first copy, again and again) and from memory (all copies in turn), medians of
    ROUNDS; the bandwidth read before and after every memory round, the better reading kept."""
    hot, cold, reads = [], [], []
    time_calls(f, args, 1)
    for _ in range(ROUNDS):
        hot.append(time_calls(f, args[:1], 50))
        before = probe()
        cold.append(time_calls(f, args, 1))
        reads.append(max(before, probe()))
    hot_us, memory_us, read_gbps = (statistics.median(v) for v in (hot, cold, reads))
    return {
        "bytes": nbytes,
        "hot_us": round(hot_us, 2),
        "memory_us": round(memory_us, 2),
        "read_gbps": round(read_gbps, 1),
        "hot_gbps": round(nbytes / hot_us / 1e3, 1),
        "memory_gbps": round(nbytes / memory_us / 1e3, 1),
        "read_pct": round(100 * nbytes / memory_us / 1e3 / read_gbps, 1),
    }


def launch_cost_us(threads: int, target) -> dict:
    """A parallel loop with nothing to do against a serial one: the wake-up and join of the
    threads, which every parallel kernel pays once, on the engine's launcher and on TVM's
    pool."""
    import tvm
    from tvm.script import tirx as T

    def loop(parallel: bool, launcher_threads: int):
        @T.prim_func(private=True, s_tir=True)
        def touch(a: T.Buffer((64,), "float32")):
            for i in T.parallel(threads) if parallel else T.serial(threads):
                a[i] = a[i] + T.float32(1)

        return build(touch, target, launcher_threads)

    a = tvm.runtime.tensor(np.zeros(64, np.float32), tvm.cpu())
    out = {}
    cases = (("serial", False, 0), ("parallel", True, threads), ("tvm_pool", True, 0))
    for name, parallel, launcher_threads in cases:
        f = loop(parallel, launcher_threads)
        time_calls(f, [[a]], 1000)
        out[name] = round(statistics.median(time_calls(f, [[a]], 2000) for _ in range(ROUNDS)), 3)
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # read when TVM's pool starts
    from harness.engines.tvm.kernels.matmul_int8 import isa_for
    from harness.engines.tvm.targets import resolve
    from harness.models.resolve import resolve_model
    from harness.profiling.peaks import read_probe

    cfg = resolve_model(args.model, lambda *_: None).config
    target = resolve("llvm")
    isa = isa_for(target)
    if isa is None:
        sys.exit("this CPU has no integer dot-product kernels of ours; nothing to measure")
    probe = read_probe(target, args.threads)
    rows = []
    shapes = dict(cfg.linear_shapes()) | {"lm_head": (cfg.vocab_size, cfg.hidden_size)}
    for name, (n, k) in shapes.items():
        f, calls, nbytes = gemv_case(n, k, isa, target, args.threads)
        per_step = 1 if name == "lm_head" else cfg.num_layers
        rows.append(
            {"kernel": f"{name} {n}x{k}", "per_step": per_step, **measure(f, calls, nbytes, probe)}
        )
        print(f"measured {rows[-1]['kernel']}", file=sys.stderr)
    shape = (cfg.num_kv_heads, cfg.num_heads, cfg.head_dim)
    for length in args.lengths:
        f, calls, nbytes = attention_case(shape, length, target, args.threads)
        rows.append(
            {
                "kernel": f"attention L={length}",
                "per_step": cfg.num_layers,
                "L": length,
                **measure(f, calls, nbytes, probe),
            }
        )
        print(f"measured {rows[-1]['kernel']}", file=sys.stderr)
    launch = launch_cost_us(args.threads, target)
    report(args, cfg, isa, rows, launch)


def report(args, cfg, isa: str, rows: list[dict], launch: dict) -> None:
    print(
        f"{args.model}: decode kernels ({isa}), {args.threads} threads; GB/s = the kernel's"
        " bytes over its time; hot = the same data every call, memory = copies in turn over"
        f" {MEMORY_BYTES >> 20} MiB, read = the bandwidth read around those calls"
    )
    head = (
        f"{'kernel':<26} {'bytes':>9} {'hot us':>8} {'hot GB/s':>9} {'memory us':>10}"
        f" {'GB/s':>6} {'read GB/s':>10} {'% of read':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['kernel']:<26} {r['bytes']:>9} {r['hot_us']:>8.2f} {r['hot_gbps']:>9.1f}"
            f" {r['memory_us']:>10.2f} {r['memory_gbps']:>6.1f} {r['read_gbps']:>10.1f}"
            f" {r['read_pct']:>8.0f}%"
        )
    extra = launch["parallel"] - launch["serial"]
    print(
        f"an empty parallel loop: {launch['parallel']:.2f} us a call, serial {launch['serial']:.2f}"
        f" us: {extra:.2f} us to wake and join the threads, once per parallel kernel (on TVM's"
        f" pool: {launch['tvm_pool']:.2f} us a call)"
    )
    steps = []
    for length in args.lengths:
        # every GEMV, and attention at this L only
        chosen = [r for r in rows if "L" not in r or r["L"] == length]
        kernels_us = sum(r["memory_us"] * r["per_step"] for r in chosen)
        nbytes = sum(r["bytes"] * r["per_step"] for r in chosen)
        read = statistics.median(r["read_gbps"] for r in chosen)
        share = 100 * nbytes / read / 1e3 / kernels_us
        steps.append(
            {
                "L": length,
                "kernels_us": round(kernels_us, 1),
                "bytes": nbytes,
                "ceiling_pct": round(share, 1),
            }
        )
        print(
            f"L={length}: a step's kernels from memory back to back {kernels_us:.0f} us for"
            f" {nbytes / 1e6:.1f} MB: {share:.0f}% of the ceiling at {read:.1f} GB/s (norms,"
            " adds, RoPE, the VM and the host loop come on top)"
        )
    print(
        json.dumps(
            {
                "model": args.model,
                "isa": isa,
                "threads": args.threads,
                "kernels": rows,
                "launch_us": launch,
                "steps": steps,
            }
        )
    )


if __name__ == "__main__":
    main()
