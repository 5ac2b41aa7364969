import json

import pytest

from harness.docassist.format import DocRecord, QAPair, format_questions
from harness.errors import UserError
from harness.eval.evaluate import (
    EXAMPLES_FILE,
    evaluate,
    examples_for,
    load_quality,
    write_results,
)
from harness.results.schema import QualityRecord


def _doc(doc_id: str, text: str) -> DocRecord:
    return DocRecord(
        doc_id=doc_id,
        source=f"{doc_id}.md",
        source_sha256="0" * 64,
        chunks=[text],
        summary=f"The document reports that {text.lower()}",
        questions=["What does the document report?", "Which figure is given?", "Who is named?"],
        qa=[
            QAPair(question=q, answer=f"It says {text.lower()}")
            for q in ["What does the document report?", "Which figure is given?", "Who is named?"]
        ],
        split="test",
        annotator="openai:test",
    )


@pytest.fixture
def dataset(tmp_path):
    folder = tmp_path / "da"
    folder.mkdir()
    docs = [
        _doc("a", "Pump station four moved 12,400 litres per hour."),
        _doc("b", "The library opens a new reading room in May."),
    ]
    (folder / "test.jsonl").write_text(
        "".join(d.model_dump_json() + "\n" for d in docs), encoding="utf-8"
    )
    return folder


def test_a_model_that_echoes_the_reference_scores_top_marks(dataset):
    examples = examples_for(dataset)
    assert [e.task for e in examples] == ["summ", "qs", "qa", "qa", "qa"] * 2
    targets = {e.prompt: e.target for e in examples}
    records, rows = evaluate(
        targets.__getitem__, examples, model="oracle", quantization="q4f16_1", dataset=dataset
    )
    assert [r.task for r in records] == ["summ", "qs", "qa"]
    by_task = {r.task: r for r in records}
    assert by_task["qa"].n == 6 and by_task["summ"].n == 2
    for r in records:
        assert r.bleu == pytest.approx(1.0) and r.rougeL == pytest.approx(1.0)
        assert r.sts == pytest.approx(1.0, abs=1e-4)
        assert r.intent_accuracy == 1.0 and r.geval is None
        assert r.avg_score == pytest.approx(1.0, abs=1e-4)
        assert r.dataset == "da" and len(r.dataset_hash) == 64
    # three distinct questions
    assert by_task["qs"].self_bleu is not None and by_task["qs"].self_bleu < 0.5
    assert rows[1]["output"] == format_questions(
        ["What does the document report?", "Which figure is given?", "Who is named?"]
    )


def test_a_model_that_answers_with_questions_misses_the_intent(dataset, tmp_path):
    examples = examples_for(dataset, limit=5)
    records, rows = evaluate(
        lambda prompt: "What is this? Why is it here?",
        examples,
        model="asker",
        quantization="q0f32",
        dataset=dataset,
    )
    by_task = {r.task: r for r in records}
    assert by_task["summ"].intent_accuracy == 0.0 and by_task["qa"].intent_accuracy == 0.0
    assert by_task["qs"].intent_accuracy == 0.0  # two questions, not three
    # one summ output: no diversity score
    assert by_task["summ"].bleu < 0.2 and by_task["summ"].self_bleu is None
    assert by_task["qa"].self_bleu == pytest.approx(1.0)  # the same answer to every question

    out = tmp_path / "run"
    write_results(out, records, rows)
    assert [r.model_dump() for r in load_quality(out)] == [r.model_dump() for r in records]
    lines = [json.loads(x) for x in (out / EXAMPLES_FILE).read_text().splitlines()]
    assert [x["id"] for x in lines] == ["a-summ", "a-qs", "a-qa1", "a-qa2", "a-qa3"]
    assert all(x["intent_ok"] is False for x in lines)
    assert load_quality(tmp_path / "nothing-here") == []
    assert QualityRecord.model_validate(records[0].model_dump()).kind == "quality"


def test_missing_or_empty_split_is_a_user_error(dataset):
    with pytest.raises(UserError, match="validation.jsonl not found"):
        examples_for(dataset, "validation")
    (dataset / "train.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(UserError, match="has no documents"):
        examples_for(dataset, "train")


def test_a_prompt_too_long_for_the_window_scores_as_an_empty_answer(dataset):
    from harness.eval.generate import PromptTooLong

    examples = examples_for(dataset)

    def generate(prompt):
        if "Pump station" in prompt:
            raise PromptTooLong(
                "a prompt of 3000 tokens leaves no room to answer in a window of 2048"
            )
        return next(e.target for e in examples if e.prompt == prompt)

    records, rows = evaluate(
        generate, examples, model="short-window", quantization="q4f16_1", dataset=dataset
    )
    by_task = {r.task: r for r in records}
    assert by_task["qa"].n == 6 and by_task["qa"].failed == 3 and by_task["summ"].failed == 1
    assert by_task["qa"].intent_accuracy == 0.5  # the other document's answers are perfect
    failed = [r for r in rows if r["error"]]
    assert len(failed) == 5 and all(
        r["output"] == "" and r["sts"] == 0.0 and r["intent_ok"] is False for r in failed
    )


def test_geval_runs_only_with_a_judge_endpoint(dataset, chat_server, monkeypatch, tmp_path):
    from harness.eval.evaluate import judge_from_env

    monkeypatch.delenv("SLM_BENCH_JUDGE_URL", raising=False)
    assert judge_from_env(tmp_path) is None
    monkeypatch.setenv("SLM_BENCH_JUDGE_URL", chat_server.url)
    monkeypatch.setenv("SLM_BENCH_JUDGE_MODEL", "judge-model")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-judge")
    judge = judge_from_env(tmp_path / "judgements")
    chat_server.reply = "4"
    examples = examples_for(dataset, limit=2)
    targets = {e.prompt: e.target for e in examples}
    records, rows = evaluate(
        targets.__getitem__,
        examples,
        model="oracle",
        quantization="q4f16_1",
        dataset=dataset,
        judge=judge,
    )
    assert [r["geval"] for r in rows] == [0.75, 0.75]  # grade 4 of 1..5
    assert (
        len(chat_server.requests) == 2 and chat_server.requests[0]["body"]["model"] == "judge-model"
    )
    sent = chat_server.requests[0]["body"]["messages"][0]["content"]
    assert examples[0].target in sent and "Reply with the number only." in sent
    summ = next(r for r in records if r.task == "summ")
    assert summ.geval == 0.75 and summ.avg_score == pytest.approx((5 * 1.0 + 0.75) / 6, abs=1e-4)
