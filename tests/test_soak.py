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
    return RunSpec(
        **{
            **dict(
                model="dummy:tiny-llama",
                quantization="q4f16_1",
                tasks=["summ"],
                lengths=[200],
                max_new_tokens=8,
                docs=1,
                idle_s=0,
            ),
            **kw,
        }
    )


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
    assert len(samples) >= 3 and {
        "elapsed_s",
        "battery_temp_c",
        "thermal_zones_c",
        "cpu_freq_khz",
    } <= set(samples[0])
    first = [r.otps for r in measured if r.soak_elapsed_s < 60]
    assert summary["peak_otps"] == pytest.approx(median(first))
    assert summary["sustained_ratio"] == pytest.approx(
        summary["sustained_otps"] / summary["peak_otps"]
    )
    assert json.loads((out / "soak.json").read_text()) == summary
    # rerun longer: it continues where the files end, numbering and timing on
    run_soak(spec(threads=[1]), 5 / 60, out, **QUIET)
    more = [r for r in load(out)[0] if not r.warmup]
    assert len(more) > len(measured) and [r.repeat for r in more] == list(range(len(more)))
    assert (
        min(r.soak_elapsed_s for r in more[len(measured) :]) >= times[-1]
        and more[-1].soak_elapsed_s < 5.5
    )


def test_soak_refuses_bad_durations_and_sweeps(tmp_path):
    with pytest.raises(UserError, match="shorter than one request"):
        run_soak(spec(max_new_tokens=64), 1e-6, tmp_path / "short", **QUIET)
    with pytest.raises(UserError, match="one setting"):
        run_soak(spec(threads=[1, 2]), 1, tmp_path / "sweep", **QUIET)
    with pytest.raises(UserError, match="positive duration"):
        run_soak(spec(), 0, tmp_path / "zero", **QUIET)


def test_first_drop_needs_a_run_of_slow_requests_not_one():
    from harness.soak import first_drop

    points = (
        [(float(t), 100.0) for t in range(10)]
        + [(10.0, 50.0)]
        + [(float(t), 100.0) for t in range(11, 20)]
    )
    assert first_drop(points, 100.0) is None  # one slow request is noise
    points += [(float(t), 70.0) for t in range(20, 30)]
    assert first_drop(points, 100.0) == 18.0  # the first 5 in a row whose median is below 90


@pytest.mark.slow
def test_a_soak_on_the_emulated_s24_shows_the_throttle(tmp_path):
    """A phone made to heat 8x fast: its BIG zone passes the first trip a few seconds into a
    2-core decode and the second (0.45) within the half minute; every cluster's clock drops and
    decoding slows with it. (At 5x only the first trip's 0.7 duty cycle was reached, and on a
    loaded CI machine decode once slowed by only 0.91x under it.)"""
    import shutil

    if shutil.which("adb") is None:
        pytest.skip("Debian's adb is not installed (apt-get install -y adb)")
    from harness.devices.emulated.adbd import EmulatedDevice, load_profile
    from tests.devices.conftest import adb, free_port, wait_online

    server = free_port()
    adb(server, "start-server")
    phone = EmulatedDevice(load_profile("galaxy-s24"), tmp_path / "phone", time_scale=8.0)
    phone.start()
    try:
        wait_online(server, phone.serial)
        summary = run_soak(
            spec(model="smollm2-135m-instruct", device=f"adb:{phone.serial}", max_new_tokens=16),
            0.5,
            tmp_path / "soak",
            adb_server=f"127.0.0.1:{server}",
            **QUIET,
        )
    finally:
        phone.stop()
        adb(server, "kill-server")
    samples = read_samples(tmp_path / "soak")
    throttled = [s["elapsed_s"] for s in samples if s["cpu_freq_khz"]["prime"] < 3207000]
    assert throttled and min(s["cpu_freq_khz"]["prime"] for s in samples) in (
        round(3207000 * 0.7),
        round(3207000 * 0.45),
    )
    records = [r for r in load(tmp_path / "soak")[0] if not r.warmup]
    before = median(r.otps for r in records if r.soak_elapsed_s < throttled[0] - 1)
    after = median(r.otps for r in records if r.soak_elapsed_s > throttled[0] + 2)
    assert after < 0.85 * before, (before, after)
    assert summary["peak_temp_c"] > 46 and (tmp_path / "soak" / "soak.json").is_file()
    assert all(r.cpu_mask == "3f0" and r.threads == 6 for r in records)
