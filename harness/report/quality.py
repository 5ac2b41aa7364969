"""Quality beside speed: the ``slm-bench eval`` results of the runs in a report.

``slm-bench eval --out RUN_DIR`` journals one ``QualityRecord`` per task into
``RUN_DIR/quality.jsonl``. A report reads them from every run directory it renders and shows a
quality table and a quality-vs-decode-speed plot, joining on (model, quantization, engine): the
question the SlimLM study asks of its models — how much answer quality a phone-speed model keeps.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from harness.results.schema import QualityRecord

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from harness.report.render import Table

QUALITY_FILE = "quality.jsonl"  # the name harness.eval.evaluate writes
JOIN_KEYS = ("model", "quantization", "engine")
SCORES = ("bleu", "rouge1", "rouge2", "rougeL", "sts", "intent_accuracy", "self_bleu", "avg_score")


def load_quality(run_dirs: list[Path | str]) -> tuple[pd.DataFrame, list[str]]:
    """All quality records of these runs (one row per model x task), and unreadable lines."""
    import pandas as pd

    rows, problems = [], []
    for run_dir in map(Path, run_dirs):
        path = run_dir / QUALITY_FILE
        if not path.is_file():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(QualityRecord.model_validate_json(line).model_dump())
            except ValidationError as exc:
                problems.append(f"{run_dir.name}/{QUALITY_FILE}:{number}: {exc.errors()[0]['msg']}")
    return pd.DataFrame(rows), problems


def quality_table(quality: pd.DataFrame) -> Table | None:
    from harness.report.render import Table

    if quality.empty:
        return None
    rows = []
    for _, r in quality.sort_values([*JOIN_KEYS, "task"]).iterrows():
        label = (
            f"{r['model']} ({r['quantization']})"
            + (f" [{r['engine']}]" if r["engine"] != "tvm" else "")
            + (" *" if r["weights"] == "dummy" else "")
        )
        rows.append(
            [
                label,
                str(r["task"]),
                f"{r['dataset']}/{r['split']}",
                str(r["n"]),
                *(_score(r.get(s)) for s in SCORES),
            ]
        )
    headers = [
        "model",
        "task",
        "data",
        "n",
        "BLEU",
        "ROUGE-1",
        "ROUGE-2",
        "ROUGE-L",
        "STS",
        "intent acc.",
        "Self-BLEU",
        "avg score",
    ]
    note = (
        "Scores on 0..1 (`slm-bench eval`, definitions in "
        "harness/eval/metrics.py). avg score = mean of BLEU, ROUGE-1/2/L, STS (and "
        "GEval when judged); Self-BLEU: lower is more diverse. * = dummy weights."
    )
    return Table("Quality (DocAssist)", headers, rows, note)


def quality_points(quality: pd.DataFrame, overall: pd.DataFrame, length: int) -> pd.DataFrame:
    """Per model build: mean avg_score over tasks, joined with its median OTPS and params at L."""
    if quality.empty or overall.empty or "otps_median" not in overall:
        return overall.iloc[0:0]
    scores = quality.groupby(list(JOIN_KEYS), as_index=False)["avg_score"].mean()
    speed = overall[overall["L"] == length][[*JOIN_KEYS, "weights", "params", "otps_median"]]
    return scores.merge(speed, on=list(JOIN_KEYS), how="inner").dropna(
        subset=["avg_score", "otps_median"]
    )


def plot_quality_vs_speed(
    quality: pd.DataFrame, overall: pd.DataFrame, length: int, scope: str
) -> Figure:
    from harness.report.plots import empty_figure, new_figure, short_model_name

    title = f"Quality vs decode speed at L={length}\n{scope}"
    points = quality_points(quality, overall, length)
    if points.empty:
        return empty_figure(
            title,
            "no quality results in these runs; add them with "
            "`slm-bench eval --model M --docassist DIR --out RUN_DIR`",
        )
    fig, (ax,) = new_figure()
    for index, (_, p) in enumerate(points.iterrows()):
        color = f"C{index % 10}"
        dummy = p["weights"] == "dummy"
        ax.plot(
            float(p["otps_median"]),
            float(p["avg_score"]),
            "o",
            color=color,
            markerfacecolor="none" if dummy else color,
            markersize=9,
        )
        ax.annotate(
            short_model_name(str(p["model"])) + (" (dummy weights)" if dummy else ""),
            (float(p["otps_median"]), float(p["avg_score"])),
            textcoords="offset points",
            xytext=(6, 6),
            fontsize="x-small",
        )
    ax.set_xlabel(f"OTPS at L={length} (output tokens/s, median)")
    ax.set_ylabel("avg quality score (0..1, DocAssist tasks)")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    return fig


def _score(value) -> str:
    return "" if value is None or math.isnan(float(value)) else f"{float(value):.3f}"
