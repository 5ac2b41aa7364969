"""The on-disk journal of a run: ``run.json`` plus ``records.jsonl``, crash-safe and resumable.

A run directory holds:

- ``run.json``: the ``RunInfo`` (spec, device, versions, bundle), written atomically
  (temp file + ``os.replace``), so it is either the old or the new version, never half.
- ``records.jsonl``: one ``Record`` per line, appended, flushed and fsync'd per record.
  A crash (SIGKILL, power loss) can at worst leave the last line half-written; ``load``
  reports such a line as a problem and keeps every other record.

Resuming: rerun the same command into the same directory. ``write_run_info`` refuses a
different spec (results measured under two specs must not mix), and ``done_keys`` tells the
orchestrator which measurements already exist::

    journal = Journal(out_dir)
    info = journal.write_run_info(info)      # keeps the original run_id on resume
    done = journal.done_keys()
    for ...:
        if record_key not in done: journal.append(measure(...))
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from pydantic import ValidationError

from harness.errors import UserError
from harness.results.schema import Record, RunInfo, now_rfc3339

RUN_FILE = "run.json"
RECORDS_FILE = "records.jsonl"
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
# Statuses that count as finished; a failed cell is measured again on resume.
DONE_STATUSES = ("ok", "skipped")


class Journal:
    """Reads and writes one run directory (created on first write)."""

    def __init__(self, out_dir: Path | str):
        self.out_dir = Path(out_dir)

    @property
    def run_path(self) -> Path:
        return self.out_dir / RUN_FILE

    @property
    def records_path(self) -> Path:
        return self.out_dir / RECORDS_FILE

    # -- run.json ---------------------------------------------------------------------

    def read_run_info(self) -> RunInfo | None:
        """The stored RunInfo, or None when the directory has none yet."""
        return read_run_info(self.out_dir)

    def write_run_info(self, info: RunInfo) -> RunInfo:
        """Store ``info`` and return the RunInfo now in effect.

        On a resume (run.json exists with the same spec and prompt set) the original
        ``run_id`` and ``created`` are kept, so all records of the run share one id, and the
        time of this resume is appended to ``resumed``. A different spec is a UserError.
        """
        existing = self.read_run_info()
        if existing is not None:
            differences = run_differences(existing, info)
            if differences:
                raise UserError(
                    f"{self.out_dir} already holds a run with a different spec"
                    f" ({'; '.join(differences)}); fix: pass a new --out directory, or rerun with"
                    " the original options to resume it"
                )
            resumed = list(getattr(existing, "resumed", None) or []) + [now_rfc3339()]
            info = info.model_copy(
                update={"run_id": existing.run_id, "created": existing.created, "resumed": resumed}
            )
        self.out_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.run_path, info.model_dump_json(indent=2) + "\n")
        return info

    # -- records.jsonl ----------------------------------------------------------------

    def append(self, record: Record) -> None:
        """Append one record as a JSON line, durable (fsync) before returning.

        If an earlier crash left a half-written last line, it is first terminated with a
        newline so the new record starts on a line of its own. On a full disk the partial
        write is cut off again and a UserError names the file; earlier lines are untouched.
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        data = (record.model_dump_json() + "\n").encode("utf-8")
        # Unbuffered: a failed write must not linger in a buffer that close() retries.
        with open(self.records_path, "a+b", buffering=0) as fh:
            size = fh.seek(0, os.SEEK_END)
            if size and _last_byte(fh, size) != b"\n":
                data = b"\n" + data
            try:
                _write_all(fh, data)
                os.fsync(fh.fileno())
            except OSError as exc:
                if exc.errno not in _DISK_FULL:
                    raise
                fh.truncate(size)
                raise UserError(
                    f"no space left on the device while writing {self.records_path}; fix: free"
                    " disk space and rerun the same command (records already written are kept)"
                ) from None

    def load(self) -> tuple[list[Record], list[str]]:
        """All valid records, and a problem string per unreadable line (see ``load``)."""
        return load(self.out_dir)

    def done_keys(self, pooled: bool = False) -> set[tuple]:
        """``Record.key`` (``pool_key`` when ``pooled``) of every finished measurement:
        non-warmup, status ok or skipped."""
        records, _ = self.load()
        return done_keys(records, pooled)


def done_keys(records: list[Record], pooled: bool = False) -> set[tuple]:
    """Keys a resumed run must not measure again (warmups are redone: they warm *this* process)."""
    done = [r for r in records if not r.warmup and r.status in DONE_STATUSES]
    return {r.pool_key if pooled else r.key for r in done}


def read_run_info(out_dir: Path | str) -> RunInfo | None:
    """Parse ``<out_dir>/run.json``; None if absent, UserError if unreadable."""
    path = Path(out_dir) / RUN_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return RunInfo.model_validate_json(text)
    except ValidationError as exc:
        raise UserError(
            f"{path} is not a valid run description ({_reason(exc)}); "
            "fix: restore it, or measure into a new --out directory"
        ) from None


def load(out_dir: Path | str) -> tuple[list[Record], list[str]]:
    """Read ``<out_dir>/records.jsonl``.

    Returns ``(records, problems)``: every valid line becomes a Record; a line that is
    half-written, not JSON, or not a valid Record becomes ``"records.jsonl:LINE: reason"``
    and the rest still loads. A directory without the file yields ``([], [])``.
    """
    path = Path(out_dir) / RECORDS_FILE
    records: list[Record] = []
    problems: list[str] = []
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return records, problems
    with fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                records.append(Record.model_validate_json(raw))
            except ValidationError as exc:
                reason = _reason(exc)
                if not raw.endswith(b"\n"):
                    reason = (
                        f"half-written line, the run was interrupted while writing it ({reason})"
                    )
                problems.append(f"{RECORDS_FILE}:{number}: {reason}")
    return records, problems


def run_differences(old: RunInfo, new: RunInfo) -> list[str]:
    """Human-readable ``field: old -> new`` for everything that makes two runs incomparable."""
    differences = []
    old_spec, new_spec = old.spec.model_dump(exclude_unset=True), new.spec.model_dump()
    fields = type(new.spec).model_fields
    for name in sorted(set(old_spec) | set(new_spec)):
        # a field the stored spec predates counts at its default
        before = (
            old_spec[name]
            if name in old_spec
            else (fields[name].default if name in fields else None)
        )
        if before != new_spec.get(name):
            differences.append(f"{name}: {before!r} -> {new_spec.get(name)!r}")
    for name in ("prompt_set", "prompt_set_hash"):
        before, after = getattr(old, name), getattr(new, name)
        if before and after and before != after:
            differences.append(f"{name}: {before[:12]} -> {after[:12]}")
    return differences


def _reason(exc: ValidationError) -> str:
    error = exc.errors()[0]
    if error["type"] == "json_invalid":
        return "not valid JSON"
    where = ".".join(map(str, error["loc"]))
    return f"invalid record ({where + ': ' if where else ''}{error['msg']})"


def _last_byte(fh, size: int) -> bytes:
    fh.seek(size - 1)
    return fh.read(1)


def _write_all(fh, data: bytes) -> None:
    """Write every byte through an unbuffered file (a raw write may be partial)."""
    view = memoryview(data)
    while view:
        written = fh.write(view)
        view = view[written:]


def _atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so readers see the old or the new file, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in _DISK_FULL:
            raise UserError(
                f"no space left on the device while writing {path}; fix: free disk space and rerun"
            ) from None
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable too; not every platform can open a directory, which is fine."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
