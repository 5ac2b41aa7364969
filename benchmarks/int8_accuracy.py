"""What int8 activations cost: q4f16_1a8 against q4f16_1 (same weights, float activations).

Two measures, on real text (SmolLM2-135M-Instruct's real weights by default):

1. **Teacher-forced next-token agreement** on the study's prompts (summarize, suggest questions,
   answer, at each ``--lengths`` L): the float path generates ``--steps`` greedy tokens; the
   int8 path is fed the prompt and then those same tokens, and at every position we compare
   the two greedy choices. One early difference cannot derail the rest, so this is the share
   of next-token decisions the numerics change.
2. **Perplexity** on the corpus documents (the first ``--ppl-tokens`` tokens of each, fed one
   at a time, so every position's logits are seen): exp(mean negative log-likelihood) per path,
   and their relative difference.

    python benchmarks/int8_accuracy.py [--model M] [--lengths 200,1000] [--docs 3]

The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

FLOAT, INT8 = "q4f16_1", "q4f16_1a8"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="built-in or catalog model")
    p.add_argument("--lengths", default="200,1000", help="prompt lengths L of the agreement check")
    p.add_argument(
        "--docs",
        type=int,
        default=3,
        help="corpus documents (prompts per task and L, and perplexity texts)",
    )
    p.add_argument("--steps", type=int, default=32, help="teacher-forced positions per prompt")
    p.add_argument(
        "--ppl-tokens", type=int, default=512, help="tokens of each document scored for perplexity"
    )
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = p.parse_args(argv)
    args.lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
    return args


def greedy(logits) -> int:
    return int(np.argmax(logits.numpy().reshape(-1)))


def agreement(sessions: dict, ids: list[int], steps: int) -> tuple[int, int]:
    """(positions where the int8 path's greedy choice equals the float path's, positions)."""
    ref, test = sessions[FLOAT], sessions[INT8]
    prompt = np.asarray(ids, dtype=np.int32)
    followed = [greedy(ref.prefill(prompt))]
    for _ in range(steps - 1):
        followed.append(greedy(ref.decode(followed[-1])))
    same = int(greedy(test.prefill(prompt)) == followed[0])
    for position in range(1, steps):
        same += int(greedy(test.decode(followed[position - 1])) == followed[position])
    return same, steps


def log_likelihoods(session, ids: list[int]) -> np.ndarray:
    """log p(ids[i] | ids[:i]) for i >= 1, one decode step per token."""
    out = []
    logits = session.prefill(np.asarray(ids[:1], dtype=np.int32))
    for token in ids[1:]:
        z = logits.numpy().reshape(-1).astype(np.float64)
        z -= z.max()
        out.append(z[token] - math.log(np.exp(z).sum()))
        logits = session.decode(token)
    return np.asarray(out)


def main(argv=None) -> None:
    args = parse_args(argv)
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731

    from harness.engines.tvm.compile import compile_model
    from harness.engines.tvm.runtime import TVMSession
    from harness.models.resolve import resolve_model
    from harness.models.tokenizer import ChatTokenizer
    from harness.prompts.corpus import load_corpus
    from harness.prompts.suite import load_suite, select
    from harness.quantization import get_preset

    model = resolve_model(args.model, log)
    bundles = {
        name: compile_model(model, get_preset(name), "llvm", log=log) for name in (FLOAT, INT8)
    }
    manifest = json.loads((bundles[INT8] / "manifest.json").read_text())
    kernels = manifest["kernels_detail"]
    if manifest["quantization"] != INT8:
        sys.exit(
            f"this CPU has no integer dot-product kernels: {INT8} "
            "compiled as its float twin; nothing to compare"
        )
    longest = max(args.lengths) + args.steps + 64
    sessions = {
        name: TVMSession(b, max_seq_len=max(longest, args.ppl_tokens + 1, 2048))
        for name, b in bundles.items()
    }
    tokenizer = ChatTokenizer.from_bundle(bundles[FLOAT])
    t0 = time.perf_counter()

    rows = []
    suite = load_suite()
    for length in args.lengths:
        same = total = 0
        for prompt in select(suite, ["summ", "qs", "qa"], [length], args.docs):
            s, n = agreement(sessions, tokenizer.encode_chat(prompt.text), args.steps)
            same, total = same + s, total + n
        rows.append(
            {"L": length, "agree": same, "positions": total, "rate": round(same / total, 4)}
        )
        log(f"L={length}: {same}/{total} teacher-forced next tokens agree")

    nll = {name: [] for name in sessions}
    for doc in load_corpus()[: args.docs]:
        ids = tokenizer.encode(doc.body)[: args.ppl_tokens]
        for name, session in sessions.items():
            nll[name].extend(-log_likelihoods(session, ids))
    ppl = {name: math.exp(float(np.mean(v))) for name, v in nll.items()}
    change = ppl[INT8] / ppl[FLOAT] - 1

    print(
        f"{model.name} ({model.weights} weights), {args.threads} threads, "
        f"{time.perf_counter() - t0:.0f} s; {INT8} kernels: {kernels}"
    )
    print(f"{'L':>5} | {'teacher-forced agreement':>24}")
    for r in rows:
        print(f"{r['L']:>5} | {r['agree']:>6}/{r['positions']:<6} {100 * r['rate']:>6.1f}%")
    print(
        f"perplexity on {args.docs} corpus documents x {args.ppl_tokens} tokens: "
        f"{FLOAT} {ppl[FLOAT]:.3f}, {INT8} {ppl[INT8]:.3f} ({100 * change:+.2f}%)"
    )
    print(
        json.dumps(
            {
                "model": model.name,
                "agreement": rows,
                "perplexity": {k: round(v, 4) for k, v in ppl.items()},
                "perplexity_change": round(change, 5),
                "kernels": kernels,
            }
        )
    )


if __name__ == "__main__":
    main()
