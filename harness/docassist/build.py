"""Build a DocAssist set: documents -> 5 cl100k chunks -> annotations -> split JSONL + manifest.

Each document is asked the project's three task prompts (``prompts/templates.yaml``) over its
chunks: the summ prompt gives the summary, the qs prompt the three suggested questions, and
the qa prompt, once per suggested question, the three answers. That is the study's output
shape (1 summary, 3 questions, 3 QA pairs per document; arXiv 2411.09944, Section 3) and
makes the training targets answers to exactly the prompts the model is evaluated and
benchmarked with.

A weak annotator (a 135M local model) loops and does not always list three questions. Its
loops are trimmed (``harness.docassist.clean``; counted as ``trimmed_loops``), and missing
questions are filled with the question a Markdown document states in its front matter (the
project's corpus has one each), then from a fixed list of generic ones; every fill is counted
in the manifest (``fallbacks``) so nobody mistakes them for the annotator's.

Splits are by document and depend only on the document ids and the seed, never on the
annotator or the order annotations arrive in.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from pathlib import Path

from harness.docassist.annotate import Annotator
from harness.docassist.chunking import chunk_text
from harness.docassist.clean import trim_repetition
from harness.docassist.documents import SourceDoc, read_documents
from harness.docassist.format import (
    CHUNK_TOKENS,
    FORMAT_VERSION,
    MANIFEST,
    N_CHUNKS,
    N_QUESTIONS,
    SPLITS,
    DocRecord,
    QAPair,
    parse_questions,
    split_path,
    task_examples,
)
from harness.errors import UserError
from harness.progress import progress
from harness.prompts.templates import Templates, load_templates
from harness.prompts.tokenizer import tokenizer_info

GENERIC_QUESTIONS = (
    "What is the main topic of this document?",
    "What are the key facts or figures in this document?",
    "Who is this document written for, and what should they do next?",
)


def parse_fractions(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` -> (train, validation, test); UserError unless three non-negative parts
    summing to 1."""
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or any(p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:
        raise UserError(
            f"--split '{text}' must be three non-negative fractions "
            "train,validation,test summing to 1; fix: e.g. --split 0.8,0.1,0.1"
        )
    return parts  # type: ignore[return-value]


def assign_splits(
    doc_ids: list[str], fractions: tuple[float, float, float], seed: int
) -> dict[str, str]:
    """doc_id -> split. Shuffled by ``seed`` from the sorted ids; rounding favours held-out splits
    having at least one document when their fraction is non-zero and there are enough documents."""
    ids = sorted(doc_ids)
    random.Random(seed).shuffle(ids)
    n = len(ids)
    n_test = round(n * fractions[2])
    n_val = round(n * fractions[1])
    if fractions[2] > 0 and n_test == 0 and n >= 3:
        n_test = 1
    if fractions[1] > 0 and n_val == 0 and n >= 3:
        n_val = 1
    n_train = max(n - n_test - n_val, 0)
    sizes = {"train": n_train, "validation": n_val, "test": n - n_train - n_val}
    out, start = {}, 0
    for split in SPLITS:
        for doc_id in ids[start : start + sizes[split]]:
            out[doc_id] = split
        start += sizes[split]
    return out


def pick_questions(text: str) -> list[str]:
    """Up to three distinct questions (items ending in '?') from an annotator's qs answer.

    Only real questions count: a heading or a sentence the model wrote instead would turn
    into a qa prompt that asks nothing, so it is replaced by a (counted) generic question."""
    picked: list[str] = []
    for q in (item for item in parse_questions(text) if item.endswith("?")):
        if q.lower() not in {p.lower() for p in picked} and len(q) > 3:
            picked.append(q)
        if len(picked) == N_QUESTIONS:
            break
    return picked


def lead_paragraph(text: str, limit: int = 500) -> str:
    """The document's first paragraph of prose (not a heading, table or list), cut at a sentence
    end within ``limit`` characters: the summary of last resort."""
    for block in re.split(r"\n\s*\n", text):
        block = " ".join(block.split())
        if len(block.split()) >= 8 and not re.match(r"[#|*>-]|\d+[.)]\s", block):
            if len(block) <= limit:
                return block
            cut = block[:limit]
            end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
            return cut[: end + 1] if end > 0 else cut.rstrip() + "\u2026"
    return " ".join(text.split())[:limit]


def annotate_document(
    doc: SourceDoc, chunks: list[str], split: str, annotator: Annotator, templates: Templates
) -> tuple[DocRecord, Counter]:
    """The DocRecord of one document and what had to be repaired: fallbacks by field, and
    ``trimmed``, the answers cut back from a repetition loop (``harness.docassist.clean``)."""
    context = "".join(chunks)
    fallbacks: Counter = Counter()

    def ask(prompt: str) -> str:
        raw = annotator.complete(prompt).strip()
        answer = trim_repetition(raw)
        fallbacks["trimmed"] += answer != raw
        return answer

    summary = ask(templates.render("summ", context))
    if len(re.findall(r"[^\W\d_]{2,}", summary)) < 3:  # empty, or only markup ("#### 5.")
        summary = lead_paragraph(context)
        fallbacks["summary"] += 1
    questions = pick_questions(ask(templates.render("qs", context)))
    # fill from the document's own question (front matter) before the generic ones
    for generic in ([doc.question] if doc.question else []) + list(GENERIC_QUESTIONS):
        if len(questions) == N_QUESTIONS:
            break
        if generic.lower() not in {q.lower() for q in questions}:
            questions.append(generic)
            fallbacks["questions"] += 1
    qa = []
    for question in questions:
        answer = ask(templates.render("qa", context, question))
        if not answer:
            answer = "The document does not say."
            fallbacks["answers"] += 1
        qa.append(QAPair(question=question, answer=answer))
    record = DocRecord(
        doc_id=doc.doc_id,
        source=doc.source,
        title=doc.title,
        source_sha256=doc.sha256,
        chunks=chunks,
        summary=summary,
        questions=questions,
        qa=qa,
        split=split,
        annotator=annotator.name,
    )
    return record, fallbacks


def build_docassist(
    inputs: list[Path | str],
    out_dir: Path | str,
    annotator: Annotator,
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    templates: Templates | None = None,
) -> dict:
    """Build the set into ``out_dir``; returns the manifest (also written to ``manifest.json``)."""
    templates = templates or load_templates()
    docs = read_documents(inputs)
    chunked = {d.doc_id: chunk_text(d.text) for d in docs}
    splits = assign_splits([d.doc_id for d in docs], fractions, seed)
    records: list[DocRecord] = []
    fallbacks: Counter = Counter()
    with progress(len(docs), "annotating") as bar:
        for doc in docs:
            record, used = annotate_document(
                doc, chunked[doc.doc_id], splits[doc.doc_id], annotator, templates
            )
            records.append(record)
            fallbacks += used
            bar.advance(doc.doc_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    file_hashes = {}
    for split in SPLITS:
        lines = "".join(
            r.model_dump_json() + "\n"
            for r in sorted(records, key=lambda r: r.doc_id)
            if r.split == split
        )
        path = split_path(out, split)
        _write_text(path, lines)
        file_hashes[path.name] = hashlib.sha256(lines.encode("utf-8")).hexdigest()
    manifest = {
        "format_version": FORMAT_VERSION,
        "annotator": annotator.describe(),
        "seed": seed,
        "split_fractions": dict(zip(SPLITS, fractions, strict=True)),
        "construction": {
            "chunks": N_CHUNKS,
            "chunk_tokens": CHUNK_TOKENS,
            "tokenizer": tokenizer_info(),
            "templates_sha256": hashlib.sha256(templates.raw.encode("utf-8")).hexdigest(),
        },
        "counts": {
            "docs": len(records),
            "docs_by_split": {s: sum(r.split == s for r in records) for s in SPLITS},
            "examples_by_split": {
                s: sum(len(task_examples(r, templates)) for r in records if r.split == s)
                for s in SPLITS
            },
            "examples_by_task": dict(
                sorted(
                    Counter(e.task for r in records for e in task_examples(r, templates)).items()
                )
            ),
            "fallbacks": {k: fallbacks[k] for k in ("summary", "questions", "answers")},
            "trimmed_loops": fallbacks["trimmed"],
        },
        # this invocation only (a resumed build answers from the cache): not a property of the data
        "last_build": {
            "annotator_requests": annotator.asked,
            "annotator_cache_hits": annotator.cache_hits,
        },
        "files": file_hashes,
        "sources": {
            d.doc_id: {"source": d.source, "sha256": d.sha256, "split": splits[d.doc_id]}
            for d in docs
        },
    }
    _write_text(out / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    tmp.replace(path)
