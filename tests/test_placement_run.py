"""Threads and cores on the desktop end to end: a sweep pins the runner, records what ran as read
back from it, and resumes per setting (tiny dummy model, real compile and runner)."""

from __future__ import annotations

import os

from harness.benchmark import run_benchmark
from harness.devices.topology import mask_of
from harness.results.journal import load
from harness.results.schema import RunSpec

QUIET = dict(log=lambda *_: None, write_reports=False)


def sweep(**kw) -> RunSpec:
    base = dict(
        model="dummy:tiny-llama",
        quantization="q4f16_1",
        tasks=["summ"],
        lengths=[200],
        repeats=2,
        warmup=0,
        max_new_tokens=4,
        docs=1,
        threads=[1, 2],
    )
    return RunSpec(**{**base, **kw})


def test_a_thread_sweep_records_what_each_runner_ran(tmp_path):
    out = run_benchmark(sweep(), tmp_path / "run", **QUIET)
    records, _ = load(out.out_dir)
    assert out.measured == 4
    host = mask_of(sorted(os.sched_getaffinity(0)))
    by_threads = {}
    for r in records:
        by_threads.setdefault(r.threads, []).append(r)
        # read back from the running runner: its /proc/PID/status and TVM's pool size
        assert (r.cpu_mask, r.cpu_mask_asked, r.placement_mismatch) == (host, host, None)
        assert r.threads == r.threads_asked and r.os_threads >= r.threads and r.cores_asked is None
    assert sorted(by_threads) == [1, 2] and all(len(v) == 2 for v in by_threads.values())
    assert [r.placement_default for r in by_threads[len(os.sched_getaffinity(0))]] == [True, True]
    again = run_benchmark(sweep(), tmp_path / "run", **QUIET)
    assert again.measured == 0 and again.skipped_done == 4
    more = run_benchmark(sweep(threads=[1, 2, 3]), tmp_path / "more", **QUIET)
    # 3 > cores: oversubscribed, measured
    assert {r.threads for r in load(more.out_dir)[0]} == {
        1,
        2,
        3,
    }
    assert {r.oversubscribed for r in load(more.out_dir)[0] if r.threads == 3} == {
        len(os.sched_getaffinity(0)) < 3
    }


def test_pinned_to_one_core_the_runner_reads_back_that_core(tmp_path):
    core = min(os.sched_getaffinity(0))
    out = run_benchmark(sweep(threads=None, cores=[str(core)]), tmp_path / "run", **QUIET)
    records, _ = load(out.out_dir)
    assert {(r.cpu_list, r.threads, r.cores_asked) for r in records} == {(str(core), 1, str(core))}
