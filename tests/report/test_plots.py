"""Plots: every file is written; Pareto and ceiling logic; dummy weights marked."""

import pandas as pd
import pytest

from harness.errors import UserError
from harness.report.aggregate import load_runs, summarize_overall
from harness.report.plots import (
    build_series,
    decode_ceilings,
    default_length,
    plot_peak_memory,
    plot_tradeoff,
    write_plots,
)

EXPECTED_STEMS = [
    "itps_vs_L",
    "otps_vs_L",
    "ttft_vs_L",
    "runtime_vs_L",
    "tradeoff_L1000",
    "peak_mem_vs_params",
    "heatmap_otps",
    "heatmap_ttft",
    "quality_vs_otps",
]


@pytest.fixture(scope="module")
def plots_dir(measured_run_dir, second_model_run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("plots")
    written = write_plots([measured_run_dir, second_model_run_dir], out)
    return out, written


def test_every_plot_is_written_as_png_and_svg(plots_dir):
    out, written = plots_dir
    assert sorted(p.name for p in written) == sorted(
        f"{s}.{ext}" for s in EXPECTED_STEMS for ext in ("png", "svg")
    )
    for path in written:
        head = path.read_bytes()[:8]
        assert head == b"\x89PNG\r\n\x1a\n" if path.suffix == ".png" else head.startswith(b"<?xml")


def test_svgs_carry_labels_units_and_markings(plots_dir):
    out, _ = plots_dir
    otps = (out / "otps_vs_L.svg").read_text()
    assert "OTPS (output tokens/s)" in otps and "context length L (cl100k tokens)" in otps
    assert "(dummy weights)" in otps
    assert "decode ceiling" in otps  # the runs carry bandwidth and weight bytes
    assert "quantization: q4f16_1" in otps
    tradeoff = (out / "tradeoff_L1000.svg").read_text()
    assert "Pareto frontier" in tradeoff and "parameters (log scale)" in tradeoff
    heatmap = (out / "heatmap_ttft.svg").read_text()
    assert "over model x L" in heatmap and "TTFT (s)" in heatmap and "(dummy weights)" in heatmap
    assert "peak memory (MiB)" in (out / "peak_mem_vs_params.svg").read_text()


def test_unmeasured_length_is_a_user_error(measured_run_dir, tmp_path):
    with pytest.raises(UserError, match="--L"):
        write_plots([measured_run_dir], tmp_path, L=300)


def test_ceiling_is_bandwidth_over_weight_bytes(measured_run_dir):
    data = load_runs([measured_run_dir])
    (info,) = data.infos.values()
    ((key, ceiling),) = decode_ceilings(data).items()
    assert key[:2] == (info.spec.model, info.spec.quantization) and key[3] == info.spec.engine
    assert ceiling == pytest.approx(
        info.device_profile["memory_bandwidth_gbps"] * 1e9 / info.bundle["weight_bytes"]
    )


def test_default_length_is_the_largest_common_one(measured_run_dir):
    series = build_series(summarize_overall(load_runs([measured_run_dir]).df))
    assert default_length(series) == 1000
    series[0].rows = series[0].rows[series[0].rows["L"] <= 600]
    assert default_length(series) == 600


def test_figures_without_data_say_so():
    empty = build_series(pd.DataFrame())
    for fig in (plot_tradeoff(empty, 200, "scope"), plot_peak_memory(empty, 200, "scope")):
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        assert any("no " in t for t in texts)


def test_the_question_alone_keeps_its_length_in_the_tradeoff_file_name(tmp_path):
    """L=0 (the paper's question without a document) is a length like any other: tradeoff_L0."""
    from harness.report.plots import write_plots
    from tests.conftest import make_engine_run

    run = make_engine_run(
        tmp_path / "run", "dummy:tiny-llama", repeats=1, lengths=(0,), tasks=("qa",)
    )
    names = {p.name for p in write_plots([run], tmp_path / "plots")}
    assert "tradeoff_L0.png" in names and "tradeoff.png" not in names
