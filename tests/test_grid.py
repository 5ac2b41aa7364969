"""Grids: validated YAML, memory-budget planning, skipped cells journaled, a real run that
resumes."""

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


def plan_with(monkeypatch, budget, total, **grid):
    from harness import grid as grid_mod
    from harness.memory import DeviceMemory

    monkeypatch.setattr(grid_mod, "device_memory", lambda *a, **k: DeviceMemory(budget, total))
    strict = grid.pop("strict", False)
    return plan_grid(GridSpec(**grid), strict_memory=strict)


def test_cells_over_the_budget_run_flagged_and_cells_over_the_ram_are_skipped(monkeypatch):
    cells = {
        c.spec.model: c
        for c in plan_with(
            monkeypatch,
            1_000_000_000,
            2_000_000_000,
            models=["smollm2-135m-instruct", "qwen2-1.5b-instruct", "llama-3.2-3b-instruct"],
            lengths=[1000],
        )
    }
    smol, qwen, llama = (
        cells["smollm2-135m-instruct"],
        cells["qwen2-1.5b-instruct"],
        cells["llama-3.2-3b-instruct"],
    )
    assert (smol.over_budget, smol.skip_reason, smol.memory_warning) == (False, None, None)
    assert smol.bundle_bytes < smol.memory_estimate < 1_000_000_000
    assert 1e9 < qwen.memory_estimate < 2e9 and qwen.over_budget and qwen.skip_reason is None
    assert "the device budget is 1.00 GB of 2.00 GB RAM; running anyway" in qwen.memory_warning
    assert llama.memory_estimate > 2e9 and llama.skip_reason.endswith(
        "more than the device's 2.00 GB of RAM"
    )
    assert "L=1000" in llama.skip_reason


def test_strict_memory_skips_cells_over_the_budget(monkeypatch):
    cells = {
        c.spec.model: c
        for c in plan_with(
            monkeypatch,
            1_000_000_000,
            2_000_000_000,
            models=["smollm2-135m-instruct", "qwen2-1.5b-instruct"],
            lengths=[1000],
            strict=True,
        )
    }
    assert cells["smollm2-135m-instruct"].skip_reason is None
    qwen = cells["qwen2-1.5b-instruct"]
    assert (
        qwen.over_budget
        and "the device budget is 1.00 GB (--strict-memory skips cells over budget)"
        in qwen.skip_reason
    )


def study_without_phone(monkeypatch):
    """The study grid planned with its galaxy-s24 profile, as when no phone is attached."""
    import harness.devices
    from harness.paths import REPO_ROOT

    def no_phone(*a, **k):
        raise UserError("--device adb needs exactly one attached device (found: none)")

    monkeypatch.setattr(harness.devices, "open_device", no_phone)
    return load_grid(REPO_ROOT / "examples" / "study-s24.yaml")


def test_study_s24_plans_mistral_and_llama_8b_over_budget_not_skipped(monkeypatch):
    """The paper ran them on an 8 GB Galaxy S24: over the profile's 4 GB budget, under its RAM."""
    study = study_without_phone(monkeypatch)
    cells = {c.spec.model: c for c in plan_grid(study)}
    for name in ("mistral-7b-instruct-v0.3", "llama-3.1-8b-instruct"):
        cell = cells[name]
        assert (cell.budget, cell.total_ram) == (4_000_000_000, 8_000_000_000)
        assert 4e9 < cell.memory_estimate < 8e9
        assert cell.over_budget and cell.skip_reason is None
        assert (
            f"needs ~{cell.memory_estimate / 1e9:.2f} GB, "
            "the device budget is 4.00 GB of 8.00 GB RAM" in cell.memory_warning
        )
    for name in ("smollm2-135m-instruct", "llama-3.2-3b-instruct"):
        assert not cells[name].over_budget and cells[name].skip_reason is None
    strict = {c.spec.model: c for c in plan_grid(study, strict_memory=True)}
    assert all(
        "--strict-memory" in strict[name].skip_reason
        for name in ("mistral-7b-instruct-v0.3", "llama-3.1-8b-instruct")
    )
    assert strict["llama-3.2-3b-instruct"].skip_reason is None


