"""Pre-training text: plain text / Markdown files, JSONL, and SlimPajama's ``.jsonl.zst`` shards.

A corpus is a list of paths (files or folders, searched recursively). Documents come out in a
fixed order (sorted paths, file order within a file) so the same corpus gives the same token
stream, and each file's SHA-256 goes into ``provenance.json``.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

from harness.errors import UserError

TEXT_SUFFIXES = (".txt", ".md")
JSONL_SUFFIXES = (".jsonl", ".jsonl.zst")


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".jsonl.zst"):
        return "zst"
    if name.endswith(".jsonl"):
        return "jsonl"
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    return None


def corpus_files(paths: list[str | Path]) -> list[Path]:
    """Every readable corpus file under ``paths``, sorted."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and _kind(f))
        elif p.is_file():
            if not _kind(p):
                raise UserError(
                    f"{p}: not a corpus file; use .txt/.md, .jsonl or SlimPajama .jsonl.zst"
                )
            files.append(p)
        else:
            raise UserError(
                f"corpus path {p} does not exist; pass files or folders of"
                " .txt/.md/.jsonl/.jsonl.zst"
            )
    if not files:
        raise UserError(
            f"no corpus files under {', '.join(map(str, paths))}; add .txt/.md, .jsonl or"
            " .jsonl.zst files"
        )
    return files


def _jsonl_texts(lines: Iterator[str], path: Path) -> Iterator[str]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            text = json.loads(line).get("text")
        except (json.JSONDecodeError, AttributeError):
            raise UserError(
                f'{path}:{number}: not a JSON object; each line needs a "text" field (SlimPajama'
                " format)"
            ) from None
        if not isinstance(text, str):
            raise UserError(
                f'{path}:{number}: no string "text" field; each line needs one (SlimPajama format)'
            )
        yield text


def read_file(path: Path) -> Iterator[str]:
    """The documents of one file."""
    kind = _kind(path)
    if kind == "text":
        yield path.read_text(encoding="utf-8", errors="replace")
    elif kind == "jsonl":
        with open(path, encoding="utf-8") as f:
            yield from _jsonl_texts(f, path)
    elif kind == "zst":
        import zstandard

        try:
            with open(path, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as reader:
                yield from _jsonl_texts(io.TextIOWrapper(reader, encoding="utf-8"), path)
        except zstandard.ZstdError as exc:
            raise UserError(
                f"{path}: not a readable zstd file ({exc}); re-download the shard"
            ) from None


def iter_documents(paths: list[str | Path]) -> Iterator[str]:
    for f in corpus_files(paths):
        yield from read_file(f)


def file_hashes(files: list[Path]) -> dict[str, str]:
    """name -> sha256 of the bytes, for provenance."""
    out = {}
    for f in files:
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        out[str(f)] = h.hexdigest()
    return out


def corpus_hash(hashes: dict[str, str]) -> str:
    """One digest of the whole corpus (file names and contents)."""
    return hashlib.sha256(
        json.dumps(sorted((Path(k).name, v) for k, v in hashes.items())).encode()
    ).hexdigest()
