"""Grids: validated YAML, memory-budget planning, skipped cells journaled, a real run that resumes."""

from __future__ import annotations

import json

import pytest

from harness.errors import UserError
from harness.grid import GridSpec, load_grid, plan_grid, run_grid
from harness.results.journal import load


def test_malformed_and_invalid_grid_files_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [a, b\nrepeats: 2\n")
    with pytest.raises(UserError, match=r"bad.yaml line \d+: malformed YAML; fix the grid file"):
        load_grid(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("models: []\n")
    with pytest.raises(UserError, match=r"wrong.yaml: models: .*see examples/quick.yaml"):
        load_grid(wrong)
    typo = tmp_path / "typo.yaml"
    typo.write_text("models: [smollm2-135m-instruct]\nrepeat: 3\n")
    with pytest.raises(UserError, match=r"typo.yaml: repeat: Extra inputs are not permitted"):
        load_grid(typo)


def test_examples_are_valid():
    from harness.paths import REPO_ROOT

    for name in ("quick", "study-s24"):
        load_grid(REPO_ROOT / "examples" / f"{name}.yaml")


def test_cells_over_the_memory_budget_are_planned_as_skipped(monkeypatch):
    from harness import grid as grid_mod

    monkeypatch.setattr(grid_mod, "device_budget", lambda *a, **k: 1_000_000_000)
    cells = plan_grid(GridSpec(models=["smollm2-135m-instruct", "llama-3.2-3b-instruct", "phi-3.5-mini-instruct"], lengths=[1000]))
    plan = {c.spec.model: c.skip_reason for c in cells}
    assert plan["smollm2-135m-instruct"] is None
    assert "the device budget is 1.00 GB" in plan["llama-3.2-3b-instruct"]
    assert "architecture phi3 is not supported" in plan["phi-3.5-mini-instruct"]
    smol = next(c for c in cells if c.spec.model == "smollm2-135m-instruct")
    assert smol.bundle_bytes < smol.memory_estimate < 1_000_000_000


def test_grid_runs_cells_journals_skips_and_resumes(tmp_path):
    grid = GridSpec(models=["dummy:tiny-llama", "dummy:tiny-qwen2", "gemma-2-2b-it"], tasks=["summ"], lengths=[200], repeats=2, warmup=1, max_new_tokens=4)
    run_dirs = run_grid(grid, tmp_path, log=lambda *_: None)
    assert len(run_dirs) == 3
    by_model = {}
    for d in run_dirs:
        records, problems = load(d)
        assert not problems
        by_model[records[0].model] = records
    assert all(r.status == "ok" for r in by_model["dummy:tiny-llama"] + by_model["dummy:tiny-qwen2"])
    gemma = by_model["gemma-2-2b-it"]
    assert len(gemma) == 2 and all(r.status == "skipped" and "gemma2" in r.error for r in gemma)
    sizes = [len((d / "records.jsonl").read_text().splitlines()) for d in run_dirs]
    run_grid(grid, tmp_path, log=lambda *_: None)  # a rerun measures and skips nothing again
    assert [len((d / "records.jsonl").read_text().splitlines()) for d in run_dirs] == sizes


def write_docassist(folder, n_docs: int = 1):
    """A one-document DocAssist test split in the builder's format (its annotation written here)."""
    from harness.docassist.format import DocRecord, QAPair, split_path

    folder.mkdir(parents=True, exist_ok=True)
    docs = [
        DocRecord(doc_id=f"doc{i}", source=f"doc{i}.md", source_sha256="0" * 64, chunks=["The harbour town kept its lighthouse lit every night for two hundred years."],
                  summary="A harbour town kept its lighthouse lit for two centuries.",
                  questions=["Who kept the lighthouse lit?", "For how long was it lit?", "Where is the town?"],
                  qa=[QAPair(question="How long was the lighthouse lit?", answer="Two hundred years.")] * 3,
                  split="test", annotator="test")
        for i in range(n_docs)
    ]
    split_path(folder, "test").write_text("".join(d.model_dump_json() + "\n" for d in docs))
    return folder


@pytest.mark.slow
def test_grid_scores_quality_of_real_weights_only(tmp_path):
    """SmolLM2 (real weights) gets quality.jsonl in its run dir; a dummy-weights cell does not."""
    from harness.report.render import write_report

    dataset = write_docassist(tmp_path / "docassist")
    grid = GridSpec(models=["smollm2-135m-instruct", "dummy:tiny-llama"], tasks=["summ"], lengths=[200], repeats=1, warmup=0, max_new_tokens=4,
                    quality={"docassist": str(dataset), "limit": 2, "max_new_tokens": 12})
    smollm, tiny = run_grid(grid, tmp_path / "grid", log=lambda *_: None)
    quality = [json.loads(line) for line in (smollm / "quality.jsonl").read_text().splitlines()]
    assert {q["task"] for q in quality} == {"summ", "qs"} and all(q["model"] == "smollm2-135m-instruct" and 0 <= q["avg_score"] <= 1 for q in quality)
    assert not (tiny / "quality.jsonl").exists()
    markdown = write_report([smollm, tiny], tmp_path / "report").markdown.read_text()
    assert "## Quality (DocAssist)" in markdown and "smollm2-135m-instruct (q4f16_1)" in markdown