def test_study_s24_dry_run_warns_per_over_budget_cell(monkeypatch):
    from click.testing import CliRunner

    from harness.cli import cli
    from harness.paths import REPO_ROOT

    study_without_phone(monkeypatch)
    result = CliRunner().invoke(
        cli, ["grid", str(REPO_ROOT / "examples" / "study-s24.yaml"), "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.split()}
    assert (
        rows["mistral-7b-instruct-v0.3"].endswith("OVER BUDGET")
        and "skip" not in rows["mistral-7b-instruct-v0.3"]
    )
    assert rows["llama-3.1-8b-instruct"].endswith("OVER BUDGET")
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert [w.split()[1] for w in warnings] == ["mistral-7b-instruct-v0.3", "llama-3.1-8b-instruct"]
    assert all("of 8.00 GB RAM" in w for w in warnings)
    strict = CliRunner().invoke(
        cli,
        ["grid", str(REPO_ROOT / "examples" / "study-s24.yaml"), "--dry-run", "--strict-memory"],
    )
    assert strict.exit_code == 0, strict.output
    assert "skip: needs ~" in next(
        line for line in strict.stdout.splitlines() if line.startswith("mistral-7b-instruct-v0.3")
    )
    assert not [line for line in strict.stderr.splitlines() if line.startswith("warning:")]


def test_grid_runs_cells_journals_skips_and_resumes(tmp_path, monkeypatch):
    from harness import grid as grid_mod
    from harness.memory import DeviceMemory

    # A "device" of 1 GB: Qwen2-1.5B (~1.3 GB at L=200) cannot fit it; the tiny models are not
    # in the catalog, so only their run plans them (against this desktop's real RAM).
    monkeypatch.setattr(
        grid_mod, "device_memory", lambda *a, **k: DeviceMemory(500_000_000, 1_000_000_000)
    )
    grid = GridSpec(
        models=["dummy:tiny-llama", "dummy:tiny-qwen2", "qwen2-1.5b-instruct"],
        tasks=["summ"],
        lengths=[200],
        repeats=2,
        warmup=1,
        max_new_tokens=4,
    )
    run_dirs = run_grid(grid, tmp_path, log=lambda *_: None)
    assert len(run_dirs) == 3
    by_model = {}
    for d in run_dirs:
        records, problems = load(d)
        assert not problems
        by_model[records[0].model] = records
    assert all(
        r.status == "ok" for r in by_model["dummy:tiny-llama"] + by_model["dummy:tiny-qwen2"]
    )
    qwen = by_model["qwen2-1.5b-instruct"]
    assert len(qwen) == 2 and all(
        r.status == "skipped" and "more than the device's 1.00 GB of RAM" in r.error for r in qwen
    )
    sizes = [len((d / "records.jsonl").read_text().splitlines()) for d in run_dirs]
    run_grid(grid, tmp_path, log=lambda *_: None)  # a rerun measures and skips nothing again
    assert [len((d / "records.jsonl").read_text().splitlines()) for d in run_dirs] == sizes


def fake_benchmark(monkeypatch, fail: dict):
    """``run_benchmark`` replaced: records the models it was asked for, raises ``fail[model]``."""
    import harness.benchmark as bench

    calls = []

    def run(spec, out_dir, **kw):
        calls.append(spec.model)
        if spec.model in fail:
            raise fail[spec.model]

    monkeypatch.setattr(bench, "run_benchmark", run)
    return calls


def test_a_failing_cell_is_journaled_as_failed_and_the_grid_goes_on(tmp_path, monkeypatch):
    from harness.benchmark import OutOfMemory

    oom = (
        "out of memory: the runner was killed by signal 9 (SIGKILL: lmkd or "
        "the OOM killer); try a smaller model or quantization, or a shorter L"
    )
    calls = fake_benchmark(
        monkeypatch,
        {
            "dummy:tiny-llama": OutOfMemory(oom),
            "dummy:tiny-qwen2": RuntimeError("the bundle is corrupt"),
        },
    )
    grid = GridSpec(
        models=["dummy:tiny-llama", "dummy:tiny-qwen2", "dummy:tiny-slimlm"],
        tasks=["summ"],
        lengths=[200],
        repeats=2,
    )
    logs = []
    llama, qwen, slimlm = run_grid(grid, tmp_path, log=logs.append)
    assert calls == ["dummy:tiny-llama", "dummy:tiny-qwen2", "dummy:tiny-slimlm"]
    records, _ = load(llama)
    assert [(r.status, r.error, r.repeat) for r in records] == [
        ("failed", oom, 0),
        ("failed", oom, 1),
    ]
    records, _ = load(qwen)
    assert {(r.status, r.error) for r in records} == {
        ("failed", "RuntimeError: the bundle is corrupt")
    }
    assert load(slimlm) == ([], [])  # the fake measured nothing and failed nothing
    assert f"  failed: {oom}" in logs and logs[-1].startswith("2 cell(s) failed")
    # the retried run writes the run.json of what it really runs
    assert not (llama / "run.json").exists()
    calls.clear()
    # failed cells are tried again, the same failure not journaled twice
    run_grid(grid, tmp_path, log=lambda *_: None)
    assert calls == ["dummy:tiny-llama", "dummy:tiny-qwen2", "dummy:tiny-slimlm"]
    assert len(load(llama)[0]) == 2


def test_ctrl_c_still_stops_the_grid(tmp_path, monkeypatch):
    calls = fake_benchmark(monkeypatch, {"dummy:tiny-llama": KeyboardInterrupt()})
    grid = GridSpec(
        models=["dummy:tiny-llama", "dummy:tiny-qwen2"], tasks=["summ"], lengths=[200], repeats=1
    )
    with pytest.raises(KeyboardInterrupt):
        run_grid(grid, tmp_path, log=lambda *_: None)
    assert calls == ["dummy:tiny-llama"]
    assert not any(tmp_path.rglob("records.jsonl"))


def test_a_cell_an_earlier_plan_skipped_is_measured_once_the_plan_runs_it(tmp_path, monkeypatch):
    from harness import grid as grid_mod
    from harness.memory import DeviceMemory

    monkeypatch.setattr(
        grid_mod, "device_memory", lambda *a, **k: DeviceMemory(1_000_000_000, 2_000_000_000)
    )
    calls = fake_benchmark(monkeypatch, {})
    grid = GridSpec(models=["qwen2-1.5b-instruct"], tasks=["summ"], lengths=[200], repeats=1)
    [run_dir] = run_grid(grid, tmp_path, log=lambda *_: None, strict_memory=True)
    records, _ = load(run_dir)
    assert calls == [] and [r.status for r in records] == ["skipped"] and records[0].over_budget
    logs = []
    run_grid(grid, tmp_path, log=logs.append)
    assert calls == ["qwen2-1.5b-instruct"]
    # the fake wrote nothing back
    assert not (run_dir / "records.jsonl").exists() and not (run_dir / "run.json").exists()
    assert any("an earlier plan skipped this cell" in line for line in logs)
    # said once, by the run itself (tests/test_benchmark.py), not again by the grid with its
    # plan's estimate
    assert not any("running anyway" in line for line in logs)


def write_docassist(folder, n_docs: int = 1):
    """A one-document DocAssist test split in the builder's format (its annotation written here)."""
    from harness.docassist.format import DocRecord, QAPair, split_path

    folder.mkdir(parents=True, exist_ok=True)
    docs = [
        DocRecord(
            doc_id=f"doc{i}",
            source=f"doc{i}.md",
            source_sha256="0" * 64,
            chunks=["The harbour town kept its lighthouse lit every night for two hundred years."],
            summary="A harbour town kept its lighthouse lit for two centuries.",
            questions=[
                "Who kept the lighthouse lit?",
                "For how long was it lit?",
                "Where is the town?",
            ],
            qa=[QAPair(question="How long was the lighthouse lit?", answer="Two hundred years.")]
            * 3,
            split="test",
            annotator="test",
        )
        for i in range(n_docs)
    ]
    split_path(folder, "test").write_text("".join(d.model_dump_json() + "\n" for d in docs))
    return folder


@pytest.mark.slow
def test_grid_scores_quality_of_real_weights_only(tmp_path):
    """SmolLM2 (real weights) gets quality.jsonl in its run dir; a dummy-weights cell does not."""
    from harness.report.render import write_report

    dataset = write_docassist(tmp_path / "docassist")
    grid = GridSpec(
        models=["smollm2-135m-instruct", "dummy:tiny-llama"],
        tasks=["summ"],
        lengths=[200],
        repeats=1,
        warmup=0,
        max_new_tokens=4,
        quality={"docassist": str(dataset), "limit": 2, "max_new_tokens": 12},
    )
    smollm, tiny = run_grid(grid, tmp_path / "grid", log=lambda *_: None)
    quality = [json.loads(line) for line in (smollm / "quality.jsonl").read_text().splitlines()]
    assert {q["task"] for q in quality} == {"summ", "qs"} and all(
        q["model"] == "smollm2-135m-instruct" and 0 <= q["avg_score"] <= 1 for q in quality
    )
    assert not (tiny / "quality.jsonl").exists()
    markdown = write_report([smollm, tiny], tmp_path / "report").markdown.read_text()
    assert "## Quality (DocAssist)" in markdown and "smollm2-135m-instruct (q4f16_1)" in markdown


def test_study_s24_plans_every_model_of_the_papers_table(monkeypatch):
    """Table 1's models (shared reference CSV, by display name): each one a cell, none skipped."""
    from harness.models.catalog import load_catalog
    from harness.report.reference import load_reference

    cells = plan_grid(study_without_phone(monkeypatch))
    catalog = load_catalog()
    planned = {catalog[c.spec.model].display.lower() for c in cells if c.skip_reason is None}
    assert set(load_reference("slimlm-s24")["model_key"]) <= planned


def test_command_line_overrides_replace_the_files_fields_and_are_validated(monkeypatch):
    from click.testing import CliRunner

    from harness.cli import cli
    from harness.paths import REPO_ROOT

    study_without_phone(monkeypatch)
    study = str(REPO_ROOT / "examples" / "study-s24.yaml")
    result = CliRunner().invoke(
        cli,
        [
            "grid",
            study,
            "--dry-run",
            "--lengths",
            "200",
            "--repeats",
            "1",
            "--max-new-tokens",
            "8",
            "--target",
            "llvm",
        ],
    )
    assert result.exit_code == 0, result.output
    from harness.grid import load_grid, with_overrides

    spec = with_overrides(
        load_grid(study), {"lengths": [200], "repeats": 1, "max_new_tokens": 8}, study
    )
    assert (spec.lengths, spec.repeats, spec.max_new_tokens, spec.models) == (
        [200],
        1,
        8,
        load_grid(study).models,
    )
    bad = CliRunner().invoke(cli, ["grid", study, "--dry-run", "--tasks", "poems"])
    assert isinstance(bad.exception, UserError)  # the entry point prints it as one line, exit 2
    assert "override tasks.0" in str(bad.exception) and "fix the command-line option" in str(
        bad.exception
    )


def test_threads_and_cores_are_grid_axes_swept_inside_every_cell(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(
        "models: [dummy:tiny-llama]\ntasks: [summ]\nlengths: [200]\nthreads: [1, 2]\ncores: [all]\n"
        "repeats: 1\nwarmup: 0\nmax_new_tokens: 4\n"
    )
    grid = load_grid(path)
    [cell] = plan_grid(grid)
    assert (cell.spec.threads, cell.spec.cores) == ([1, 2], ["all"])
    [run_dir] = run_grid(grid, tmp_path / "out", log=lambda *_: None)
    records, _ = load(run_dir)
    assert sorted((r.threads, r.cores_asked) for r in records) == [(1, "all"), (2, "all")]
    path.write_text(path.read_text().replace("cores: [all]", "cores: all"))
    with pytest.raises(UserError, match="cores"):
        load_grid(path)


def test_a_grid_with_a_failed_cell_exits_3_so_ci_notices(tmp_path):
    """One cell on an unreachable phone: journaled as failed, the report written, exit status 3."""
    from click.testing import CliRunner

    from harness.cli import cli

    path = tmp_path / "lost.yaml"
    path.write_text(
        "models: [dummy:tiny-llama]\ndevices: ['adb:R5CX0000']\nadb_server: 127.0.0.1:1\n"
        "profile: galaxy-s24\ntasks: [qa]\nlengths: [200]\nrepeats: 1\n"
    )
    result = CliRunner().invoke(cli, ["grid", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 3, result.output
    assert (
        "1 cell(s) failed" in result.output
        and (tmp_path / "out" / "report" / "report.md").is_file()
    )
    [run_dir] = [d for d in (tmp_path / "out").iterdir() if d.name != "report"]
    assert {r.status for r in load(run_dir)[0]} == {"failed"}


def test_estimates_read_the_cells_of_earlier_grids(tmp_path):
    """A grid's cells live in results/grid-NAME/RUN: their runtimes estimate the next plan."""
    from harness.grid import estimate_seconds

    cell_dir = tmp_path / "grid-lab" / "dummy_tiny-llama-run"
    cell_dir.mkdir(parents=True)
    record = {"model": "dummy:tiny-llama", "quantization": "q4f16_1", "engine": "tvm"}
    lines = [{**record, "status": "ok", "L": 200, "runtime_s": s} for s in (1.0, 2.0, 3.0)]
    (cell_dir / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    grid = GridSpec(
        models=["dummy:tiny-llama"], tasks=["summ"], lengths=[200], repeats=2, warmup=1, docs=1
    )
    [cell] = plan_grid(grid)
    # the median runtime x (repeats + warm-up) x one prompt
    assert estimate_seconds(cell, tmp_path) == pytest.approx(2.0 * 3)
