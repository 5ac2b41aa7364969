import json
import shutil

import pytest

from harness.docassist.annotate import OpenAIAnnotator
from harness.docassist.build import (
    GENERIC_QUESTIONS,
    assign_splits,
    build_docassist,
    lead_paragraph,
    parse_fractions,
    pick_questions,
)
from harness.docassist.format import SPLITS, load_examples, load_split
from harness.errors import UserError
from harness.paths import corpus_dir
from harness.prompts.tokenizer import count_tokens


def test_split_is_by_document_deterministic_and_order_independent():
    ids = [f"doc{i:02d}" for i in range(20)]
    a = assign_splits(ids, (0.8, 0.1, 0.1), seed=7)
    assert a == assign_splits(list(reversed(ids)), (0.8, 0.1, 0.1), seed=7)
    assert sorted(a) == ids
    assert [sum(v == s for v in a.values()) for s in SPLITS] == [16, 2, 2]
    assert a != assign_splits(ids, (0.8, 0.1, 0.1), seed=8)
    # tiny sets still hold out a document per non-empty held-out split
    small = assign_splits(["a", "b", "c"], (0.8, 0.1, 0.1), seed=0)
    assert sorted(small.values()) == ["test", "train", "validation"]


def test_parse_fractions_and_pick_questions():
    assert parse_fractions("0.7,0.15,0.15") == (0.7, 0.15, 0.15)
    for bad in ("0.5,0.5", "0.8,0.3,0.1", "a,b,c", "-0.1,0.6,0.5"):
        with pytest.raises(UserError, match="--split"):
            parse_fractions(bad)
    text = (
        "Here are some questions:\n1. What is X?\n2) Why Y?\n"
        "- What is X?\n* How does Z work?\n5. Another?"
    )
    assert pick_questions(text) == ["What is X?", "Why Y?", "How does Z work?"]
    assert pick_questions("### 5. Water Supply\nThe document covers pumps.\n1. Who pays?") == [
        "Who pays?"
    ]


def test_build_with_openai_endpoint_resumes_from_cache(chat_server, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in sorted(p.name for p in corpus_dir().glob("*.md"))[:4]:
        shutil.copy(corpus_dir() / name, docs / name)
    (docs / "memo.txt").write_text(
        "Memo: the east gate closes at 6 pm from Monday.\nBring your badge.", encoding="utf-8"
    )

    def annotator():
        return OpenAIAnnotator(
            chat_server.url, "sk-test", "gpt-4o-mini", tmp_path / "cache", backoff_s=0.01
        )

    out = tmp_path / "da"
    manifest = build_docassist([docs], out, annotator(), seed=3, fractions=(0.6, 0.2, 0.2))
    assert len(chat_server.requests) == 5 * 5  # summ + qs + 3 qa per document
    assert manifest["counts"]["docs"] == 5 and manifest["counts"]["fallbacks"] == {
        "summary": 0,
        "questions": 0,
        "answers": 0,
    }
    assert manifest["counts"]["trimmed_loops"] == 0  # well-formed answers are kept as they are
    assert manifest["annotator"]["name"] == "openai:gpt-4o-mini" and "sk-test" not in json.dumps(
        manifest
    )
    records = [r for s in SPLITS for r in load_split(out, s)]
    assert sorted(r.doc_id for r in records) == [
        "d01-report",
        "d02-email-thread",
        "d03-meeting-notes",
        "d04-table-heavy",
        "memo",
    ]
    for r in records:
        assert len(r.questions) == 3 and len(r.qa) == 3 and r.summary
        assert all(count_tokens(c) <= 200 for c in r.chunks)
        assert r.split == manifest["sources"][r.doc_id]["split"]
    d01 = next(r for r in records if r.doc_id == "d01-report")
    assert len(d01.chunks) == 5 and d01.title.startswith("Harlow Valley")
    examples = load_examples(out, d01.split)
    qs = next(e for e in examples if e.id == "d01-report-qs")
    assert qs.target == (
        "1. What is described in the document?\n"
        "2. Which numbers does it give?\n3. Who is responsible?"
    )
    assert qs.prompt.endswith(d01.context) and "suggest three questions" in qs.prompt

    before = {s: (out / f"{s}.jsonl").read_bytes() for s in SPLITS}
    rerun = build_docassist([docs], out, annotator(), seed=3, fractions=(0.6, 0.2, 0.2))
    assert len(chat_server.requests) == 25  # every answer came from the disk cache
    assert rerun["last_build"]["annotator_cache_hits"] == 25
    assert {s: (out / f"{s}.jsonl").read_bytes() for s in SPLITS} == before
    assert rerun["files"] == manifest["files"]


def test_an_interrupted_build_resumes_without_asking_again(chat_server, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(3):
        (docs / f"n{i}.txt").write_text(
            f"Notice {i}: the east gate closes at {i + 5} pm from Monday.", encoding="utf-8"
        )

    def build():
        annotator = OpenAIAnnotator(
            chat_server.url, "sk-test", "gpt-4o-mini", tmp_path / "cache", backoff_s=0.01
        )
        return build_docassist([docs], tmp_path / "da", annotator, seed=0)

    chat_server.fail_after = 7  # the endpoint goes away in the middle of the second document
    with pytest.raises(UserError, match="HTTP 400"):
        build()
    assert len(chat_server.requests) == 8 and not (tmp_path / "da" / "manifest.json").exists()
    chat_server.fail_after = None
    manifest = build()
    # 15 answers, 7 kept from before
    assert manifest["last_build"] == {
        "annotator_requests": 8,
        "annotator_cache_hits": 7,
    }
    assert len(chat_server.requests) == 16


def test_missing_questions_are_filled_from_front_matter_then_generic_ones(chat_server, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text(
        '---\ntitle: "Gate"\nquestion: "When does the east gate close?"\n'
        "---\nThe east gate closes at 6 pm.",
        encoding="utf-8",
    )
    (docs / "b.txt").write_text("The library reopens in June.", encoding="utf-8")
    chat_server.reply = "I am not able to help with that."  # a weak annotator: no questions at all
    annotator = OpenAIAnnotator(chat_server.url, "sk-test", "m", tmp_path / "cache", backoff_s=0.01)
    manifest = build_docassist([docs], tmp_path / "da", annotator, fractions=(1.0, 0.0, 0.0))
    records = {r.doc_id: r for r in load_split(tmp_path / "da", "train")}
    assert records["a"].questions == ["When does the east gate close?", *GENERIC_QUESTIONS[:2]]
    assert records["b"].questions == list(GENERIC_QUESTIONS)
    assert manifest["counts"]["fallbacks"] == {"summary": 0, "questions": 6, "answers": 0}


def test_lead_paragraph_skips_headings_tables_and_lists():
    text = (
        "# Report\n\n| a | b |\n|---|---|\n\n- item one two three four five six seven\n\n"
        "1. Minutes of the previous meeting and matters arising\n2. Budget\n\n"
        "The authority delivered 18.6 billion litres of water in 2023. Leaks fell.\n\nMore."
    )
    assert (
        lead_paragraph(text)
        == "The authority delivered 18.6 billion litres of water in 2023. Leaks fell."
    )
    long = "Word " * 50 + "ends here. " + "More words " * 100
    assert lead_paragraph(long).endswith("ends here.")
