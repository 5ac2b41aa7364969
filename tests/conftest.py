"""Shared fixtures.

``measured_run_dir`` and ``second_model_run_dir`` are run directories that the project's own
benchmark produced (real TVM compiles of tiny dummy-weight models, real requests through the
runner). Report, plot and CLI tests render them; nothing in them is typed by hand.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run without `pip install -e .`
    sys.path.insert(0, str(REPO_ROOT))

from harness.results.schema import RunSpec  # noqa: E402


def _harness_built_llama_cpp() -> None:
    """The llama.cpp tests use the harness-built host kit where one is built (`slm-bench kit
    llama.cpp --arch x86_64`, CI does); a test never builds it (minutes)."""
    if not os.environ.get("SLM_BENCH_LLAMA_BIN_DIR"):
        from harness.kits.llamacpp import built_kit

        kit = built_kit(os.uname().machine)
        if kit is not None:
            os.environ["SLM_BENCH_LLAMA_BIN_DIR"] = str(kit)


_harness_built_llama_cpp()

TASKS = ("summ", "qs", "qa")
LENGTHS = (200, 400, 600, 800, 1000)


def make_engine_run(out_dir: Path, model: str, repeats: int, lengths=LENGTHS, tasks=TASKS) -> Path:
    """A run directory produced by the project's own benchmark: a real TVM compile of a tiny
    model (seeded dummy weights, so it needs no download), real requests through the runner."""
    from harness.benchmark import run_benchmark

    spec = RunSpec(
        model=model,
        quantization="q4f16_1",
        tasks=list(tasks),
        lengths=list(lengths),
        repeats=repeats,
        warmup=1,
        max_new_tokens=8,
        docs=1,
    )
    run_benchmark(spec, out_dir, log=lambda *_: None, write_reports=False)
    return out_dir


@pytest.fixture(scope="session")
def measured_run_dir(tmp_path_factory) -> Path:
    """A finished run directory of real measurements: tiny Llama, every task and L, 3 repeats."""
    return make_engine_run(
        tmp_path_factory.mktemp("runs") / "tiny-llama", "dummy:tiny-llama", repeats=3
    )


@pytest.fixture(scope="session")
def second_model_run_dir(tmp_path_factory) -> Path:
    """A second model (tiny SlimLM block) for multi-model reports and trade-off plots."""
    return make_engine_run(
        tmp_path_factory.mktemp("runs") / "tiny-slimlm", "dummy:tiny-slimlm", repeats=2
    )
