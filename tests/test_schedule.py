"""The grid's scheduler on its own: which device runs which cell, at once, and what a lost device
costs. The jobs here are threads that wait for each other, so overlap is shown, not timed."""

import threading

import pytest

from harness.schedule import Job, Outcome, Scheduler


class Lab:
    """Runs jobs by name; records who ran what, and how many ran at once at the peak."""

    def __init__(self, lost: dict[str, str] | None = None, barrier: int = 0):
        self.ran: list[tuple[str, str]] = []
        self.given_up: list[tuple[str, str]] = []
        self.lost = lost or {}  # job name -> the device it is lost on
        self.barrier = threading.Barrier(barrier) if barrier else None
        self._lock = threading.Lock()

    def run(self, job: Job, device: str) -> Outcome:
        if self.barrier is not None:  # every device must be inside a job at once to pass
            self.barrier.wait(timeout=10)
        with self._lock:
            if self.lost.get(job.cell) == device:
                return Outcome.DEVICE_LOST
            self.ran.append((job.cell, device))
        return Outcome.DONE

    def give_up(self, job: Job, reason: str) -> None:
        self.given_up.append((job.cell, reason))


def test_pool_cells_run_on_every_member_at_once():
    pool = ["a", "b", "c"]
    lab = Lab(barrier=3)  # passes only if three jobs are running at the same time
    jobs = [Job(f"cell{i}", pool) for i in range(3)]
    Scheduler(jobs, lab.run, lab.give_up).run()
    assert sorted(c for c, _ in lab.ran) == ["cell0", "cell1", "cell2"]
    assert sorted(d for _, d in lab.ran) == pool and not lab.given_up


def test_a_cell_for_one_device_waits_for_it():
    lab = Lab()
    jobs = [Job("x1", ["x"]), Job("y1", ["y"]), Job("x2", ["x"]), Job("any", ["x", "y"])]
    Scheduler(jobs, lab.run, lab.give_up).run()
    ran = dict(lab.ran)
    assert ran["x1"] == "x" and ran["x2"] == "x" and ran["y1"] == "y"
    assert ran["any"] in ("x", "y") and len(lab.ran) == 4


def test_a_lost_device_hands_its_cell_to_another_member_once():
    lab = Lab(lost={"c0": "a"})
    jobs = [Job("c0", ["a", "b"]), Job("c1", ["a", "b"]), Job("c2", ["a", "b"])]
    scheduler = Scheduler(jobs, lab.run, lab.give_up)
    scheduler.run()
    # a is gone after c0: b measures everything, c0 included (its retry)
    assert sorted(lab.ran) == [("c0", "b"), ("c1", "b"), ("c2", "b")]
    assert scheduler.lost_devices == {"a"} and not lab.given_up


def test_a_cell_lost_twice_or_with_no_member_left_is_given_up():
    lab = Lab(lost={"c0": "a", "solo": "s"})
    jobs = [Job("c0", ["a", "b"]), Job("solo", ["s"]), Job("after", ["s"])]
    Scheduler(jobs, lab.run, lab.give_up).run()
    reasons = dict(lab.given_up)
    # solo's device left and it has no other; the cell queued behind it goes with it
    assert reasons == {"solo": "s was lost", "after": "no device left to run it: s lost"}
    assert ("c0", "b") in lab.ran

    def run(job, device):
        return Outcome.DEVICE_LOST  # every member leaves with it

    given_up = []
    Scheduler([Job("c0", ["a", "b"])], run, lambda job, why: given_up.append((job.cell, why))).run()
    assert given_up == [("c0", "b was lost")]


def test_ctrl_c_in_one_device_stops_the_grid_after_the_running_cells():
    ran = []

    def run(job, device):
        if job.cell == "c0":
            raise KeyboardInterrupt
        ran.append(job.cell)
        return Outcome.DONE

    jobs = [Job("c0", ["a"]), Job("c1", ["a"]), Job("c2", ["b"])]
    with pytest.raises(KeyboardInterrupt):
        Scheduler(jobs, run, lambda *_: None).run()
    assert "c1" not in ran  # a's next cell never started
