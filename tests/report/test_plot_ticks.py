"""Tick labels of the log-scale parameter axes never run into each other.

The quick grid (SmolLM2-135M beside SmolLM-360M) printed ``350 M400 M``: matplotlib's log locator
fell back to linear steps that crowd the right end of the axis. These tests draw the real figures
and measure the labels' extents as the renderer lays them out.
"""

from __future__ import annotations

import pandas as pd
import pytest

from harness.report.logticks import ParamsLocator, label_digits, params_label
from harness.report.plots import build_series, new_figure, plot_peak_memory, plot_tradeoff

CLOSE_SIZES = {
    "smollm2-135m": 135e6,
    "smollm2-360m": 350e6,
    "smollm-360m": 360e6,
    "qwen2-0.5b": 400e6,
    "llama-3.2-1b": 1e9,
    "llama-3.1-8b": 8e9,
}
QUICK_GRID = {"smollm2-135m-instruct": 134_515_008, "smollm-360m-instruct": 361_821_120}
SAVED_DPI = 120  # save_figure's


def overall(sizes: dict[str, float], length: int = 600) -> pd.DataFrame:
    """A per model x L summary as summarize_overall shapes it, one row per model."""
    rows = []
    for model, params in sizes.items():
        row = {
            "model": model,
            "quantization": "q4f16_1",
            "weights": "real",
            "device": "phone",
            "engine": "tvm",
            "L": length,
            "params": params,
            "n": 3,
        }
        values = {
            "otps": 2e9 / params,
            "itps": 4e11 / params,
            "ttft_s": params / 4e8,
            "peak_mem_bytes": params,
        }
        for metric, value in values.items():
            row.update({f"{metric}_median": value, f"{metric}_p10": value, f"{metric}_p90": value})
        rows.append(row)
    return pd.DataFrame(rows)


def tick_labels(fig, ax) -> list[tuple[str, object]]:
    """(text, window extent) of the major x tick labels drawn inside the view, left to right."""
    fig.set_dpi(SAVED_DPI)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    low, high = ax.get_xlim()
    ticks = zip(ax.xaxis.get_majorticklocs(), ax.xaxis.get_majorticklabels(), strict=True)
    drawn = [
        (loc, label)
        for loc, label in ticks
        if low <= loc <= high and label.get_visible() and label.get_text()
    ]
    return [
        (label.get_text(), label.get_window_extent(renderer))
        for _, label in sorted(drawn, key=lambda d: d[0])
    ]


def assert_apart(labels, fontsize_pt: float) -> None:
    """At least two labels, all different, each pair clear of each other by an em or more: less,
    and two labels read as one (``350 M400 M`` had 11 px between them, under an em)."""
    texts = [text for text, _ in labels]
    assert len(labels) >= 2, texts
    assert len(set(texts)) == len(texts), texts
    em_px = fontsize_pt * SAVED_DPI / 72
    for i, (text_a, box_a) in enumerate(labels):
        for text_b, box_b in labels[i + 1 :]:
            assert not box_a.overlaps(box_b), (text_a, text_b)
    for (text_a, box_a), (text_b, box_b) in zip(labels, labels[1:], strict=False):
        assert box_b.x0 - box_a.x1 >= em_px, (text_a, text_b, box_b.x0 - box_a.x1)


@pytest.mark.parametrize("sizes", [CLOSE_SIZES, QUICK_GRID], ids=["135M-8B", "quick-grid"])
def test_tradeoff_and_memory_plots_label_the_params_axis_apart(sizes):
    series = build_series(overall(sizes))
    for fig in (plot_tradeoff(series, 600, "scope"), plot_peak_memory(series, 600, "scope")):
        for ax in fig.axes:
            labels = tick_labels(fig, ax)
            assert_apart(labels, ax.xaxis.get_majorticklabels()[0].get_fontsize())
            # parameters, as the tables count them
            assert all(text[-1] in "MB" for text, _ in labels)


def test_quick_grid_axis_has_round_readable_steps():
    series = build_series(overall(QUICK_GRID))
    fig = plot_tradeoff(series, 600, "scope")
    assert [text for text, _ in tick_labels(fig, fig.axes[0])] == ["150M", "200M", "300M", "400M"]


@pytest.mark.parametrize("width_in", [2.5, 4.0, 7.5])
@pytest.mark.parametrize(
    "xs",
    [(135e6, 350e6, 360e6, 400e6, 1e9, 8e9), (350e6, 360e6), (0.99e9, 1.01e9), (1e3, 1e12)],
    ids=["135M-8B", "350M-360M", "around-1B", "nine-decades"],
)
def test_labels_fit_at_any_axis_width(xs, width_in):
    """Narrow and wide axes, spans of a few percent up to nine decades."""
    from harness.report.plots import _fit_log_x, _style_params_axis

    fig, (ax,) = new_figure()
    fig.set_size_inches(width_in + 1.5, 3.0)
    _style_params_axis(ax, "y")
    _fit_log_x(ax, list(xs))
    ax.plot(xs, range(len(xs)), "o")
    assert_apart(tick_labels(fig, ax), ax.xaxis.get_majorticklabels()[0].get_fontsize())


def test_labels_carry_the_digits_that_tell_ticks_apart():
    assert [params_label(v) for v in (135e6, 1e9, 2.5e9, 999.99e6, 500)] == [
        "135M",
        "1B",
        "2.5B",
        "1B",
        "500",
    ]
    assert label_digits([350.2e6, 350.4e6]) == 4
    # not attached to an axis: a 5-inch one assumed
    ticks = ParamsLocator().tick_values(350e6, 352e6)
    assert len(ticks) >= 2 and len({params_label(t, label_digits(ticks)) for t in ticks}) == len(
        ticks
    )
