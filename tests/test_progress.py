"""Progress: plain lines without ANSI codes when stderr is not a terminal."""

import io

from harness.progress import PlainProgress, progress


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
