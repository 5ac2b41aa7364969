"""Noise on record: other processes' share of the CPU while a request ran (harness.devices.load)."""

from __future__ import annotations

from harness.devices.load import Counters, other_load, parse_counters

STAT = "cpu  {u} 0 {s} {i} 0 0 0 0 0 0\ncpu0 1 0 1 1 0 0 0 0 0 0\nintr 1 2 3\n"
PID = (
    "4242 (python3 -m harness) S 1 4242 4242 0 -1 4194560 "
    "100 0 0 0 {ut} {st} 0 0 20 0 3 0 100 1000 10\n"
)


def counters(user: int, system: int, idle: int, utime: int, stime: int) -> Counters:
    return parse_counters(STAT.format(u=user, s=system, i=idle) + PID.format(ut=utime, st=stime))


def test_counters_read_all_cores_and_the_runner_despite_spaces_in_its_name():
    c = counters(500, 100, 400, 30, 5)
    assert (c.busy, c.total, c.runner) == (600, 1000, 35)


def test_another_job_on_one_of_two_cores_reads_half():
    # 200 ticks of two cores: the runner busy on one (100), another job on the other (100)
    before, after = counters(1000, 0, 1000, 0, 0), counters(1190, 10, 1000, 95, 5)
    assert other_load(before, after) == 0.5


def test_too_short_or_unknown_is_no_answer():
    # 10 ticks: granularity
    assert other_load(counters(0, 0, 0, 0, 0), counters(5, 0, 5, 5, 0)) is None
    assert other_load(parse_counters(STAT.format(u=1, s=1, i=1)), None) is None
    assert parse_counters("no proc here") is None


def test_max_load_waits_while_another_job_keeps_the_desktop_busy():
    import subprocess
    import sys
    import time

    from harness.devices.load import device_load, wait_until_quiet
    from harness.devices.local import LocalDevice

    device, lines = LocalDevice(), []
    # both cores of a 2-core host: another job, as a user would start one
    busy = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import time\nend = time.time() + 3\nwhile time.time() < end: pass",
            ]
        )
        for _ in range(2)
    ]
    try:
        time.sleep(0.3)
        assert device_load(device, 0.5) > 0.6
        waited = wait_until_quiet(device, 0.3, 20, lines.append)
    finally:
        for proc in busy:
            proc.kill()
    assert waited > 1.5 and lines[0].startswith("waiting for the device to be quiet")
    # back once the jobs end, unless something else keeps this machine busy: then it says so at the
    # limit
    assert waited < 10 or lines[-1].startswith("device still")
    assert wait_until_quiet(device, None, 20, lines.append) == 0.0


def test_a_shells_children_ticks_count_the_program_it_ran():
    from harness.devices.load import children_ticks

    line = "77 (sh) S 1 77 77 0 -1 4194304 90 300 0 0 2 1 45 7 20 0 1 0 100 2000 100"
    assert children_ticks(line) == 52  # cutime 45 + cstime 7
    assert children_ticks("") is None and children_ticks("77 (sh) S 1") is None
