"""The decode ceiling of benchmarks/engine_vs_llamacpp.py: each run against the readings next to
it, not against one reading from elsewhere in the run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "engine_vs_llamacpp.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("engine_vs_llamacpp", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Recorder:
    """An engine and a bandwidth probe that log the order of their calls."""

    def __init__(self):
        self.calls = []

    def prefill(self, ids):
        self.calls.append("prefill")
        return 1

    def decode(self, token):
        self.calls.append("decode")
        return token + 1

    def probe(self):
        self.calls.append("probe")
        return 40.0


def test_the_reading_before_a_decode_comes_after_its_prefill(bench):
    """A 7B prefill takes half a minute: a reading before it would describe another machine."""
    rec = Recorder()
    _, _, tokens, reading = bench.run_once(rec, [5, 6], 3, rec.probe)
    assert rec.calls == ["prefill", "probe", "decode", "decode", "decode"]
    assert tokens == [1, 2, 3, 4] and reading == 40.0


def test_each_decode_sits_between_two_readings(bench):
    engines = {"ours": Recorder(), "ref": Recorder()}
    probe_log = Recorder()
    rows = bench.measure(engines, {2: [7, 8]}, repeats=2, steps=1, probe=probe_log.probe)
    for pairs in rows[0]["runs"].values():
        assert [(before, after) for _, before, after in pairs] == [(40.0, 40.0)] * 2
    # warm-up runs take no reading; each timed run takes two
    assert probe_log.calls.count("probe") == 2 * 2 * 2


def test_a_fast_reading_elsewhere_does_not_set_every_runs_ceiling(bench):
    """Two runs streaming 30 GB/s next to 40 GB/s readings are at 75% of their ceiling, whatever
    a single 80 GB/s reading at another L says; the run-best figure halves."""
    weights, steps = 1_000_000_000, 10  # 1 GB a step, no KV: 30 GB/s is 30 steps a second
    row = {
        "L": 200,
        "ours_decode_tps": 30.0,
        "runs": {"ours": [(steps / 30.0, 40.0, 38.0), (steps / 30.0, 36.0, 40.0)]},
    }
    bench.add_ceiling_shares([row], {"ours": weights}, 0, steps, best_gbps=80.0)
    assert row["ours_decode_ceiling_pct"] == pytest.approx(75.0)
    assert row["ours_decode_best_read_pct"] == pytest.approx(37.5)


def test_the_better_reading_around_a_run_is_its_ceiling(bench):
    """A dip in the reading on one side of a run does not flatter it."""
    row = {
        "L": 0,
        "ours_decode_tps": 20.0,
        "runs": {"ours": [(1.0, 10.0, 40.0)]},  # 20 steps of 1 GB in 1 s: 20 GB/s
    }
    bench.add_ceiling_shares([row], {"ours": 1_000_000_000}, 0, 20, best_gbps=40.0)
    assert row["ours_decode_ceiling_pct"] == pytest.approx(50.0)


def test_the_kv_cache_at_the_mean_context_counts_in_a_steps_bytes(bench):
    # 10 steps in 10 s; 900 MB of weights + 1 MB x (100 + 10 / 2) tokens: 1.005 GB a step
    row = {"L": 100, "ours_decode_tps": 1.0, "runs": {"ours": [(10.0, 2.01, 2.01)]}}
    bench.add_ceiling_shares([row], {"ours": 900_000_000}, 1_000_000, 10, best_gbps=2.01)
    assert row["ours_decode_ceiling_pct"] == pytest.approx(50.0)
    assert row["ours_decode_best_read_pct"] == pytest.approx(50.0)
