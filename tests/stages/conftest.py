"""Small training inputs written by the tests themselves: a text corpus and a DocAssist folder."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

TOPICS = ["budget", "release", "hiring", "security audit", "office move", "customer survey"]


def write_docassist(folder: Path, n_docs: int = 6) -> Path:
    """A DocAssist folder in H3's format (harness.docassist.format.DocRecord), split by document."""
    from harness.docassist.format import DocRecord, QAPair

    folder.mkdir(parents=True, exist_ok=True)
    splits = {"train": [], "validation": [], "test": []}
    for i in range(n_docs):
        topic = TOPICS[i % len(TOPICS)]
        text = (
            f"The team reviewed the {topic}. It was approved on "
            f"day {i + 1} by the board. The owner is Sam {i}."
        )
        split = "train" if i < n_docs - 2 else ("validation" if i == n_docs - 2 else "test")
        rec = DocRecord(
            doc_id=f"doc{i}",
            source=f"doc{i}.md",
            source_sha256=hashlib.sha256(text.encode()).hexdigest(),
            chunks=[text],
            summary=f"The {topic} was approved on day {i + 1}.",
            questions=[f"Who owns the {topic}?", "When was it approved?", "Who approved it?"],
            qa=[
                QAPair(question="Who approved it?", answer="The board."),
                QAPair(question="When?", answer=f"Day {i + 1}."),
                QAPair(question="Owner?", answer=f"Sam {i}."),
            ],
            split=split,
            annotator="test:handwritten",
        )
        splits[split].append(rec.model_dump_json())
    for split, lines in splits.items():
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def docassist_dir(tmp_path) -> Path:
    return write_docassist(tmp_path / "docassist")


@pytest.fixture
def corpus_dir(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i, topic in enumerate(TOPICS):
        (folder / f"{i}.md").write_text(
            " ".join(
                f"The {topic} note {j}: the team met, reviewed "
                "the plan and agreed on the next steps."
                for j in range(30)
            )
        )
    return folder
