"""Does `slm-bench compare` catch a real decode regression through a real machine's noise?

Measures the same model twice on this desktop, side by side in one run: once as it is, once with
every decode step run three times (a ``sitecustomize`` hook in the runner's process: the kind of
bug that re-runs a step, so OTPS really falls to about a third while prefill is untouched). Then
compares them as `slm-bench compare --fail-above 25` would and prints the per-cell slowdowns, the
verdict, and each run's cpu_load_other (whether another job shared the CPU while it measured).

    python benchmarks/compare_regression.py                      # SmolLM-135M shapes, dummy weights
    python benchmarks/compare_regression.py --model smollm2-135m-instruct --repeats 5

The last line is one JSON object: {"cells": [{task, L, otps_a, otps_b, otps_slowdown_pct}],
"flagged": bool, "load": {"baseline": median, "regressed": median}}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TRIPLE_DECODE = textwrap.dedent(
    """
    from harness.engines.tvm import runtime

    _decode = runtime.TVMSession.decode

    def _decode_thrice(self, token):
        _decode(self, token)
        _decode(self, token)
        return _decode(self, token)

    runtime.TVMSession.decode = _decode_thrice
    """
)


def measure(model: str, repeats: int, out: Path, hook: Path | None) -> Path:
    from harness.benchmark import run_benchmark
    from harness.results.schema import RunSpec

    # 8 output tokens: the tripled decode (22 steps) still fits the KV cache the runner sizes for
    # prompt + 8 + 16 of headroom.
    spec = RunSpec(
        model=model,
        quantization="q4f16_1",
        tasks=["summ", "qa"],
        lengths=[200],
        repeats=repeats,
        warmup=1,
        max_new_tokens=8,
        docs=1,
    )
    saved = os.environ.get("PYTHONPATH")
    if hook is not None:
        os.environ["PYTHONPATH"] = str(hook)  # the local runner appends the inherited PYTHONPATH
    try:
        run_benchmark(spec, out, log=lambda *_: None, write_reports=False)
    finally:
        if hook is not None:
            os.environ.pop("PYTHONPATH") if saved is None else os.environ.__setitem__(
                "PYTHONPATH", saved
            )
    return out


def median_load(run: Path) -> float | None:
    from harness.results.journal import load

    values = [
        r.cpu_load_other for r in load(run)[0] if not r.warmup and r.cpu_load_other is not None
    ]
    return median(values) if values else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm-135m-instruct")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--fail-above", type=float, default=25.0)
    args = ap.parse_args()
    from harness.report.compare import compare_runs

    with tempfile.TemporaryDirectory(prefix="slm-bench-regression-") as tmp:
        root = Path(tmp)
        (root / "hook").mkdir()
        (root / "hook" / "sitecustomize.py").write_text(TRIPLE_DECODE)
        baseline = measure(args.model, args.repeats, root / "baseline", None)
        regressed = measure(args.model, args.repeats, root / "regressed", root / "hook")
        comparison = compare_runs([baseline], [regressed])
        cells = [
            {k: row[k] for k in ("task", "L", "otps_a", "otps_b", "otps_slowdown_pct")}
            for _, row in comparison.cells.iterrows()
        ]
        flagged = bool((comparison.cells["otps_slowdown_pct"] > args.fail_above).any())
        load = {"baseline": median_load(baseline), "regressed": median_load(regressed)}
    for c in cells:
        print(
            f"{c['task']:<5} L={c['L']}: OTPS {c['otps_a']:.1f} -> "
            f"{c['otps_b']:.1f} tok/s, slowdown {c['otps_slowdown_pct']:.0f}%"
        )
    print(
        f"flagged at --fail-above {args.fail_above:g}: {flagged} "
        "(expected: True; a tripled decode step is ~200% slower)"
    )
    print(f"other processes' CPU share while measuring (median cpu_load_other): {load}")
    print(json.dumps({"cells": cells, "flagged": flagged, "load": load}, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
