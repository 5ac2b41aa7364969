"""Corpus documents: every real document is valid and long enough; malformed ones fail clearly."""

from pathlib import Path

import pytest

from harness import paths
from harness.errors import UserError
from harness.prompts.corpus import doc_id_for, load_corpus, load_document
from harness.prompts.suite import MIN_DOC_TOKENS
from harness.prompts.tokenizer import count_tokens

CORPUS_FILES = sorted(paths.corpus_dir().glob("*.md"))
GOOD = """---
title: "A title"
kind: report
source: "Written for a test"
licence: "CC0-1.0"
question: "What is it?"
---
# Body

Some text.
"""


def test_corpus_is_not_empty():
    assert CORPUS_FILES, f"no documents in {paths.corpus_dir()}"


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.name for p in CORPUS_FILES])
def test_real_document_is_valid_and_long_enough(path: Path):
    # An unfinished document fails here, by name, instead of being skipped.
    doc = load_document(path)
    tokens = count_tokens(doc.body)
    assert tokens >= MIN_DOC_TOKENS, (
        f"{path.name}: body has {tokens} cl100k tokens, needs >= {MIN_DOC_TOKENS}"
    )


def test_doc_id_is_the_prefix():
    assert doc_id_for(Path("d01-report.md")) == "d01"
    assert doc_id_for(Path("notes.md")) == "notes"


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_loads_front_matter_and_body(tmp_path):
    write(tmp_path, "x1-a.md", GOOD)
    (doc,) = load_corpus(tmp_path)
    assert doc.doc_id == "x1"
    assert doc.meta.licence == "CC0-1.0"
    assert doc.body.startswith("# Body")


@pytest.mark.parametrize(
    "text, message",
    [
        (GOOD.replace('licence: "CC0-1.0"\n', ""), "licence"),
        ("# no front matter\n", "no front matter"),
        (GOOD.replace("---\n# Body", "# Body"), "not closed"),
        (GOOD.replace("kind: report", "kind: [unclosed"), "not valid YAML"),
        (GOOD.replace('title: "A title"', 'title: ""'), "title"),
        (GOOD.split("# Body")[0], "no body"),
    ],
    ids=["missing-field", "no-front-matter", "unclosed", "bad-yaml", "empty-field", "no-body"],
)
def test_malformed_document_names_file_and_fix(tmp_path, text, message):
    write(tmp_path, "x1-bad.md", text)
    with pytest.raises(UserError, match=message) as info:
        load_corpus(tmp_path)
    assert "x1-bad.md" in str(info.value)
    assert "fix" in str(info.value)


def test_duplicate_doc_ids_are_refused(tmp_path):
    write(tmp_path, "x1-a.md", GOOD)
    write(tmp_path, "x1-b.md", GOOD)
    with pytest.raises(UserError, match="share the doc id 'x1'"):
        load_corpus(tmp_path)


def test_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_corpus(tmp_path / "nope")
