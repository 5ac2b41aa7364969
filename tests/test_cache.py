"""harness.cache: the code fingerprint cache keys use (syntax, not bytes) and last-use marks."""

from __future__ import annotations

import os
import textwrap
import time

import pytest

from harness.cache import code_fingerprint, mark_used

SOURCE = '''\
"""A build recipe."""

FLAGS = ("-O2", "-DX=1")


def build(out, log):
    """Configure and build."""
    log("configuring")
    cmd = ["cmake", *FLAGS, "--target", "tool"]
    if out.exists():
        log(f"resuming in {out}")
    return run(cmd, out)
'''

# The same code as a formatter, a lint pass or a tidy-up would leave it: comments, docstrings,
# wrapping, trailing commas, a string split in two, reworded log lines.
RESTYLED = '''\
# a comment at the top
"""A build recipe, documented at length
over two lines."""

FLAGS = (
    "-O2",
    "-DX=1",  # why X
)


def build(out, log):
    # no docstring now
    log("configuring llama.cpp (this takes minutes)")
    cmd = [
        "cmake",
        *FLAGS,
        "--tar" "get",
        "tool",
    ]
    if out.exists():
        log("resuming")
    return run(cmd, out)  # the build itself
'''


def fingerprint(tmp_path, name: str, text: str, **kw) -> str:
    path = tmp_path / name
    path.write_text(text)
    return code_fingerprint([path], **kw)


def test_comments_formatting_and_docstrings_keep_the_fingerprint(tmp_path):
    base = fingerprint(tmp_path, "a.py", SOURCE, ignore_calls={"log"})
    assert fingerprint(tmp_path, "a.py", RESTYLED, ignore_calls={"log"}) == base
    # log lines count unless they are named as ignorable
    assert fingerprint(tmp_path, "a.py", RESTYLED) != fingerprint(tmp_path, "a.py", SOURCE)


def test_a_code_edit_changes_the_fingerprint(tmp_path):
    base = fingerprint(tmp_path, "a.py", SOURCE, ignore_calls={"log"})
    edits = [
        SOURCE.replace('"-O2"', '"-O3"'),  # a flag
        SOURCE.replace('"tool"', '"tool", "lib"'),  # a target
        SOURCE.replace("if out.exists():", "if not out.exists():"),  # control flow
        SOURCE.replace("return run(cmd, out)", "return run(cmd, out, check=True)"),
        SOURCE.replace('    log("configuring")\n', '    log("configuring")\n    out.mkdir()\n'),
    ]
    seen = {base}
    for edit in edits:
        assert edit != SOURCE
        seen.add(fingerprint(tmp_path, "a.py", edit, ignore_calls={"log"}))
    assert len(seen) == len(edits) + 1


def test_folders_functions_and_text_are_sources(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text(SOURCE)
    (pkg / "notes.md").write_text("not code")
    folder = code_fingerprint([pkg])
    (pkg / "notes.md").write_text("other notes")  # only *.py files count
    assert code_fingerprint([pkg]) == folder
    (pkg / "b.py").write_text("X = 1\n")  # a new module does
    assert code_fingerprint([pkg]) != folder
    # native sources (compiled into bundles) count as written: a comment edit rebuilds too
    (pkg / "pool.cc").write_text("int x;\n")
    with_native = code_fingerprint([pkg])
    assert with_native != code_fingerprint([pkg / "a.py", pkg / "b.py"])
    (pkg / "pool.cc").write_text("int x;  // why\n")
    assert code_fingerprint([pkg]) != with_native
    # an indented function (a method) is dedented before parsing; its source is all that counts
    assert code_fingerprint([textwrap.indent(SOURCE, "    ")]) == code_fingerprint([SOURCE])
    assert code_fingerprint([test_a_code_edit_changes_the_fingerprint]) != code_fingerprint(
        [test_folders_functions_and_text_are_sources]
    )


def test_mark_used_moves_the_last_use(tmp_path):
    entry = tmp_path / "bundle"
    entry.mkdir()
    old = time.time() - 86400
    os.utime(entry, (old, old))
    mark_used(entry)
    assert entry.stat().st_mtime > old + 3600
    mark_used(tmp_path / "gone")  # a removed entry is no error


def test_a_cache_that_cannot_be_written_is_a_one_line_error(monkeypatch):
    from harness.cache import cache_dir
    from harness.errors import UserError

    # /sys refuses new folders even to root, as a read-only mount would
    monkeypatch.setenv("SLM_BENCH_CACHE", "/sys/slm-bench-cache")
    with pytest.raises(
        UserError, match="cache folder /sys/slm-bench-cache/bundles cannot be written"
    ):
        cache_dir("bundles")
