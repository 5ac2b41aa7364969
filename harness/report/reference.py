"""Published figures to compare measurements with (``--reference NAME``), labelled by device."""

from __future__ import annotations

from pathlib import Path

from harness.errors import UserError

DATA = Path(__file__).resolve().parent / "data"
REFERENCES = {
    "slimlm-s24": (
        DATA / "slimlm-s24-table1.csv",
        "Galaxy S24, SlimLM paper (arXiv 2411.09944, Table 1)",
    ),
}
METRICS = {"itps": "itps_tps", "otps": "otps_tps", "ttft_s": "ttft_s", "runtime_s": "runtime_s"}
# Published quality beside the speed reference: the same paper's Table 5, the average of its
# SUMM/QS/QA scores (BLEU, ROUGE, STS, GEval) on its DocAssist test set.
QUALITY_REFERENCES = {
    "slimlm-s24": (
        DATA / "slimlm-quality-avg.csv",
        "SlimLM paper (arXiv 2411.09944, Table 5), its DocAssist test set",
    ),
}


def check_reference(name: str, where: str = "") -> str:
    """``name`` if it is a known reference, else a one-line UserError listing the known ones.

    A grid checks its ``reference:`` before its first cell runs: a typo found only when the
    report is rendered would come after hours of measuring."""
    if name not in REFERENCES:
        source = f" in {where}" if where else ""
        raise UserError(f"unknown reference {name!r}{source}; available: {', '.join(REFERENCES)}")
    return name


def load_reference(name: str):
    """The reference as a DataFrame: model (lower-cased display name), L, metrics, device label.

    The paper's "question" rows (a one-line question, no document) are L=0, as the prompt
    suite's question-only prompts are: a grid run at ``--lengths 0,...`` matches them."""
    import pandas as pd

    path, device = REFERENCES[check_reference(name)]
    df = pd.read_csv(path)
    out = pd.DataFrame(
        {
            "model_key": df["model"].str.lower(),
            "model": df["model"],
            "L": df["nominal_L"].astype(int),
        }
    )
    for ours, theirs in METRICS.items():
        out[ours] = df[theirs].astype(float)
    out["device"] = device
    return out


def model_key(model: str) -> str:
    """Our model name -> the reference's (lower-cased catalog display name when it is a catalog
    model)."""
    from harness.models.catalog import load_catalog

    entry = load_catalog().get(model)
    return (entry.display if entry else model).lower()


def compare(overall, reference):
    """Rows of (model, L, measured device, metric: measured median, published, ratio) where both
    exist."""
    rows = []
    ref = {(r.model_key, r.L): r for r in reference.itertuples()}
    for r in overall.itertuples():
        published = ref.get((model_key(r.model), int(r.L)))
        if published is None:
            continue
        row = {
            "model": r.model,
            "L": int(r.L),
            "device": r.device,
            "reference_device": published.device,
        }
        for metric in METRICS:
            measured = getattr(r, f"{metric}_median", None)
            theirs = getattr(published, metric)
            row[metric] = (measured, theirs, measured / theirs if measured and theirs else None)
        rows.append(row)
    return rows


def load_quality_reference(name: str):
    """Published average quality per model (model_key, model, avg_score, source), or None."""
    import pandas as pd

    if name not in QUALITY_REFERENCES:
        return None
    path, source = QUALITY_REFERENCES[name]
    df = pd.read_csv(path)
    return pd.DataFrame(
        {
            "model_key": df["model"].str.lower(),
            "model": df["model"],
            "avg_score": df["avg_score_summ_qs_qa"].astype(float),
            "source": source,
        }
    )


def compare_quality(quality, reference) -> list[tuple[str, str, float, float]]:
    """(our model, dataset, our avg score over tasks, published avg score) for models in both."""
    published = {r.model_key: r.avg_score for r in reference.itertuples()}
    rows = []
    for (model, dataset), part in quality.groupby(["model", "dataset"], sort=True):
        theirs = published.get(model_key(model))
        if theirs is not None and part["avg_score"].notna().any():
            rows.append((model, dataset, float(part["avg_score"].mean()), theirs))
    return rows
