"""Reports: report.md, self-contained report.html, summary.csv, plots; problems and baselines."""

import shutil

import pandas as pd
import pytest

from harness import paths
from harness.report import plots as plots_module
from harness.report.render import default_out_dir, write_report
from harness.results.journal import RECORDS_FILE


@pytest.fixture(scope="module")
def compared(measured_run_dir, tmp_path_factory):
    """A report of the measured run against itself as baseline: every ratio is exactly 1."""
    return write_report(
        [measured_run_dir], tmp_path_factory.mktemp("report"), baseline=measured_run_dir
    )


def test_all_outputs_are_written(compared):
    for path in compared.files():
        assert path.is_file() and path.stat().st_size > 0, path
    assert {p.suffix for p in compared.plots} == {".png", ".svg"}
    assert (compared.out_dir / "report.md").is_file()


def test_markdown_has_tables_ratios_and_definitions(compared):
    md = compared.markdown.read_text()
    assert md.index("## Problems") < md.index("## Runs") < md.index("## Metric definitions")
    assert "| model | quant | weights |" in md
    assert "(1.00×)" in md
    assert "**OTPS** = (output_tokens - 1) / decode_s" in md
    assert "![otps_vs_L](plots/otps_vs_L.png)" in md


def test_html_is_self_contained(compared):
    page = compared.html.read_text()
    assert page.count("data:image/png;base64,") == len(
        [p for p in compared.plots if p.suffix == ".png"]
    )
    assert "<style>" in page
    assert "<link" not in page and 'src="http' not in page and "<script" not in page
    assert "Metric definitions" in page


def test_summary_csv_has_per_task_and_pooled_rows(compared, measured_run_dir):
    csv = pd.read_csv(compared.csv)
    assert {"summ", "qs", "qa", "all"} <= set(csv["task"])
    for metric in ("itps", "otps", "ttft_s", "runtime_s"):
        for stat in ("median", "p10", "p90", "stdev", "cv", "count"):
            assert f"{metric}_{stat}" in csv
        assert (csv[f"{metric}_ratio"] == 1.0).all()


def test_corrupt_line_is_listed_first_with_file_and_line(measured_run_dir, tmp_path, monkeypatch):
    # plots are tested elsewhere
    monkeypatch.setattr(plots_module, "write_plots", lambda *args, **kwargs: [])
    run = tmp_path / "damaged"
    shutil.copytree(measured_run_dir, run)
    lines = (run / RECORDS_FILE).read_text().splitlines(keepends=True)
    lines.insert(3, '{"this is": "not a record"\n')
    (run / RECORDS_FILE).write_text("".join(lines))
    outputs = write_report([run], tmp_path / "out")
    md = outputs.markdown.read_text()
    problems = md[md.index("## Problems") : md.index("## Runs")]
    assert "damaged/records.jsonl:4: not valid JSON" in problems
    assert "damaged/records.jsonl:4" in outputs.html.read_text()
    assert outputs.summary["n"].sum() > 0  # the rest still loaded


def test_default_out_dir_names():
    assert default_out_dir(["results/abc"]) == paths.reports_dir() / "abc"
    assert default_out_dir(["results/a", "results/b"]) == paths.reports_dir() / "compare-2"


def _run_with_otps(folder, otps_values):
    from harness.results.journal import Journal
    from harness.results.schema import Record, RunInfo, RunSpec

    journal = Journal(folder)
    journal.write_run_info(RunInfo(run_id=folder.name, spec=RunSpec(model="m", quantization="q4")))
    for i, otps in enumerate(otps_values):
        journal.append(
            Record(
                model="m",
                quantization="q4",
                engine="tvm",
                prompt_id="d01-summ-L200",
                task="summ",
                L=200,
                input_tokens=200,
                output_tokens=9,
                prefill_s=0.1,
                ttft_s=0.1,
                runtime_s=0.5,
                itps=2000.0,
                otps=otps,
                repeat=i,
            )
        )
    return folder


def test_ratio_is_this_run_over_the_baseline_cell(tmp_path, monkeypatch):
    monkeypatch.setattr(plots_module, "write_plots", lambda *args, **kwargs: [])
    new = _run_with_otps(tmp_path / "new", [30.0, 30.0, 30.0])
    old = _run_with_otps(tmp_path / "old", [20.0, 20.0, 20.0])
    outputs = write_report([new], tmp_path / "out", baseline=old)
    rows = outputs.summary.set_index("task")
    assert rows.loc["summ", "otps_ratio"] == pytest.approx(1.5)
    assert rows.loc["all", "otps_baseline"] == pytest.approx(20.0)
    assert "| 30 (1.50×) |" in outputs.markdown.read_text()


