"""Trade-off tables: Pareto fronts, "choose a model" under budgets, decode vs the ceiling."""

from __future__ import annotations

import pandas as pd

from harness.report.aggregate import load_runs, summarize_overall
from harness.report.plots import decode_ceilings
from harness.report.render import write_report
from harness.report.tradeoff import (
    ceiling_table,
    choose_model_table,
    pareto_front,
    pareto_table,
    tradeoff_tables,
)

GIB = 2**30


def test_pareto_front():
    params = [100, 200, 300, 400]
    otps = [50.0, 40.0, 60.0, 55.0]
    assert pareto_front(params, otps, higher_is_better=True) == [0, 2]
    ttft = [1.0, 0.5, 0.7, 0.4]
    assert pareto_front(params, ttft, higher_is_better=False) == [0, 1, 3]
    assert pareto_front([1, 1], [2.0, 2.0], higher_is_better=True) == [0, 1]  # ties beat no one


def summary_rows(rows: list[tuple]) -> pd.DataFrame:
    """A per model x L summary as summarize_overall shapes it (model, params, L, TTFT, OTPS,
    peak)."""
    return pd.DataFrame(
        [
            {
                "model": m,
                "quantization": "q4f16_1",
                "weights": "real",
                "engine": "tvm",
                "device": "phone",
                "L": length,
                "params": p,
                "ttft_s_median": ttft,
                "otps_median": otps,
                "peak_mem_bytes_median": peak,
            }
            for m, p, length, ttft, otps, peak in rows
        ]
    )


def test_choose_picks_the_largest_model_within_both_budgets():
    overall = summary_rows(
        [
            ("small", 135e6, 200, 0.3, 60.0, 0.3 * GIB),
            ("mid", 1.0e9, 200, 1.5, 20.0, 1.2 * GIB),
            ("big", 3.0e9, 200, 4.0, 8.0, 2.5 * GIB),
            ("huge", 8.0e9, 200, 9.0, 3.0, 5.0 * GIB),
            ("small", 135e6, 1000, 1.1, 55.0, 0.4 * GIB),
            ("mid", 1.0e9, 1000, 7.5, 18.0, 1.4 * GIB),
            ("big", 3.0e9, 1000, 21.0, 7.0, 2.8 * GIB),
        ]
    )
    table = choose_model_table(overall, {"phone": 4 * GIB}, (2.0, 10.0))
    by_l = {row[1]: row for row in table.rows}
    # huge is over 4 GiB
    assert by_l["200"][3].startswith("mid") and by_l["200"][4].startswith("big")
    assert by_l["1000"][3].startswith("small") and by_l["1000"][4].startswith("mid")
    unbudgeted = choose_model_table(overall, {}, (10.0,))
    assert {row[1]: row[3].split(" ")[0] for row in unbudgeted.rows}["200"].startswith("huge")


def test_pareto_table_lists_fronts_per_length():
    overall = summary_rows(
        [
            ("small", 135e6, 200, 0.3, 60.0, 0.3 * GIB),
            (
                "slow-mid",
                1.0e9,
                200,
                0.2,
                10.0,
                1.2 * GIB,
            ),  # answers sooner than small: on the TTFT front
            ("bad", 2.0e9, 200, 3.0, 5.0, 2.0 * GIB),  # beaten on both
        ]
    )
    (row,) = pareto_table(overall).rows
    assert "small" in row[2] and "slow-mid" in row[2] and "bad" not in row[2]
    assert "small" in row[3] and "slow-mid" not in row[3] and "bad" not in row[3]


def test_tables_from_two_measured_runs(measured_run_dir, second_model_run_dir, tmp_path):
    data = load_runs([measured_run_dir, second_model_run_dir])
    overall = summarize_overall(data.df)
    ceilings = decode_ceilings(data)
    titles = [t.title for t in tradeoff_tables(data, overall, ceilings)]
    assert titles == [
        "Pareto-optimal models per L",
        "Choose a model",
        "Decode vs the bandwidth ceiling",
    ]
    ceiling = ceiling_table(overall, ceilings)
    assert len(ceiling.rows) == 2 and all(
        cell.endswith("%") for row in ceiling.rows for cell in row[3:]
    )
    # the percentages are OTPS / ceiling, computed from the runs' own bandwidth and weight bytes
    key = next(iter(ceilings))
    row = overall[(overall["model"] == key[0]) & (overall["L"] == 200)].iloc[0]
    expected = f"{100 * row['otps_median'] / ceilings[key]:.0f}%"
    assert expected in next(r for r in ceiling.rows if r[0].startswith(key[0]))

    outputs = write_report([measured_run_dir, second_model_run_dir], tmp_path / "report")
    markdown = outputs.markdown.read_text()
    assert "## Choose a model" in markdown and "## Pareto-optimal models per L" in markdown
    assert "heatmap_otps.png" in markdown


def test_one_model_gets_no_choice_table(measured_run_dir):
    data = load_runs([measured_run_dir])
    titles = [
        t.title for t in tradeoff_tables(data, summarize_overall(data.df), decode_ceilings(data))
    ]
    assert titles == ["Decode vs the bandwidth ceiling"]
