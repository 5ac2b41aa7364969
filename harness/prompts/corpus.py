"""The source documents of the prompt suite: Markdown files with YAML front matter.

Each ``prompts/corpus/<doc_id>-<slug>.md`` looks like::

    ---
    title: "..."
    kind: report
    source: "Written for slm-bench"
    licence: "CC0-1.0"
    question: "A question the document answers (used by the qa task)"
    ---
    # Markdown body ...

The doc id is the file name up to the first ``-`` (``d01-report.md`` -> ``d01``), so prompt
ids stay short and stable when a document's slug is renamed.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from harness import paths
from harness.errors import UserError

FRONT_MATTER_FIX = (
    "give the file a front matter block (--- lines) with title, kind, source, licence and question"
)


class DocMeta(BaseModel):
    """The required front matter fields; unknown extra keys are kept."""

    model_config = ConfigDict(extra="allow")

    title: str
    kind: str
    source: str
    licence: str
    question: str

    @field_validator("title", "kind", "source", "licence", "question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()


class Document(BaseModel):
    """One corpus document: id, validated front matter, body, and the raw file text."""

    doc_id: str
    path: Path
    meta: DocMeta
    body: str
    raw: str  # the file as read (line endings normalized); hashed into the prompt-set hash


def doc_id_for(path: Path) -> str:
    """``d01-report.md`` -> ``d01``; a name without ``-`` is used whole."""
    return path.stem.split("-", 1)[0]


def split_front_matter(text: str, name: str) -> tuple[dict, str]:
    """Split ``---\\nYAML\\n---\\nbody`` into (mapping, body); UserError naming ``name`` if
    malformed."""
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        raise UserError(
            f"{name}: no front matter (the file must start "
            f"with a --- line); fix: {FRONT_MATTER_FIX}"
        )
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise UserError(
            f"{name}: front matter is not closed by a --- line; fix: add the closing --- line"
        ) from None
    try:
        data = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 2})" if where is not None else ""
        raise UserError(
            f"{name}: front matter is not valid YAML{line}; "
            "fix: quote values that contain ':' or '#'"
        ) from None
    if not isinstance(data, dict):
        raise UserError(
            f"{name}: front matter is not a mapping of keys to values; fix: {FRONT_MATTER_FIX}"
        )
    return data, "\n".join(lines[end + 1 :]).strip()


def load_document(path: Path) -> Document:
    """Read and validate one corpus file."""
    name = _display(path)
    try:
        raw = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError:
        raise UserError(f"{name}: not UTF-8 text; fix: save the file as UTF-8") from None
    data, body = split_front_matter(raw, name)
    try:
        meta = DocMeta.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'front matter'}: {e['msg']}" for e in exc.errors()
        )
        raise UserError(f"{name}: bad front matter ({problems}); fix: {FRONT_MATTER_FIX}") from None
    if not body:
        raise UserError(
            f"{name}: the document has no body after its front matter; fix: add the Markdown text"
        )
    return Document(doc_id=doc_id_for(path), path=path, meta=meta, body=body, raw=raw)


def load_corpus(corpus_dir: Path | str | None = None) -> list[Document]:
    """All ``*.md`` documents of ``corpus_dir`` (default ``<repo>/prompts/corpus``), sorted by file
    name."""
    folder = Path(corpus_dir) if corpus_dir is not None else paths.corpus_dir()
    if not folder.is_dir():
        raise UserError(
            f"corpus folder {folder} does not exist; fix: "
            "pass --corpus DIR pointing at the *.md documents"
        )
    files = sorted(p for p in folder.glob("*.md") if not p.name.startswith("."))
    if not files:
        raise UserError(
            f"corpus folder {folder} has no *.md documents; "
            "fix: add documents or pass another --corpus"
        )
    docs = [load_document(p) for p in files]
    _check_unique_ids(docs)
    return docs


def _check_unique_ids(docs: list[Document]) -> None:
    seen: dict[str, Path] = {}
    for doc in docs:
        if doc.doc_id in seen:
            raise UserError(
                f"{_display(doc.path)} and {_display(seen[doc.doc_id])} share the doc id "
                f"'{doc.doc_id}'; fix: give each file a distinct prefix before the first '-'"
            )
        seen[doc.doc_id] = doc.path


def _display(path: Path) -> str:
    """A path relative to the repository where possible: shorter, and what the user typed."""
    try:
        return str(path.resolve().relative_to(paths.REPO_ROOT))
    except ValueError:
        return str(path)
