"""The DocAssist prompt suite, built the way SlimLM builds its context-length sweep.

For every corpus document: encode the body with cl100k, keep the first
``CHUNKS * CHUNK_TOKENS`` = 1000 tokens, cut them into 5 chunks of 200 tokens, and let
context k (k = 1..5) be the decoded first k chunks, so its nominal length is L = 200k.
Each context is asked the three tasks (summ, qs, qa), giving 5 L x 3 tasks per document.
One more prompt per document is the paper's "question" condition (Table 1's first rows): the
qa question alone, no document, stored as task qa at L=0 (k=0), so 16 prompts per document.

Decoding a token prefix and encoding it again can differ by a token or two at the cut
(BPE merges across the boundary), so ``context_tokens`` stores the *re-encoded* count of
the context text actually sent; ``L`` stays the nominal length used to group results.

The suite is written once (``slm-bench prompts build``) and committed; runs load it, so
every run of a prompt set measures byte-identical prompts. ``prompt_set_hash`` identifies
the corpus and templates it came from.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from harness import paths
from harness.errors import UserError
from harness.prompts.corpus import Document, load_corpus
from harness.prompts.templates import TASKS, Templates, load_templates
from harness.prompts.tokenizer import cl100k, tokenizer_info
from harness.results.schema import Task

PROMPT_SET = "docassist-v1"
CHUNK_TOKENS = 200
CHUNKS = 5
MIN_DOC_TOKENS = CHUNK_TOKENS * CHUNKS
LENGTHS: tuple[int, ...] = tuple(CHUNK_TOKENS * k for k in range(1, CHUNKS + 1))  # with a document
QUESTION_L = 0  # the question-only condition: no document, qa only
REBUILD_FIX = "rebuild it with `slm-bench prompts build`"


class PromptRecord(BaseModel):
    """One prompt of the suite: a (document, task, L) cell."""

    model_config = ConfigDict(extra="forbid")

    id: str  # "<doc_id>-<task>-L<L>", e.g. "d01-summ-L200"
    doc_id: str
    task: Task
    L: int  # nominal context length in cl100k tokens (200k; 0 for the question alone)
    k: int  # number of 200-token chunks in the context (0: no document)
    context: str
    context_tokens: int  # cl100k count of `context` as stored (a fresh re-encoding)
    question: str | None = None  # qa only
    text: str  # the full prompt: the task template filled with context (and question)
    prompt_set: str = PROMPT_SET
    prompt_set_hash: str


def prompt_id(doc_id: str, task: str, length: int) -> str:
    return f"{doc_id}-{task}-L{length}"


def prompt_set_hash(docs: list[Document], templates: Templates) -> str:
    """sha256 over the corpus files and the templates file, independent of folder location.

    Each part is length-prefixed so that moving text between files changes the hash. The
    construction parameters are included because they change the prompts too.
    """
    digest = hashlib.sha256()

    def feed(label: str, text: str) -> None:
        data = text.encode("utf-8")
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    feed(
        "construction",
        f"{PROMPT_SET} chunks={CHUNKS} chunk_tokens={CHUNK_TOKENS} question_L={QUESTION_L}",
    )
    for doc in sorted(docs, key=lambda d: d.path.name):
        feed(f"corpus/{doc.path.name}", doc.raw)
    feed("templates.yaml", templates.raw)
    return digest.hexdigest()


def contexts_for(tokens: list[int]) -> list[tuple[int, str]]:
    """The ``(k, context)`` pairs cut from a document's cl100k tokens (at least 1000 of them)."""
    enc = cl100k()
    contexts = []
    for k in range(1, CHUNKS + 1):
        # decode_bytes + "ignore" drops only a multi-byte character split by the cut at the
        # end (a prefix of valid UTF-8 can be broken nowhere else) instead of inserting U+FFFD.
        text = enc.decode_bytes(tokens[: CHUNK_TOKENS * k]).decode("utf-8", errors="ignore")
        contexts.append((k, text))
    return contexts


