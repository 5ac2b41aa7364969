"""`slm-bench pipeline`: train -> export -> compile (q4f16_1) -> benchmark (the run path) ->
evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.errors import UserError
from harness.paths import REPO_ROOT


def test_example_pipeline_file_is_valid():
    from harness.stages.pipeline import load_pipeline

    spec = load_pipeline(REPO_ROOT / "examples" / "slimlm-tiny.yaml")
    assert spec.stage == "slimlm" and spec.train["preset"] == "tiny"
    assert spec.benchmark.quantization == "q4f16_1" and spec.evaluate is not None
    assert all((REPO_ROOT / c).is_dir() for c in spec.train["corpus"])
    from harness.stages.slimlm.train import parse_settings

    parse_settings(spec.train)  # every training key is a real setting


def test_pipeline_file_typo_is_one_line(tmp_path):
    from harness.stages.pipeline import load_pipeline

    bad = tmp_path / "p.yaml"
    bad.write_text("stage: slimlm\nbenchmark: {quantisation: q4f16_1}\n")
    with pytest.raises(UserError, match="p.yaml"):
        load_pipeline(bad)


@pytest.mark.slow
def test_pipeline_at_the_smallest_size(tmp_path, corpus_dir, docassist_dir, monkeypatch):
    from click.testing import CliRunner

    from harness.cli import cli
    from harness.results.schema import Record

    monkeypatch.setenv("SLM_BENCH_CACHE", str(tmp_path / "cache"))
    spec = {
        "stage": "slimlm",
        "train": {
            "preset": "micro",
            "corpus": [str(REPO_ROOT / "prompts" / "corpus")],
            "docassist": str(docassist_dir),
            "seq_len": 128,
            "pretrain_steps": 30,
            "sft_steps": 20,
            "sft_batch_size": 4,
            "log_every": 10,
        },
        "benchmark": {
            "quantization": "q4f16_1",
            "tasks": ["summ"],
            "lengths": [200],
            "repeats": 1,
            "warmup": 0,
            "max_new_tokens": 8,
            "docs": 1,
        },
        "evaluate": {"split": "test", "max_new_tokens": 16, "baseline": True},
    }
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["pipeline", str(spec_file), "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "pipeline.json").read_text())
    model_dir = Path(summary["model_dir"])
    assert model_dir.name == "slimlm-micro" and (model_dir / "provenance.json").is_file()
    pre, sft = summary["training"]["phases"]["pretrain"], summary["training"]["phases"]["sft"]
    assert (
        pre["loss_last10_mean"] < pre["loss_first10_mean"]
        and sft["loss_last10_mean"] < sft["loss_first10_mean"]
    )

    run_dir = Path(summary["run_dir"])
    records = [
        Record.model_validate_json(line)
        for line in (run_dir / "records.jsonl").read_text().splitlines()
    ]
    measured = [r for r in records if not r.warmup]
    assert len(measured) == 1 and measured[0].status == "ok" and measured[0].L == 200
    assert (
        measured[0].model == str(model_dir)
        and measured[0].quantization == "q4f16_1"
        and measured[0].params == json.loads((model_dir / "provenance.json").read_text())["params"]
    )
    quality = [json.loads(line) for line in (run_dir / "quality.jsonl").read_text().splitlines()]
    assert {q["task"] for q in quality} == {"summ", "qs", "qa"} and all(
        q["model"] == str(model_dir) for q in quality
    )
    assert all(q["run_id"] == measured[0].run_id for q in quality)  # joins the speed run
    assert summary["quality"]["all"]["n"] == 5 and summary["baseline_quality"]["all"]["n"] == 5
    assert (out / "eval-base" / "quality.jsonl").is_file()
