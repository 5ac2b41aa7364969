"""End to end on the real engine: SmolLM2-135M-Instruct (the project's built-in real weights)
annotates one short document through the local annotator, then is evaluated on it."""

import json

import pytest
from click.testing import CliRunner

from harness.cli import cli


@pytest.mark.slow
def test_local_annotator_build_then_eval_cli(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "gate.md").write_text(
        "# Site notice\n\nFrom Monday the east gate of the Harlow depot closes at 6 pm. "
        "Staff arriving later must use the north gate and show their badge to the guard.",
        encoding="utf-8",
    )
    data, cache = tmp_path / "da", tmp_path / "cache"
    build = [
        "docassist",
        "build",
        str(docs),
        "--out",
        str(data),
        "--annotator",
        "local",
        "--split",
        "0,0,1",
        "--max-new-tokens",
        "24",
        "--cache",
        str(cache),
    ]
    result = CliRunner().invoke(cli, build)
    assert result.exit_code == 0, result.output
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["annotator"]["name"] == "local:smollm2-135m-instruct/q4f16_1"
    assert manifest["annotator"]["decoding"] == "greedy until EOS"
    assert manifest["last_build"]["annotator_requests"] == 5  # summ, qs, and one qa per question
    record = json.loads((data / "test.jsonl").read_text())
    assert record["summary"] and len(record["qa"]) == 3 and all(p["answer"] for p in record["qa"])
    # rerun: every answer comes from the cache, the engine is not even loaded
    again = CliRunner().invoke(cli, build)
    assert "0 requests, 5 cached" in again.output

    out = tmp_path / "eval"
    result = CliRunner().invoke(
        cli,
        [
            "eval",
            "--model",
            "smollm2-135m-instruct",
            "--docassist",
            str(data),
            "--out",
            str(out),
            "--limit",
            "3",
            "--max-new-tokens",
            "24",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in (out / "quality-examples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["gate-summ", "gate-qs", "gate-qa1"]
    # the evaluated prompts are the annotator's own, decoded the same way at a different length
    # cap: outputs are real text and the scores lie in range
    assert all(r["output"] for r in rows)
    quality = [json.loads(x) for x in (out / "quality.jsonl").read_text().splitlines()]
    assert [q["task"] for q in quality] == ["summ", "qs", "qa"]
    for q in quality:
        assert (
            q["model"] == "smollm2-135m-instruct" and q["quantization"] == "q4f16_1" and q["n"] == 1
        )
        assert all(
            0.0 <= q[m] <= 1.0
            for m in ("bleu", "rouge1", "rougeL", "sts", "intent_accuracy", "avg_score")
        )
    # same prompt, same greedy decoding, same token cap as the annotation: the summary is reproduced
    assert rows[0]["output"] == record["summary"] and quality[0]["bleu"] == pytest.approx(1.0)


def test_eval_into_a_run_of_another_model_is_refused(measured_run_dir, tmp_path):
    """--out a speed run's folder joins that run; a different model there would mislabel it."""
    from tests.test_grid import write_docassist

    data = write_docassist(tmp_path / "da")
    result = CliRunner().invoke(
        cli,
        [
            "eval",
            "--model",
            "dummy:tiny-qwen2",
            "--docassist",
            str(data),
            "--out",
            str(measured_run_dir),
        ],
    )
    assert result.exit_code != 0
    assert "is a run of dummy:tiny-llama, not dummy:tiny-qwen2" in str(result.exception)
