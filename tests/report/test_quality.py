"""Quality results (``slm-bench eval``'s quality.jsonl) rendered beside speed in a report."""

from __future__ import annotations

import shutil

from harness.report.aggregate import load_runs, summarize_overall
from harness.report.quality import QUALITY_FILE, load_quality, quality_points
from harness.report.render import write_report
from harness.results.schema import QualityRecord


def with_quality(run_dir, tmp_path, scores: dict[str, float]):
    """A copy of a measured run with one quality record per task, as `slm-bench eval --out`
    journals them."""
    run = tmp_path / run_dir.name
    shutil.copytree(run_dir, run)
    records = load_runs([run]).df.iloc[0]
    lines = [
        QualityRecord(
            model=records["model"],
            quantization=records["quantization"],
            engine=records["engine"],
            weights=records["weights"],
            task=task,
            dataset="docassist-tiny",
            dataset_hash="0" * 64,
            n=4,
            bleu=score / 2,
            rougeL=score,
            sts=score,
            intent_accuracy=1.0,
            avg_score=score,
        ).model_dump_json()
        for task, score in scores.items()
    ]
    (run / QUALITY_FILE).write_text("\n".join(lines) + "\n{not json\n")
    return run


def test_quality_is_tabled_and_plotted_against_speed(measured_run_dir, tmp_path):
    run = with_quality(measured_run_dir, tmp_path, {"summ": 0.2, "qs": 0.3, "qa": 0.4})
    quality, problems = load_quality([run])
    assert (
        len(quality) == 3
        and len(problems) == 1
        and problems[0].startswith(f"{run.name}/{QUALITY_FILE}:4:")
    )
    points = quality_points(quality, summarize_overall(load_runs([run]).df), 1000)
    assert len(points) == 1 and abs(points.iloc[0]["avg_score"] - 0.3) < 1e-9  # the mean over tasks

    outputs = write_report([run], tmp_path / "report")
    markdown = outputs.markdown.read_text()
    assert "## Quality (DocAssist)" in markdown and "| 0.400 |" in markdown
    assert f"{QUALITY_FILE}:4" in markdown  # the damaged line is listed among the problems
    assert "avg quality score" in (outputs.out_dir / "plots" / "quality_vs_otps.svg").read_text()


def test_runs_without_quality_say_how_to_add_it(measured_run_dir, tmp_path):
    outputs = write_report([measured_run_dir], tmp_path / "report")
    assert "## Quality" not in outputs.markdown.read_text()
    assert "slm-bench eval" in (outputs.out_dir / "plots" / "quality_vs_otps.svg").read_text()


def test_reference_quality_sits_beside_ours(measured_run_dir, tmp_path, monkeypatch):
    from harness.report import reference

    run = with_quality(measured_run_dir, tmp_path, {"summ": 0.2, "qa": 0.4})
    # Our tiny measured model stands in for SmolLM-135M so the published row has a partner.
    monkeypatch.setattr(reference, "model_key", lambda model: "smollm-135m-instruct")
    markdown = write_report([run], tmp_path / "report", reference="slimlm-s24").markdown.read_text()
    assert "## Reference quality: slimlm-s24" in markdown
    # ours (mean over tasks) | the paper's Table 5 for SmolLM-135M
    assert "| 0.300 | 0.369 |" in markdown
