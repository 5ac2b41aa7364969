"""``slm-bench compare``: a run against itself passes; a real decode regression is flagged.

The regressed run is measured for real: the runner process is started with a
``sitecustomize`` that makes every decode step run the engine's decode three times (the kind of
bug that re-runs a step), so its OTPS really falls to a third while prefill is untouched. A
third, not a half: on a shared 2-core CI machine one baseline cell measured 1.45x slower than its
twin, which hid a halving.
"""

from __future__ import annotations

import json
import math
import textwrap

import pytest
from click.testing import CliRunner

from harness.benchmark import run_benchmark
from harness.cli import cli
from harness.report.compare import compare_runs, slowdown_pct
from harness.results.schema import RunSpec
from tests.conftest import make_engine_run

DOUBLE_DECODE = textwrap.dedent(
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


def test_slowdown_reads_the_same_for_throughput_and_time():
    assert slowdown_pct(100.0, 50.0, higher_is_better=True) == pytest.approx(100.0)  # OTPS halved
    assert slowdown_pct(1.0, 2.0, higher_is_better=False) == pytest.approx(100.0)  # TTFT doubled
    assert slowdown_pct(100.0, 200.0, higher_is_better=True) == pytest.approx(-50.0)  # faster
    assert math.isnan(slowdown_pct(0.0, 1.0, higher_is_better=True))


def measure(out_dir):
    # SmolLM-135M's shapes (seeded dummy weights): a decode step takes milliseconds, so a doubled
    # step stands far above scheduling noise on a busy machine. 8 output tokens: the tripled
    # decode (21 steps) still fits the KV cache the runner sizes for prompt + 8 + 16 of headroom.
    spec = RunSpec(model="smollm-135m-instruct", quantization="q4f16_1", tasks=["summ", "qa"], lengths=[200], repeats=3, warmup=1, max_new_tokens=8, docs=1)
    run_benchmark(spec, out_dir, log=lambda *_: None, write_reports=False)
    return out_dir


@pytest.fixture(scope="module")
def baseline_and_regressed(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    baseline = measure(root / "baseline")
    hook = root / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(DOUBLE_DECODE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", str(hook))  # the local runner appends the inherited PYTHONPATH
        regressed = measure(root / "regressed")
    return baseline, regressed


def test_a_run_compared_with_itself_passes_even_at_zero_percent(baseline_and_regressed):
    baseline, _ = baseline_and_regressed
    result = CliRunner().invoke(cli, ["compare", str(baseline), str(baseline), "--fail-above", "0"])
    assert result.exit_code == 0, result.output
    assert "+0.0%" in result.output and "REGRESSION" not in result.output


def test_a_real_3x_decode_regression_is_flagged(baseline_and_regressed):
    baseline, regressed = baseline_and_regressed
    comparison = compare_runs([baseline], [regressed])
    assert len(comparison.cells) == 2  # summ and qa at L=200
    # Decode runs three times per token: OTPS falls by far more than noise (expected 67%).
    assert (comparison.cells["otps_slowdown_pct"] > 40).all(), comparison.cells[["task", "otps_a", "otps_b"]]
    assert (comparison.cells["otps_ratio"] < 0.6).all()

    result = CliRunner().invoke(cli, ["compare", str(baseline), str(regressed), "--fail-above", "25"])
    assert result.exit_code == 1, result.output
    assert "REGRESSION" in result.output and "otps" in result.output


def test_json_output_carries_ratios_per_cell(baseline_and_regressed):
    baseline, regressed = baseline_and_regressed
    result = CliRunner().invoke(cli, ["compare", str(baseline), str(regressed), "--json"])
    assert result.exit_code == 0
    cells = json.loads(result.stdout)
    assert {c["task"] for c in cells} == {"summ", "qa"}
    assert all(c["otps_ratio"] < 1 for c in cells)


def test_runs_with_no_common_cell_are_refused(baseline_and_regressed, tmp_path):
    baseline, _ = baseline_and_regressed
    other = make_engine_run(tmp_path / "slimlm", "dummy:tiny-slimlm", repeats=1, lengths=(200,), tasks=("summ",))
    result = CliRunner().invoke(cli, ["compare", str(baseline), str(other)])
    assert result.exit_code != 0
    assert "share no cell" in str(result.exception or result.output)