def encode_bodies(docs: list[Document]) -> dict[str, list[int]]:
    """cl100k tokens of every body; UserError naming *all* documents shorter than 1000 tokens."""
    enc = cl100k()
    tokens = {d.doc_id: enc.encode(d.body, disallowed_special=()) for d in docs}
    short = [(d, len(tokens[d.doc_id])) for d in docs if len(tokens[d.doc_id]) < MIN_DOC_TOKENS]
    if short:
        names = ", ".join(f"{doc.path.name} ({n} tokens)" for doc, n in short)
        raise UserError(
            f"corpus documents shorter than the {MIN_DOC_TOKENS} cl100k "
            f"tokens a suite needs: {names}; fix: lengthen them (or "
            "move unfinished ones out of the corpus folder) and rebuild"
        )
    return tokens


def build_suite(
    corpus_dir: Path | str | None = None, templates: Templates | Path | str | None = None
) -> list[PromptRecord]:
    """Build every prompt of the suite: documents (sorted) x L (ascending) x tasks (summ, qs, qa);
    each document's first prompt is its question alone (qa, L=0)."""
    docs = load_corpus(corpus_dir)
    if not isinstance(templates, Templates):
        templates = load_templates(templates)
    tokens = encode_bodies(docs)
    set_hash = prompt_set_hash(docs, templates)
    enc = cl100k()
    records = []
    for doc in docs:
        records.append(
            PromptRecord(
                id=prompt_id(doc.doc_id, "qa", QUESTION_L),
                doc_id=doc.doc_id,
                task="qa",
                L=QUESTION_L,
                k=0,
                context="",
                context_tokens=0,
                question=doc.meta.question,
                text=templates.render_question(doc.meta.question),
                prompt_set_hash=set_hash,
            )
        )
        for k, context in contexts_for(tokens[doc.doc_id]):
            length = CHUNK_TOKENS * k
            context_tokens = len(enc.encode(context, disallowed_special=()))
            for task in TASKS:
                question = doc.meta.question if task == "qa" else None
                records.append(
                    PromptRecord(
                        id=prompt_id(doc.doc_id, task, length),
                        doc_id=doc.doc_id,
                        task=task,
                        L=length,
                        k=k,
                        context=context,
                        context_tokens=context_tokens,
                        question=question,
                        text=templates.render(task, context, question),
                        prompt_set_hash=set_hash,
                    )
                )
    return records


def suite_paths(out_dir: Path | str | None = None, name: str = PROMPT_SET) -> tuple[Path, Path]:
    """``(<dir>/<name>.jsonl, <dir>/<name>.meta.json)``; default dir ``<repo>/prompts``."""
    folder = Path(out_dir) if out_dir is not None else paths.prompts_dir()
    return folder / f"{name}.jsonl", folder / f"{name}.meta.json"


def suite_meta(records: list[PromptRecord]) -> dict:
    """The summary written next to the suite: name, hash, counts, tokenizer."""
    hashes = {r.prompt_set_hash for r in records}
    return {
        "name": records[0].prompt_set if records else PROMPT_SET,
        "hash": hashes.pop() if len(hashes) == 1 else sorted(hashes),
        "construction": {
            "chunks": CHUNKS,
            "chunk_tokens": CHUNK_TOKENS,
            "lengths": [QUESTION_L, *LENGTHS],
        },
        "counts": {
            "prompts": len(records),
            "docs": len({r.doc_id for r in records}),
            "by_task": dict(sorted(Counter(r.task for r in records).items())),
            "by_L": {str(k): v for k, v in sorted(Counter(r.L for r in records).items())},
        },
        "docs": sorted({r.doc_id for r in records}),
        "tokenizer": tokenizer_info(),
    }


def write_suite(
    records: list[PromptRecord], out_dir: Path | str | None = None
) -> tuple[Path, Path]:
    """Write ``<out_dir>/docassist-v1.jsonl`` (one prompt per line) and its ``.meta.json``."""
    if not records:
        raise UserError("no prompts to write; fix: add documents to the corpus and rebuild")
    jsonl, meta = suite_paths(out_dir, records[0].prompt_set)
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    # Byte-stable output (sorted docs, fixed key order, "\n" endings) keeps git diffs meaningful.
    _write_text(jsonl, "".join(r.model_dump_json() + "\n" for r in records))
    _write_text(meta, json.dumps(suite_meta(records), indent=2, ensure_ascii=False) + "\n")
    return jsonl, meta


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    tmp.replace(path)


