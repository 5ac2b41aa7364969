"""Decode with the weights on huge pages (the engine's arena) against TVM's own allocations.

Two sessions of one bundle in this process: one loads its weights as the engine does
(``harness.engines.tvm.arena``: one mapping marked ``MADV_HUGEPAGE``), the other gets copies of
them allocated by TVM, 4 KiB pages where transparent huge pages are ``madvise``. Both prefill
the same random prompt and must agree on its greedy token; then each round runs STEPS decode
steps on each, the order alternating, and rolls the KV cache back. Prints ms a step and the
per-round ratio (TVM's allocations / the arena: above 1 means the arena is faster).

    python benchmarks/huge_pages.py [--model M] [--lengths 200,1000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

STEPS = 16


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="built-in or catalog model")
    p.add_argument("--lengths", default="200,1000", help="prompt lengths, comma separated")
    p.add_argument("--rounds", type=int, default=20, help="rounds of STEPS steps per session")
    args = p.parse_args(argv)
    args.lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
    if not args.lengths or min(args.lengths) < 1 or args.rounds < 4:
        p.error("need 1+ positive lengths and 4+ rounds")
    return args


def huge_kib() -> str:
    with open(f"/proc/{os.getpid()}/smaps_rollup") as rollup:
        return next((line.split()[1] for line in rollup if line.startswith("AnonHuge")), "?")


def main(argv=None) -> None:
    args = parse_args(argv)
    import numpy as np
    import tvm

    from harness.engines.tvm.compile import compile_model
    from harness.engines.tvm.runtime import TVMSession
    from harness.models.resolve import resolve_model
    from harness.quantization import get_preset

    quiet = lambda *_: None  # noqa: E731
    bundle = compile_model(resolve_model(args.model, quiet), get_preset("q4f16_1a8"), "llvm")
    rollback = tvm.get_global_func("vm.builtin.kv_state_popn")
    for L in args.lengths:
        arena = TVMSession(bundle, max_seq_len=L + STEPS + 8)
        copies = TVMSession(bundle, max_seq_len=L + STEPS + 8)
        copies.params = tvm.runtime.convert(
            [tvm.runtime.tensor(np.from_dlpack(t).copy()) for t in copies.params]
        )
        sessions = {"tvm": copies, "arena": arena}
        ids = np.random.default_rng(0).integers(20, 1000, size=L, dtype=np.int32)
        first = {name: s.greedy(s.prefill(ids)) for name, s in sessions.items()}
        if first["tvm"] != first["arena"]:
            raise SystemExit(f"L={L}: the two sessions' greedy tokens differ: {first}")
        times = {name: [] for name in sessions}
        for r in range(args.rounds):
            order = list(sessions.items())
            for name, s in order if r % 2 == 0 else order[::-1]:
                token, t0 = first[name], time.perf_counter()
                for _ in range(STEPS):
                    token = s.greedy(s.decode(token))
                times[name].append((time.perf_counter() - t0) / STEPS * 1e3)
                rollback(s.kv, 0, STEPS)
                s.length -= STEPS
        ratios = [a / b for a, b in zip(times["tvm"], times["arena"], strict=True)]
        low, _, high = statistics.quantiles(ratios, n=4)
        tvm_ms, arena_ms = statistics.median(times["tvm"]), statistics.median(times["arena"])
        print(
            f"{args.model} L={L}: ms a step, TVM's allocations {tvm_ms:.3f}, arena {arena_ms:.3f};"
            f" ratio median {statistics.median(ratios):.3f} (quartiles {low:.3f}-{high:.3f},"
            f" {args.rounds} rounds of {STEPS} steps); AnonHugePages {huge_kib()} kB"
        )


if __name__ == "__main__":
    main()
