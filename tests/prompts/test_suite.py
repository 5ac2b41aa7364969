"""The SlimLM construction on the real corpus, with real cl100k counts."""

import json
import shutil
from pathlib import Path

import pytest

from harness import paths
from harness.errors import UserError
from harness.prompts.corpus import doc_id_for
from harness.prompts.suite import (
    LENGTHS,
    PROMPT_SET,
    QUESTION_L,
    build_suite,
    current_hash,
    load_suite,
    select,
    suite_paths,
    write_suite,
)
from harness.prompts.templates import load_templates
from harness.prompts.tokenizer import cl100k

CORPUS_IDS = sorted(doc_id_for(p) for p in paths.corpus_dir().glob("*.md"))


@pytest.fixture(scope="module")
def suite():
    # Fails (naming every short or malformed document) if the corpus is not ready.
    return build_suite()


@pytest.mark.parametrize("doc_id", CORPUS_IDS)
def test_each_doc_yields_5_lengths_x_3_tasks_and_its_question_alone(suite, doc_id):
    cells = [(r.task, r.L) for r in suite if r.doc_id == doc_id]
    assert cells[0] == ("qa", QUESTION_L)
    assert set(cells[1:]) == {(t, length) for t in ("summ", "qs", "qa") for length in LENGTHS}


def test_the_question_alone_is_the_qa_question_without_its_document(suite):
    templates = load_templates()
    for r in (r for r in suite if r.L == QUESTION_L):
        with_doc = next(x for x in suite if x.doc_id == r.doc_id and x.task == "qa" and x.L == 200)
        assert r.k == 0 and r.context == "" and r.context_tokens == 0
        assert r.question == with_doc.question and r.text == templates.render_question(r.question)
        assert len(cl100k().encode(r.text)) < 40  # a one-line question, as in the paper's Table 1


def test_asking_for_summaries_of_no_document_names_the_question_condition(suite):
    assert {r.task for r in select(suite, lengths=[0])} == {"qa"}
    assert len(select(suite, tasks=["summ", "qa"], lengths=[0, 200], docs=1)) == 3
    with pytest.raises(UserError, match="L=0 .* exists for task qa only"):
        select(suite, tasks=["summ"], lengths=[0])


def test_lengths_are_200k_and_counts_are_fresh_reencodings(suite):
    enc = cl100k()
    for r in suite:
        assert r.L == 200 * r.k
        assert r.context_tokens == len(enc.encode(r.context)), r.id
        # re-encoding differs by a token or two at most
        assert abs(r.context_tokens - r.L) <= 3, r.id


def test_contexts_are_growing_prefixes_without_broken_characters(suite):
    by_doc = {}
    for r in suite:
        if r.task == "summ":
            by_doc.setdefault(r.doc_id, []).append(r.context)
    for doc_id, contexts in by_doc.items():
        for shorter, longer in zip(contexts, contexts[1:], strict=False):
            assert longer.startswith(shorter), doc_id
        assert all("\ufffd" not in c for c in contexts), doc_id


def test_prompt_text_and_ids(suite):
    for r in suite:
        assert r.id == f"{r.doc_id}-{r.task}-L{r.L}"
        assert r.context in r.text
        assert r.prompt_set == PROMPT_SET
        if r.task == "qa":
            assert r.question and r.question in r.text
        else:
            assert r.question is None
    assert len({r.id for r in suite}) == len(suite)


def test_hash_is_stable_and_tracks_corpus_and_templates(suite, tmp_path):
    assert len({r.prompt_set_hash for r in suite}) == 1
    assert build_suite()[0].prompt_set_hash == suite[0].prompt_set_hash
    assert current_hash() == suite[0].prompt_set_hash

    corpus = tmp_path / "corpus"
    shutil.copytree(paths.corpus_dir(), corpus)
    templates = tmp_path / "templates.yaml"
    shutil.copy(paths.templates_path(), templates)
    assert current_hash(corpus, templates) == suite[0].prompt_set_hash  # location does not matter

    templates.write_text(templates.read_text() + "\n# edited\n")
    edited_templates = current_hash(corpus, templates)
    assert edited_templates != suite[0].prompt_set_hash
    first = sorted(corpus.glob("*.md"))[0]
    first.write_text(first.read_text() + "\nOne more line.\n")
    assert current_hash(corpus, templates) != edited_templates


def test_write_and_load_roundtrip(suite, tmp_path):
    jsonl, meta_path = write_suite(suite, tmp_path)
    assert (jsonl, meta_path) == suite_paths(tmp_path)
    loaded = load_suite(tmp_path)
    assert loaded == suite
    meta = json.loads(meta_path.read_text())
    assert meta["name"] == PROMPT_SET
    assert meta["hash"] == suite[0].prompt_set_hash
    assert meta["counts"]["prompts"] == len(suite)
    assert meta["counts"]["docs"] == len(CORPUS_IDS)
    assert (
        meta["tokenizer"]["bpe_sha256"]
        == "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
    )


def test_load_refuses_a_corrupt_line_naming_it(suite, tmp_path):
    jsonl, _ = write_suite(suite[:6], tmp_path)
    lines = jsonl.read_text().splitlines()
    lines[2] = lines[2][:50]
    jsonl.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"docassist-v1\.jsonl:3: .*prompts build"):
        load_suite(jsonl)


def test_load_refuses_a_suite_that_does_not_match_its_meta(suite, tmp_path):
    _, meta_path = write_suite(suite[:3], tmp_path)
    meta = json.loads(meta_path.read_text())
    meta["hash"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(UserError, match="does not match"):
        load_suite(tmp_path)


def test_missing_suite_says_how_to_build_it(tmp_path):
    with pytest.raises(UserError, match="slm-bench prompts build"):
        load_suite(tmp_path / "none.jsonl")


def test_select(suite):
    first_two = CORPUS_IDS[:2]
    picked = select(suite, tasks=["qa"], lengths=[200, 1000], docs=2)
    assert {(r.doc_id, r.task, r.L) for r in picked} == {
        (d, "qa", n) for d in first_two for n in (200, 1000)
    }
    assert select(suite, docs=[CORPUS_IDS[-1]]) == [r for r in suite if r.doc_id == CORPUS_IDS[-1]]
    assert select(suite) == suite
    with pytest.raises(UserError, match="unknown L 300"):
        select(suite, lengths=[300])
    with pytest.raises(UserError, match="unknown task"):
        select(suite, tasks=["translate"])
    with pytest.raises(UserError, match="unknown document"):
        select(suite, docs=["zz"])


def test_short_document_is_named(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    long_doc = sorted(paths.corpus_dir().glob("*.md"))[0]
    shutil.copy(long_doc, corpus / long_doc.name)
    front = long_doc.read_text().split("\n---\n", 1)[0]
    (corpus / "zz-short.md").write_text(front + "\n---\nToo short to cut into five chunks.\n")
    with pytest.raises(UserError, match=r"zz-short\.md \(\d+ tokens\)"):
        build_suite(corpus)


def test_committed_suite_matches_the_corpus(suite):
    jsonl, _ = suite_paths()
    assert jsonl.is_file(), (
        f"{jsonl} is missing; build it with `slm-bench prompts build` and commit it"
    )
    # Whole records, not just the hash: a change to the construction code must show up too.
    assert load_suite(jsonl) == suite, (
        f"{jsonl.name} is stale (corpus, templates or construction changed); "
        "rebuild with `slm-bench prompts build` and commit it"
    )


def test_real_paths_exist():
    assert Path(paths.templates_path()).is_file()