def load_suite(path: Path | str | None = None) -> list[PromptRecord]:
    """Load and validate a built suite: a ``.jsonl`` file, or a folder holding
    ``docassist-v1.jsonl``.

    Checks every line against ``PromptRecord`` and that all prompts share one hash (and the
    meta file's, when present): a suite edited by hand or half-rebuilt is refused.
    """
    file = Path(path) if path is not None else suite_paths()[0]
    if file.is_dir():
        file = suite_paths(file)[0]
    if not file.is_file():
        raise UserError(
            f"prompt suite {file} not found; fix: build it with `slm-bench prompts build`"
        )
    records = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(PromptRecord.model_validate_json(line))
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"]
            raise UserError(
                f"{file}:{number}: not a valid prompt ({reason}); fix: {REBUILD_FIX}"
            ) from None
    if not records:
        raise UserError(f"prompt suite {file} is empty; fix: {REBUILD_FIX}")
    _check_consistent(file, records)
    return records


def _check_consistent(file: Path, records: list[PromptRecord]) -> None:
    hashes = {r.prompt_set_hash for r in records}
    if len(hashes) != 1:
        raise UserError(f"{file} mixes {len(hashes)} prompt-set hashes; fix: {REBUILD_FIX}")
    ids = Counter(r.id for r in records)
    dupes = [i for i, n in ids.items() if n > 1]
    if dupes:
        raise UserError(f"{file} repeats prompt ids ({', '.join(dupes[:3])}); fix: {REBUILD_FIX}")
    meta_file = file.with_name(file.name.removesuffix(".jsonl") + ".meta.json")
    if meta_file.is_file():
        meta_hash = json.loads(meta_file.read_text(encoding="utf-8")).get("hash")
        if meta_hash != next(iter(hashes)):
            raise UserError(
                f"{file} does not match {meta_file.name} (different hash); fix: {REBUILD_FIX}"
            )


def current_hash(corpus_dir: Path | str | None = None, templates: Path | str | None = None) -> str:
    """The hash a suite built now from the corpus and templates would carry (cheap: no
    tokenizing)."""
    return prompt_set_hash(load_corpus(corpus_dir), load_templates(templates))


def select(
    records: list[PromptRecord],
    tasks: list[str] | tuple[str, ...] | None = None,
    lengths: list[int] | tuple[int, ...] | None = None,
    docs: int | list[str] | tuple[str, ...] | None = None,
) -> list[PromptRecord]:
    """The prompts of the given tasks, lengths and documents, in suite order.

    ``None`` means all. ``docs`` is either a count (the first N documents, as in
    ``RunSpec.docs``) or a list of doc ids. Asking for something the suite lacks is a
    UserError (a typo must not silently measure nothing), and so is a selection with no
    prompt in it (summ or qs at L=0 alone: the question-only condition is qa).
    """
    available_docs = list(dict.fromkeys(r.doc_id for r in records))
    _check_subset("task", tasks, TASKS)
    _check_subset("L", lengths, sorted({r.L for r in records}))
    if isinstance(docs, int):
        if docs < 1:
            raise UserError(f"the number of documents must be at least 1 (got {docs})")
        doc_ids = set(available_docs[:docs])
    else:
        _check_subset("document", docs, available_docs)
        doc_ids = set(docs) if docs is not None else set(available_docs)
    chosen = [
        r
        for r in records
        if (tasks is None or r.task in tasks)
        and (lengths is None or r.L in lengths)
        and r.doc_id in doc_ids
    ]
    if not chosen:
        raise UserError(
            f"no prompt has task {', '.join(tasks or TASKS)} at "
            f"L={','.join(map(str, lengths or []))}; L={QUESTION_L} "
            "(the question without a document) exists for task qa only"
        )
    return chosen


def _check_subset(what: str, wanted, available) -> None:
    if wanted is None:
        return
    unknown = [w for w in wanted if w not in available]
    if unknown:
        raise UserError(
            f"unknown {what} {', '.join(map(str, unknown))}; "
            f"the suite has {', '.join(map(str, available))}"
        )
