"""slm-bench soak on the desktop (tiny dummy model, real compile and runner): journaled requests
and samples, the summary's definitions, resume, and the refusal of a soak shorter than a request."""

from __future__ import annotations

import json
from statistics import median

import pytest

from harness.errors import UserError
from harness.results.journal import load
from harness.results.schema import RunSpec
from harness.soak import read_samples, run_soak

QUIET = dict(log=lambda *_: None, interval_s=0.5)


def spec(**kw) -> RunSpec:
    return RunSpec(**{**dict(model="dummy:tiny-llama", quantization="q4f16_1", tasks=["summ"], lengths=[200], max_new_tokens=8, docs=1, idle_s=0), **kw})


def test_soak_journals_requests_and_samples_and_resumes(tmp_path):
    out = tmp_path / "soak"
    summary = run_soak(spec(threads=[1]), 3 / 60, out, **QUIET)
    records, problems = load(out)
    measured = [r for r in records if not r.warmup]
    assert not problems and summary["requests"] == len(measured) > 3
    times = [r.soak_elapsed_s for r in measured]
    assert times == sorted(times) and times[-1] < 3.5 and all(r.threads == 1 for r in measured)
    assert [r.repeat for r in measured] == list(range(len(measured)))
    samples = read_samples(out)
    assert len(samples) >= 3 and {"elapsed_s", "battery_temp_c", "thermal_zones_c", "cpu_freq_khz"} <= set(samples[0])
    first = [r.otps for r in measured if r.soak_elapsed_s < 60]
    assert summary["peak_otps"] == pytest.approx(median(first))
    assert summary["sustained_ratio"] == pytest.approx(summary["sustained_otps"] / summary["peak_otps"])
    assert json.loads((out / "soak.json").read_text()) == summary
    # rerun longer: it continues where the files end, numbering and timing on
    run_soak(spec(threads=[1]), 5 / 60, out, **QUIET)
    more = [r for r in load(out)[0] if not r.warmup]
    assert len(more) > len(measured) and [r.repeat for r in more] == list(range(len(more)))
    assert min(r.soak_elapsed_s for r in more[len(measured):]) >= times[-1] and more[-1].soak_elapsed_s < 5.5


def test_soak_refuses_bad_durations_and_sweeps(tmp_path):
    with pytest.raises(UserError, match="shorter than one request"):
        run_soak(spec(max_new_tokens=64), 1e-6, tmp_path / "short", **QUIET)
    with pytest.raises(UserError, match="one setting"):
        run_soak(spec(threads=[1, 2]), 1, tmp_path / "sweep", **QUIET)
    with pytest.raises(UserError, match="positive duration"):
        run_soak(spec(), 0, tmp_path / "zero", **QUIET)
