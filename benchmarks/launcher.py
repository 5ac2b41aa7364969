"""The engine's fork-join launcher against TVM's thread pool, one model, one process.

Every parallel loop of a model library starts through one function pointer. The engine points it
at the library's own fork-join launcher (``harness/engines/tvm/fork_join.cc``, which says why);
``SLM_BENCH_LAUNCHER=tvm`` leaves it on TVM's pool. This script switches one loaded model between
the two, round after round (each round's order alternating, and a pause after each switch so
that the idle side's threads are asleep), and times a prefill of L random tokens and D greedy
decode steps each time. It prints tokens/s for each launcher (median of the rounds), their
ratio, and whether both gave the same tokens.

    python benchmarks/launcher.py [--model smollm2-135m-instruct] [--lengths 200,1000]
                                  [--rounds 8] [--decode-tokens 64]

The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

SEED = 0
SETTLE_S = 0.6  # after a switch: TVM's idle workers stop yielding, ours stop spinning


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="catalog name or path")
    p.add_argument("--quantization", default="q4f16_1a8", help="the bundle's preset")
    p.add_argument("--lengths", default="200,1000", help="prompt lengths, comma separated")
    p.add_argument("--rounds", type=int, default=8, help="rounds, each timing both launchers")
    p.add_argument("--decode-tokens", type=int, default=64, help="decode steps timed per round")
    args = p.parse_args(argv)
    args.lengths = [int(x) for x in args.lengths.split(",")]
    return args


def one_round(session, ids, steps: int) -> tuple[float, float, list[int]]:
    """Prefill tok/s, decode tok/s and the greedy tokens."""
    t0 = time.perf_counter()
    token = session.greedy(session.prefill(ids))
    t1 = time.perf_counter()
    tokens = [token]
    for _ in range(steps):
        tokens.append(session.greedy(session.decode(tokens[-1])))
    t2 = time.perf_counter()
    return len(ids) / (t1 - t0), steps / (t2 - t1), tokens


def main(argv=None) -> None:
    args = parse_args(argv)
    from harness.engines.tvm.compile import compile_model
    from harness.engines.tvm.fork_join import switch
    from harness.engines.tvm.runtime import TVMSession
    from harness.models.resolve import resolve_model
    from harness.quantization import get_preset

    quiet = lambda *_: None  # noqa: E731
    model = resolve_model(args.model, quiet)
    bundle = compile_model(model, get_preset(args.quantization), "llvm", log=quiet)
    session = TVMSession(bundle, max_seq_len=max(args.lengths) + args.decode_tokens + 16)
    library = bundle / session.manifest["library"]
    threads = session.num_threads()
    if session.launcher != "fork-join":
        raise SystemExit(f"{bundle.name} runs on TVM's pool only (SLM_BENCH_LAUNCHER=tvm set?)")
    print(f"{args.model} ({args.quantization}), {threads} threads, {args.rounds} rounds")
    rng = np.random.default_rng(SEED)
    results = []
    for length in args.lengths:
        ids = rng.integers(100, session.vocab_size, size=length, dtype=np.int32)
        runs = {"tvm": [], "fork-join": []}
        tokens = {}
        for r in range(args.rounds):
            for name in ("tvm", "fork-join")[:: 1 if r % 2 == 0 else -1]:
                switch(library, 0 if name == "tvm" else threads)
                time.sleep(SETTLE_S)
                prefill, decode, tokens[name] = one_round(session, ids, args.decode_tokens)
                runs[name].append((prefill, decode))
        row = {"L": length, "same_tokens": tokens["tvm"] == tokens["fork-join"]}
        for i, phase in enumerate(("prefill", "decode")):
            tvm_tps = statistics.median(run[i] for run in runs["tvm"])
            ours_tps = statistics.median(run[i] for run in runs["fork-join"])
            row |= {
                f"{phase}_tvm_tps": round(tvm_tps, 1),
                f"{phase}_fork_join_tps": round(ours_tps, 1),
                f"{phase}_ratio": round(ours_tps / tvm_tps, 3),
            }
            print(
                f"L={length:5d} {phase:8s} TVM's pool {tvm_tps:8.1f} tok/s, fork-join"
                f" {ours_tps:8.1f} tok/s: x{ours_tps / tvm_tps:.3f}"
            )
        print(f"L={length:5d} same tokens on both: {row['same_tokens']}")
        results.append(row)
    switch(library, threads)
    print(json.dumps({"model": args.model, "threads": threads, "results": results}))


if __name__ == "__main__":
    main()
