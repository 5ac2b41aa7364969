"""Published figures overlaid on a report, labelled with the device they came from."""

from __future__ import annotations

import pytest

from harness.errors import UserError
from harness.report.reference import load_reference


def test_reference_table1_is_kept_with_its_device_label():
    ref = load_reference("slimlm-s24")
    row = ref[(ref["model"] == "SmolLM-135M-Instruct") & (ref["L"] == 200)].iloc[0]
    assert (row["itps"], row["otps"], row["ttft_s"]) == (167.80, 60.80, 1.91)
    assert set(ref["L"]) == {0, 200, 400, 600, 800} and "Galaxy S24" in row["device"]
    # The "question" rows (no document) stay, at L=0: three models have no other row.
    question = ref[ref["L"] == 0]
    assert len(question) == 9 and {"phi-3.5-mini-instruct", "llama-3.1-8b-instruct"} <= set(
        question["model_key"]
    )
    with pytest.raises(UserError, match="unknown reference 'nope'; available: slimlm-s24"):
        load_reference("nope")


def test_report_compares_measured_with_published(measured_run_dir, tmp_path, monkeypatch):
    from harness.report import reference
    from harness.report.aggregate import load_runs, measured, summarize_overall
    from harness.report.render import write_report

    # Our tiny measured model stands in for SmolLM-135M so that the table has rows to compare.
    monkeypatch.setattr(reference, "model_key", lambda model: "smollm-135m-instruct")
    outputs = write_report([measured_run_dir], tmp_path / "rep", reference="slimlm-s24")
    md = outputs.markdown.read_text()
    assert "## Reference: slimlm-s24" in md and "Galaxy S24, SlimLM paper" in md
    overall = summarize_overall(measured(load_runs([measured_run_dir]).df))
    itps_200 = overall[overall["L"] == 200]["itps_median"].iloc[0]
    assert f"({itps_200 / 167.80:.2f}x)" in md
    assert "Galaxy S24, SlimLM paper" in (tmp_path / "rep" / "plots" / "itps_vs_L.svg").read_text()


def test_no_matching_model_is_said_plainly(measured_run_dir, tmp_path):
    from harness.report.render import write_report

    md = write_report(
        [measured_run_dir], tmp_path / "rep", reference="slimlm-s24"
    ).markdown.read_text()
    assert "No model and L of these runs appears in the reference slimlm-s24" in md


def test_a_grid_names_its_reference_and_a_typo_lists_the_known_ones(tmp_path):
    from harness.grid import GridSpec, load_grid
    from harness.paths import REPO_ROOT
    from harness.report.reference import REFERENCES, check_reference

    study = load_grid(REPO_ROOT / "examples" / "study-s24.yaml")
    assert study.reference == "slimlm-s24" and check_reference(study.reference) in REFERENCES
    assert GridSpec(models=["smollm2-135m-instruct"]).reference is None  # no overlay unless asked
    with pytest.raises(UserError) as error:
        check_reference("slimlm-S24", where="grid.yaml")
    assert str(error.value) == "unknown reference 'slimlm-S24' in grid.yaml; available: slimlm-s24"
