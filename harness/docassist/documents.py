"""Read source documents for DocAssist: plain text, Markdown, and PDF (text layer via pypdf).

Markdown files may carry YAML front matter (the project's corpus does); it is metadata, not
document text, so it is dropped and its ``title`` and ``question`` kept. A PDF is read page by
page with pypdf's text extraction; a PDF without a text layer (a scan) is refused with the fix,
since OCR is out of scope.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from pydantic import BaseModel

from harness.errors import UserError
from harness.prompts.corpus import split_front_matter

SUFFIXES = (".txt", ".md", ".markdown", ".pdf")


class SourceDoc(BaseModel):
    """A document as read: its text and where it came from."""

    doc_id: str
    source: str  # file name
    title: str
    text: str
    sha256: str  # of the file's bytes
    question: str | None = None  # a question the document answers, from Markdown front matter


def collect_files(paths: list[Path | str]) -> list[Path]:
    """The supported files named by ``paths`` (folders searched recursively), sorted, unique."""
    found: set[Path] = set()
    for entry in map(Path, paths):
        if entry.is_dir():
            found.update(
                p
                for p in entry.rglob("*")
                if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith(".")
            )
        elif entry.is_file():
            if entry.suffix.lower() not in SUFFIXES:
                raise UserError(
                    f"{entry}: unsupported document type "
                    f"'{entry.suffix}'; fix: give .txt, .md or .pdf files"
                )
            found.add(entry)
        else:
            raise UserError(f"{entry}: no such file or folder; fix: check the path")
    if not found:
        raise UserError(
            f"no .txt, .md or .pdf documents in {', '.join(map(str, paths))}; "
            "fix: point at files or folders holding documents"
        )
    return sorted(found, key=lambda p: (p.name, str(p)))


def read_document(path: Path) -> SourceDoc:
    """Read one file into a SourceDoc (doc_id = the file stem; made unique by the caller)."""
    data = path.read_bytes()
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        title, text = _read_pdf(path)
        question = None
    else:
        try:
            raw = data.decode("utf-8").replace("\r\n", "\n")
        except UnicodeDecodeError:
            raise UserError(f"{path}: not UTF-8 text; fix: save the file as UTF-8") from None
        title, text, question = (
            _read_markdown(raw, path) if suffix in (".md", ".markdown") else ("", raw.strip(), None)
        )
    if not text.strip():
        raise UserError(
            f"{path}: the document has no text; fix: remove it "
            "or give it content (a scanned PDF needs OCR first)"
        )
    return SourceDoc(
        doc_id=_slug(path.stem),
        source=path.name,
        title=title or _first_line(text),
        text=text,
        sha256=hashlib.sha256(data).hexdigest(),
        question=question,
    )


def read_documents(paths: list[Path | str]) -> list[SourceDoc]:
    """All documents under ``paths``, with doc ids made unique (``name``, ``name-2``, ...)."""
    docs = [read_document(p) for p in collect_files(paths)]
    seen: dict[str, int] = {}
    for doc in docs:
        count = seen.get(doc.doc_id, 0) + 1
        seen[doc.doc_id] = count
        if count > 1:
            doc.doc_id = f"{doc.doc_id}-{count}"
    return docs


def _read_markdown(raw: str, path: Path) -> tuple[str, str, str | None]:
    """(title, body, question) of a Markdown file; the project's corpus keeps title and question
    in front matter."""
    if raw.lstrip().startswith("---"):
        meta, body = split_front_matter(raw.lstrip(), str(path))
        question = str(meta.get("question") or "").strip() or None
        return str(meta.get("title") or ""), body, question
    return "", raw.strip(), None


def _read_pdf(path: Path) -> tuple[str, str]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        pages = [page.extract_text() or "" for page in reader.pages]
        title = (reader.metadata.title if reader.metadata else None) or ""
    except (PdfReadError, ValueError, KeyError) as exc:
        raise UserError(
            f"{path}: cannot read the PDF ({exc}); fix: re-export "
            "it as a standard PDF or convert it to text"
        ) from None
    return str(title).strip(), "\n\n".join(p.strip() for p in pages if p.strip())


def _slug(stem: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-")
    return slug or "doc"


def _first_line(text: str) -> str:
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    return line.lstrip("# ").strip()[:120]
