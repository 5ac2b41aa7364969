"""The DocAssist data format: one annotated document per JSONL line, and the task examples it
yields.

SlimLM (arXiv 2411.09944, Section 3) builds DocAssist by cutting each document into N=5
chunks of at most 200 cl100k tokens and annotating it with one summary, three suggested
questions and three question-answer pairs. A built set is a folder::

    DIR/train.jsonl  DIR/validation.jsonl  DIR/test.jsonl   # one DocRecord per line
    DIR/manifest.json                                        # counts, hashes, annotator

Training and evaluation never read the raw annotation fields directly: they ask
``task_examples(doc)`` for (task, prompt, target) triples, so the prompt a model is tuned on
is byte-identical to the one it is evaluated and benchmarked on (the project's templates,
``prompts/templates.yaml``, with the document's chunks as context).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.errors import UserError
from harness.prompts.templates import Templates, load_templates
from harness.results.schema import Task

FORMAT_VERSION = 1
SPLITS: tuple[str, ...] = ("train", "validation", "test")
Split = Literal["train", "validation", "test"]
N_CHUNKS = 5
CHUNK_TOKENS = 200
N_QUESTIONS = 3
N_QA = 3
MANIFEST = "manifest.json"
BUILD_FIX = "rebuild it with `slm-bench docassist build DOCS... --out DIR`"


class QAPair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str
    answer: str


class DocRecord(BaseModel):
    """One annotated document (a line of ``<split>.jsonl``)."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    doc_id: str  # unique within the set: the source file's stem, de-duplicated
    source: str  # the file name the document was read from
    title: str = ""
    source_sha256: str  # of the source file's bytes
    # each <= CHUNK_TOKENS cl100k tokens
    chunks: list[str] = Field(min_length=1, max_length=N_CHUNKS)
    summary: str
    questions: list[str] = Field(min_length=N_QUESTIONS, max_length=N_QUESTIONS)
    qa: list[QAPair] = Field(min_length=N_QA, max_length=N_QA)
    split: Split
    annotator: str  # e.g. "openai:gpt-4o-mini" or "local:smollm2-135m-instruct/q4f16_1"

    @field_validator("summary")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @property
    def context(self) -> str:
        """The document text the model sees: the chunks are consecutive token runs, so joined
        without a separator they give back the document's first N*200 tokens."""
        return "".join(self.chunks)


class TaskExample(BaseModel):
    """One (prompt, target) pair for training or evaluation."""

    model_config = ConfigDict(extra="forbid")

    id: str  # "<doc_id>-summ", "<doc_id>-qs", "<doc_id>-qa<i>" (i = 1..3)
    doc_id: str
    task: Task
    prompt: str  # the user message (the engine/trainer wraps it in the model's chat template)
    target: str  # what the model should answer
    question: str | None = None  # qa only


def format_questions(questions: list[str]) -> str:
    """The qs target: ``1. ...\\n2. ...\\n3. ...``."""
    return "\n".join(f"{i}. {q.strip()}" for i, q in enumerate(questions, start=1))


_NUMBERING = re.compile(r"^\s*(?:\d+\s*[.)]|[-*\u2022])\s*")


def parse_questions(text: str) -> list[str]:
    """Lines of ``text`` that look like list items or questions, numbering stripped."""
    items = []
    for line in text.splitlines():
        stripped = _NUMBERING.sub("", line).strip()
        if stripped:
            items.append(stripped)
    return items


def task_examples(doc: DocRecord, templates: Templates | None = None) -> list[TaskExample]:
    """The five examples of a document: summ, qs, and one qa per question-answer pair."""
    templates = templates or load_templates()
    context = doc.context
    examples = [
        TaskExample(
            id=f"{doc.doc_id}-summ",
            doc_id=doc.doc_id,
            task="summ",
            prompt=templates.render("summ", context),
            target=doc.summary,
        ),
        TaskExample(
            id=f"{doc.doc_id}-qs",
            doc_id=doc.doc_id,
            task="qs",
            prompt=templates.render("qs", context),
            target=format_questions(doc.questions),
        ),
    ]
    for i, pair in enumerate(doc.qa, start=1):
        examples.append(
            TaskExample(
                id=f"{doc.doc_id}-qa{i}",
                doc_id=doc.doc_id,
                task="qa",
                prompt=templates.render("qa", context, pair.question),
                target=pair.answer.strip(),
                question=pair.question,
            )
        )
    return examples


def split_path(folder: Path | str, split: str) -> Path:
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}'; use one of {', '.join(SPLITS)}")
    return Path(folder) / f"{split}.jsonl"


def load_split(folder: Path | str, split: str) -> list[DocRecord]:
    """Read and validate ``<folder>/<split>.jsonl``."""
    file = split_path(folder, split)
    if not file.is_file():
        raise UserError(
            f"DocAssist split {file} not found; fix: pass the folder "
            f"`slm-bench docassist build` wrote, or {BUILD_FIX}"
        )
    records = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(DocRecord.model_validate_json(line))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"])) or "line"
            raise UserError(
                f"{file}:{number}: not a DocAssist record "
                f"({where}: {first['msg']}); fix: {BUILD_FIX}"
            ) from None
    return records


def load_examples(
    folder: Path | str, split: str, templates: Templates | None = None
) -> list[TaskExample]:
    """All task examples of a split, in file order."""
    templates = templates or load_templates()
    return [ex for doc in load_split(folder, split) for ex in task_examples(doc, templates)]
