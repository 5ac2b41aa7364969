"""The run journal: atomic run.json, durable records, resume, corruption and full disks."""

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.results import journal as journal_module
from harness.results.journal import RECORDS_FILE, Journal, load
from harness.results.schema import Record, RunInfo, RunSpec

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_info(**spec_changes) -> RunInfo:
    return RunInfo(
        run_id="run-1",
        spec=RunSpec(model="m", quantization="q4", **spec_changes),
        prompt_set_hash="abc",
    )


def record(i: int, **changes) -> Record:
    values = dict(
        model="m",
        quantization="q4",
        engine="tvm",
        prompt_id=f"d01-summ-L200-{i}",
        task="summ",
        L=200,
        input_tokens=210,
        output_tokens=32,
        prefill_s=0.1,
        ttft_s=0.11,
        decode_s=0.5,
        runtime_s=0.61,
        itps=2100.0,
        otps=62.0,
        repeat=i,
    )
    values.update(changes)
    return Record(**values)


def test_run_info_roundtrip(tmp_path):
    j = Journal(tmp_path / "run")
    assert j.read_run_info() is None
    stored = j.write_run_info(run_info())
    assert j.read_run_info() == stored
    assert not list((tmp_path / "run").glob(".*tmp"))  # the temp file was renamed away


def test_resume_with_same_spec_keeps_run_id(tmp_path):
    j = Journal(tmp_path)
    first = j.write_run_info(run_info())
    again = j.write_run_info(run_info().model_copy(update={"run_id": "run-2"}))
    assert again.run_id == first.run_id == "run-1"
    assert again.created == first.created
    assert len(again.resumed) == 1


def test_rerun_with_a_different_spec_names_the_difference(tmp_path):
    j = Journal(tmp_path)
    j.write_run_info(run_info())
    with pytest.raises(UserError, match=r"repeats: 5 -> 3.*new --out"):
        j.write_run_info(run_info(repeats=3))
    changed_prompts = run_info().model_copy(update={"prompt_set_hash": "def"})
    with pytest.raises(UserError, match="prompt_set_hash"):
        j.write_run_info(changed_prompts)


def test_append_and_load(tmp_path):
    j = Journal(tmp_path)
    for i in range(3):
        j.append(record(i))
    records, problems = j.load()
    assert [r.repeat for r in records] == [0, 1, 2]
    assert problems == []
    assert load(tmp_path / "empty") == ([], [])


def test_corrupt_line_in_the_middle_is_reported_and_the_rest_loads(tmp_path):
    j = Journal(tmp_path)
    for i in range(5):
        j.append(record(i))
    lines = (tmp_path / RECORDS_FILE).read_text().splitlines(keepends=True)
    lines[1] = '{"model": "m", "truncated\n'
    lines[3] = '{"model": "m"}\n'  # valid JSON, not a valid Record
    (tmp_path / RECORDS_FILE).write_text("".join(lines))
    records, problems = j.load()
    assert [r.repeat for r in records] == [0, 2, 4]
    assert len(problems) == 2
    assert problems[0].startswith("records.jsonl:2: not valid JSON")
    assert problems[1].startswith("records.jsonl:4: invalid record")


def test_append_after_a_half_written_line_starts_a_new_line(tmp_path):
    j = Journal(tmp_path)
    j.append(record(0))
    with open(tmp_path / RECORDS_FILE, "a") as fh:
        fh.write('{"model": "m", "quanti')  # what a crash mid-write leaves
    j.append(record(1))
    records, problems = j.load()
    assert [r.repeat for r in records] == [0, 1]
    assert problems == ["records.jsonl:2: not valid JSON"]


def test_half_written_last_line_is_called_that(tmp_path):
    j = Journal(tmp_path)
    j.append(record(0))
    with open(tmp_path / RECORDS_FILE, "a") as fh:
        fh.write('{"model": "m", "quanti')
    _, problems = j.load()
    assert problems == [
        "records.jsonl:2: half-written line, the run was interrupted while writing it"
        " (not valid JSON)"
    ]


def test_done_keys_skip_warmups_and_failures(tmp_path):
    j = Journal(tmp_path)
    j.append(record(0))
    j.append(record(1, warmup=True))
    j.append(record(2, status="failed", error="OOM"))
    j.append(record(3, status="skipped", input_tokens=None, itps=None))
    assert j.done_keys() == {record(0).key, record(3).key}


def test_full_disk_is_a_user_error_and_keeps_earlier_lines(tmp_path, monkeypatch):
    j = Journal(tmp_path)
    j.append(record(0))
    before = (tmp_path / RECORDS_FILE).read_bytes()

    def half_then_full(fh, data):
        fh.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_module, "_write_all", half_then_full)
    with pytest.raises(UserError, match=r"no space left.*records\.jsonl.*free disk space"):
        j.append(record(1))
    assert (tmp_path / RECORDS_FILE).read_bytes() == before  # the partial line was cut off
    monkeypatch.undo()
    j.append(record(1))
    assert [r.repeat for r in j.load()[0]] == [0, 1]


def test_full_disk_while_writing_run_json_keeps_the_old_file(tmp_path, monkeypatch):
    j = Journal(tmp_path)
    j.write_run_info(run_info())
    before = j.run_path.read_text()

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_module.os, "replace", no_space)
    with pytest.raises(UserError, match=r"run\.json"):
        j.write_run_info(run_info())
    assert j.run_path.read_text() == before
    assert not list(tmp_path.glob(".*tmp"))


WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[2])
    from harness.results.journal import Journal
    from harness.results.schema import Record
    journal = Journal(sys.argv[1])
    i = 0
    while True:
        journal.append(Record(model="m", quantization="q4", engine="tvm", prompt_id=f"p{i}",
                              task="qa", L=200, input_tokens=200, output_tokens=8, prefill_s=0.1,
                              ttft_s=0.1, runtime_s=0.2, itps=2000.0, output_text="x" * 2000))
        print(i, flush=True)  # only after append returned: this record is durable
        i += 1
    """
)


def test_sigkill_mid_run_keeps_every_finished_record(tmp_path):
    out = tmp_path / "run"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(out), str(REPO_ROOT)], stdout=subprocess.PIPE, text=True
    )
    try:
        finished = [int(writer.stdout.readline()) for _ in range(30)]
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=10)
        writer.stdout.close()
    assert writer.returncode == -signal.SIGKILL

    records, problems = load(out)
    loaded = {r.prompt_id for r in records}
    assert {f"p{i}" for i in finished} <= loaded
    assert len(problems) <= 1  # at most the line being written when the kill landed
    assert all("half-written" in p for p in problems)

    # A rerun measures only what is missing: every finished record counts as done.
    journal = Journal(out)
    done = journal.done_keys()
    last = max(int(r.prompt_id[1:]) for r in records)
    # default threads and cores
    planned = [("m", "q4", "local", f"p{i}", 0, False, None, None) for i in range(last + 10)]
    todo = [key for key in planned if key not in done]
    assert all(key[3] not in {f"p{i}" for i in finished} for key in todo)
    assert len(todo) == len(planned) - len(loaded)
    journal.append(
        Record(
            model="m",
            quantization="q4",
            engine="tvm",
            prompt_id="after-crash",
            task="qa",
            L=200,
            status="skipped",
        )
    )
    assert "after-crash" in {r.prompt_id for r in load(out)[0]}