def test_estimated_ttft_is_marked(tmp_path):
    """Records of a native runner that prints no TTFT carry ttft_estimated; the tables say so."""
    from harness.results.journal import Journal
    from harness.results.schema import Record, RunInfo, RunSpec

    folder = tmp_path / "native"
    journal = Journal(folder)
    journal.write_run_info(
        RunInfo(run_id="native", spec=RunSpec(model="m", quantization="q4", runner="llama-bench"))
    )
    for i in range(2):
        journal.append(
            Record(
                model="m",
                quantization="q4",
                engine="llama.cpp",
                runner="llama-bench",
                prompt_id="d01-summ-L200",
                task="summ",
                L=200,
                input_tokens=200,
                output_tokens=9,
                prefill_s=0.1,
                ttft_s=0.12,
                runtime_s=0.5,
                itps=2000.0,
                otps=20.0,
                repeat=i,
                ttft_estimated=True,
            )
        )
    markdown = write_report([folder], tmp_path / "report").markdown.read_text()
    assert "| ~0.12 [" in markdown and "~TTFT: estimated as prefill + one decode step" in markdown


def test_runs_table_shows_the_run_id_only_where_the_folder_is_named_otherwise(
    measured_run_dir, tmp_path
):
    import json

    run_id = json.loads((measured_run_dir / "run.json").read_text())["run_id"]
    named_by_id = tmp_path / run_id
    shutil.copytree(measured_run_dir, named_by_id)
    runs = lambda md: md[md.index("## Runs") :].split("\n\n")[1]  # noqa: E731 - the section's first block
    by_id = runs(write_report([named_by_id], tmp_path / "a").markdown.read_text())
    assert "| run id |" not in by_id and by_id.count(run_id) == 1
    renamed = runs(write_report([measured_run_dir], tmp_path / "b").markdown.read_text())
    assert "| run id |" in renamed and run_id in renamed


def test_quant_column_names_the_format_that_ran(tmp_path):
    """A llama.cpp cell of preset q4f16_1 ran GGUF Q4_0: tables and the runs list say so, while
    a cell that ran its own preset shows just the preset."""
    from harness.results.journal import Journal
    from harness.results.schema import Record, RunInfo, RunSpec

    folders = []
    for engine, fmt, activations in [
        ("llama.cpp", "GGUF Q4_0", "int8"),
        ("tvm", "q4f16_1", "float32"),
    ]:
        folder = tmp_path / engine
        journal = Journal(folder)
        journal.write_run_info(
            RunInfo(
                run_id=engine,
                spec=RunSpec(model="m", quantization="q4f16_1", engine=engine),
                bundle={"format": fmt},
            )
        )
        journal.append(
            Record(
                model="m",
                quantization="q4f16_1",
                format=fmt,
                activations=activations,
                engine=engine,
                prompt_id="d01-summ-L200",
                task="summ",
                L=200,
                input_tokens=200,
                output_tokens=9,
                prefill_s=0.1,
                ttft_s=0.12,
                runtime_s=0.5,
                itps=2000.0,
                otps=20.0,
            )
        )
        folders.append(folder)
    markdown = write_report(folders, tmp_path / "report").markdown.read_text()
    overview = markdown[markdown.index("## Overview") : markdown.index("## Per task")]
    assert "| m | GGUF Q4_0 (as q4f16_1) |" in overview and "| m | q4f16_1 |" in overview
    runs = markdown[markdown.index("## Runs") :].split("\n\n")[1]
    assert "GGUF Q4_0 (as q4f16_1)" in runs


def test_every_html_table_scrolls_in_its_own_box(tmp_path, monkeypatch):
    """A table wider than the page keeps its natural width and scrolls inside a wrapper, so the
    page itself never clips it at the right edge."""
    import re
    from html.parser import HTMLParser

    monkeypatch.setattr(plots_module, "write_plots", lambda *args, **kwargs: [])
    page = write_report(
        [_run_with_otps(tmp_path / "run", [30.0, 31.0])], tmp_path / "out"
    ).html.read_text()

    class Parents(HTMLParser):
        def __init__(self):
            super().__init__()
            self.stack, self.table_parents = [], []

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.table_parents.append(self.stack[-1])
            self.stack.append((tag, dict(attrs).get("class")))

        def handle_endtag(self, tag):
            while self.stack and self.stack.pop()[0] != tag:
                pass

    parser = Parents()
    parser.feed(page)
    assert len(parser.table_parents) >= 3  # runs, overview, per task
    assert set(parser.table_parents) == {("div", "table-wrap")}
    css = page[page.index("<style>") : page.index("</style>")]
    assert re.search(r"\.table-wrap \{[^}]*overflow-x: auto", css)
    # natural width: no table is squeezed to the box
    assert not re.search(r"(^|\n)table \{[^}]*width:", css)
