"""Progress: plain lines without ANSI codes when stderr is not a terminal; meters with a rate,
time left and a cadence that keeps logs short."""

import io

import pytest

from harness.progress import PlainProgress, meter, progress


def test_plain_lines_when_not_a_tty():
    stream = io.StringIO()
    with progress(3, "measuring", stream=stream) as bar:
        assert isinstance(bar, PlainProgress)
        bar.advance("d01-summ-L200")
        bar.log("d01-qa-L200: skipped")
        bar.advance()
    assert stream.getvalue().splitlines() == [
        "measuring [1/3] d01-summ-L200",
        "d01-qa-L200: skipped",
        "measuring [2/3]",
    ]
    assert "\x1b" not in stream.getvalue()


def test_rich_bar_on_a_tty():
    class FakeTTY(io.StringIO):
        def isatty(self):
            return True

    stream = FakeTTY()
    with progress(2, "building", stream=stream) as bar:
        bar.advance("one")
        bar.advance("two")
    assert "2/2" in stream.getvalue()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_meter_plain_lines_every_10_percent_and_10_s_whichever_is_rarer():
    stream, clock = io.StringIO(), Clock()
    with meter(100_000_000, "pushing model.tar", stream=stream, clock=clock) as advance:
        for _ in range(100):  # 1 MB a second: 10% takes 10 s, both rules agree
            clock.now += 1
            advance(1_000_000)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "pushing model.tar: 10.0 MB of 100.0 MB (10%), 1.0 MB/s, 1 min 30 s left"
    assert lines[4] == "pushing model.tar: 50.0 MB of 100.0 MB (50%), 1.0 MB/s, 50 s left"
    assert len(lines) == 10  # nine at 10% .. 90%, none at 100%: the last line says it is done
    assert lines[-1] == "pushing model.tar: 100.0 MB in 1 min 40 s (1.0 MB/s)"
    assert "\x1b" not in stream.getvalue()


def test_meter_plain_lines_follow_whichever_rule_is_rarer():
    for every_s, every_fraction, expected in (
        (30, 0.1, ["240 of 1000 tensors (24%)", "480", "720", "960"]),  # every 30 s
        (10, 0.3, ["300 of 1000 tensors (30%)", "600", "900"]),  # every 30% (37.5 s)
    ):
        stream, clock = io.StringIO(), Clock()
        with meter(
            1000,
            "packing weights",
            "tensors",
            stream=stream,
            clock=clock,
            every_s=every_s,
            every_fraction=every_fraction,
        ) as advance:
            for _ in range(1000):  # 8 tensors a second: 10% in 12.5 s
                clock.now += 0.125
                advance(1)
        lines = stream.getvalue().splitlines()
        assert lines[0].startswith(f"packing weights: {expected[0]}, 8.0 tensors/s, ")
        assert [line.split(": ")[1].split(" ")[0] for line in lines[1:-1]] == expected[1:]
        assert lines[-1] == "packing weights: 1000 tensors in 2 min 05 s (8.0 tensors/s)"


def test_meter_fast_work_prints_only_the_last_line():
    stream, clock = io.StringIO(), Clock()
    with meter(190_000_000, "pushing the TVM kit", stream=stream, clock=clock) as advance:
        for _ in range(190):
            clock.now += 0.05
            advance(1_000_000)
    assert stream.getvalue() == "pushing the TVM kit: 190.0 MB in 9.5 s (20.0 MB/s)\n"


def test_meter_below_min_total_is_silent_and_a_failure_says_where_it_stopped():
    stream, clock = io.StringIO(), Clock()
    with meter(1_000, "pushing prompts", stream=stream, min_total=8_000_000) as advance:
        advance(1_000)
    assert stream.getvalue() == ""
    with pytest.raises(OSError):
        with meter(100, "building llama.cpp", "%", stream=stream, clock=clock) as m:
            clock.now += 20
            m.update(60)  # a resumed build's first line: its rate counts from here
            clock.now += 20
            m.update(70)
            m.update(65)  # parallel make prints percents slightly out of order: never back
            raise OSError("cmake died")
    assert stream.getvalue().splitlines() == [
        "building llama.cpp: 60%",
        "building llama.cpp: 70%, 1 min 00 s left",
        "building llama.cpp: stopped at 70% after 40 s",
    ]


def test_meter_on_a_tty_draws_rate_and_time_left_then_the_last_line(monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # rich's width for a stream that is no real terminal

    class FakeTTY(io.StringIO):
        def isatty(self):
            return True

    stream, clock = FakeTTY(), Clock()
    with meter(50_000_000, "pushing shard_000.bin", stream=stream, clock=clock) as advance:
        for _ in range(50):
            clock.now += 0.2
            advance(1_000_000)
    out = stream.getvalue()
    assert "\x1b[" in out  # drawn, not plain lines
    assert "25.0 MB of 50.0 MB, 5.0 MB/s, 5.0 s left" in out  # the bar shows the percent
    assert "pushing shard_000.bin: 50.0 MB in 10 s (5.0 MB/s)\n" in out
