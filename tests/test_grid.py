"""Grids: validated YAML, memory-budget planning, skipped cells journaled, a real run that resumes."""

from __future__ import annotations

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
