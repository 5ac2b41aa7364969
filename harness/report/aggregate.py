"""Load run directories into a DataFrame and summarize the measurements.

One row per Record, with ``device.*`` flattened into columns (``device.serial``,
``device.model``...) and a ``device`` label column (the device model, else its serial)
used for grouping: the phones of a pool (``pool:galaxy-s24``), one device model, share one row of
the tables, however many of them measured a cell (harness.report.units gives each phone its own
rows). Statistics use only measured records: ``warmup == False`` and ``status == "ok"``;
warmups, failures and skipped cells are kept in the frame for the report's bookkeeping but never
enter a median.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.devices.topology import cores_of_mask, format_list
from harness.errors import UserError
from harness.results.journal import RECORDS_FILE, RUN_FILE, load, read_run_info
from harness.results.schema import Record, RunInfo

# Metrics summarized, in report order; only those with at least one value are used (energy is
# only measured on phones with a fuel gauge).
METRICS: tuple[str, ...] = (
    "itps",
    "otps",
    "ttft_s",
    "runtime_s",
    "input_tokens",
    "peak_mem_bytes",
    "energy_j_per_token",
    "energy_j_per_token_above_idle",
)
# Conditions a cell ran under, not speeds: only their median is kept (``<name>_median``), where
# some record has one; harness.report.noise reads it.
CONDITIONS: tuple[str, ...] = ("cpu_load_other",)
STATS: tuple[str, ...] = ("median", "p10", "p90", "stdev", "cv", "count")
# One result cell: a model build on a device and engine, run with one thread count on one core
# set (``cpus``, so two settings of a sweep never pool into one median), for one task and length.
GROUP_KEYS: tuple[str, ...] = (
    "model",
    "quantization",
    "weights",
    "device",
    "engine",
    "target",
    "cpus",
    "task",
    "L",
)
OVERALL_KEYS: tuple[str, ...] = tuple(k for k in GROUP_KEYS if k != "task")
# The hottest thermal zone before each request (device_state_before.cpu_temp_c), as a column.
TEMP_BEFORE = "cpu_temp_c_before"
# Bulky per-record fields that no table or plot needs.
_DROPPED = {"output_text", "output_ids", "stamps_ns", "device_state_before", "device_state_after"}


@dataclass
class RunData:
    """Everything a report or plot needs from a set of run directories."""

    df: pd.DataFrame  # all records, flattened, with `run` (directory name) and `run_dir`
    infos: dict[str, RunInfo] = field(default_factory=dict)  # run name -> run.json
    problems: list[str] = field(default_factory=list)  # "<run>/records.jsonl:LINE: reason"

    @property
    def measured(self) -> pd.DataFrame:
        return measured(self.df)


def load_runs(run_dirs: list[Path | str] | tuple[Path | str, ...]) -> RunData:
    """Load each run directory (run.json + records.jsonl), or every cell of a grid's output
    folder (:func:`expand_run_dirs`), into one RunData."""
    if not run_dirs:
        raise UserError("no run directory given; fix: pass one or more results/<run> folders")
    frames, infos, problems, names = [], {}, [], set()
    for run_dir in expand_run_dirs(run_dirs):
        name = _unique_name(run_dir, names)
        names.add(name)
        info = read_run_info(run_dir)
        if info is not None:
            infos[name] = info
        records, bad_lines = load(run_dir)
        problems += [f"{name}/{line}" for line in bad_lines]
        frames.append(records_frame(records, name, run_dir))
    df = pd.concat(frames, ignore_index=True) if frames else records_frame([], "", Path())
    return RunData(df=df, infos=infos, problems=problems)


def expand_run_dirs(folders: list[Path | str] | tuple[Path | str, ...]) -> list[Path]:
    """The run directories that ``folders`` name: a run folder (run.json or records.jsonl) is
    itself; a grid's output folder is every cell in it (``<grid>/<run-id>/``, in name order).

    Every command that reads runs (report, plot, compare) goes through here, so each takes a
    grid folder wherever it takes a run folder. The grid's own ``report/`` holds no journal and
    is passed over like any other folder that is not a run.
    """
    runs: list[Path] = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise UserError(
                f"run directory {folder} does not exist; "
                "fix: pass a folder written by `slm-bench run` or `slm-bench grid`"
            )
        if _is_run(folder):
            runs.append(folder)
            continue
        cells = sorted(child for child in folder.iterdir() if child.is_dir() and _is_run(child))
        if not cells:
            raise UserError(
                f"{folder} holds neither a run ({RUN_FILE}, {RECORDS_FILE}) "
                "nor run folders; fix: pass a run folder of `slm-bench "
                "run` or a grid's output folder of `slm-bench grid`"
            )
        runs += cells
    # A run named twice (a grid and one of its cells) would count its records twice.
    unique: dict[Path, Path] = {}
    for run in runs:
        unique.setdefault(run.resolve(), run)
    return list(unique.values())


def _is_run(folder: Path) -> bool:
    return (folder / RUN_FILE).exists() or (folder / RECORDS_FILE).exists()


def _unique_name(run_dir: Path, taken: set[str]) -> str:
    """The folder name, made unique when two runs share one (results/a/x vs results/b/x)."""
    name = run_dir.resolve().name
    if name not in taken:
        return name
    return f"{run_dir.resolve().parent.name}/{name}"


def device_label(device: dict) -> str:
    """A device's name in tables, titles and plot legends. An emulated phone says so, with the CPU
    that ran its programs, so its timings are never read as that phone's speed."""
    name = device.get("model") or device.get("serial") or "unknown"
    return f"{name} (emulated {device.get('machine') or '?'})" if device.get("emulated") else name


def format_label(asked: str, ran: str | None) -> str:
    """What a table's quant column says: the format that ran (q4f16_1a8, GGUF Q4_0), with the
    preset asked for beside it where they differ (a llama.cpp cell of preset q4f16_1 ran Q4_0)."""
    return asked if not ran or ran == asked else f"{ran} (as {asked})"


def format_labels(df: pd.DataFrame) -> dict[tuple, str]:
    """(model, quantization, engine) -> :func:`format_label`, from the records' ``format``."""
    if df.empty or "format" not in df:
        return {}
    labels = {}
    for (model, asked, engine), part in df.groupby(
        ["model", "quantization", "engine"], dropna=False
    ):
        ran = sorted({str(f) for f in part["format"].dropna() if f})
        labels[(model, asked, engine)] = format_label(str(asked), ", ".join(ran) or None)
    return labels


def with_format_labels(summary: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """The summary with its quantization column relabelled for display (keys are matched before)."""
    labels = format_labels(df)
    if summary.empty or not labels:
        return summary
    keys = zip(summary["model"], summary["quantization"], summary["engine"], strict=True)
    return summary.assign(quantization=[labels.get(k, k[1]) for k in keys])


def placement_label(record: Record) -> str:
    """Where a request ran, as tables and legends name the setting: ``2 threads · big (0-1)``,
    plus `` · oversubscribed``; "" for a record that says nothing about it (made before placement
    was recorded), so old reports look as they did.

    Built from what was read back from the runner (what ran), falling back to what was asked
    where the read-back is missing, so a setting is named even when reading it back failed."""
    asked_cores = cores_of_mask(record.cpu_mask_asked) if record.cpu_mask_asked else []
    threads = record.threads or record.threads_asked or len(asked_cores) or None
    cpu_list = record.cpu_list or (format_list(asked_cores) if asked_cores else None)
    where = "+".join(record.cpu_clusters or []) or record.cores_asked or ""
    if threads is None and cpu_list is None and not where:
        return ""
    parts = [f"{threads} thread{'s' * (threads != 1)}"] if threads else []
    if where or cpu_list:
        parts.append(f"{where or 'cpu'} ({cpu_list})" if cpu_list else where)
    if record.oversubscribed:
        parts.append("oversubscribed")
    return " · ".join(parts)


def setting_order(label: str | None) -> str:
    """A sort key for ``cpus`` labels: the thread count as a number, then the label, so
    "2 threads" sorts before "10 threads"; a label without a thread count ("") first."""
    match = re.match(r"(\d+) thread", label or "")
    return f"{int(match[1]) if match else 0:06d} {label or ''}"


def records_frame(records: list[Record], run: str, run_dir: Path) -> pd.DataFrame:
    """One row per record; nested ``device`` becomes ``device.<field>`` columns, and ``cpus``
    names the thread count and core set it ran with (:func:`placement_label`)."""
    rows = []
    for record in records:
        row = record.model_dump(exclude=_DROPPED)
        device = row.pop("device") or {}
        row.update({f"device.{key}": value for key, value in device.items()})
        row["device"] = device_label(device)
        # the one condition of device_state_before a table shows (harness.report.units)
        state = record.device_state_before
        row[TEMP_BEFORE] = state.cpu_temp_c if state is not None else None
        row["cpus"] = placement_label(record)
        row["run"] = run
        row["run_dir"] = str(run_dir)
        rows.append(row)
    columns = list(Record.model_fields) + [
        "device.serial",
        "device.model",
        "cpus",
        "run",
        "run_dir",
    ]
    df = (
        pd.DataFrame(rows)
        if rows
        else pd.DataFrame(columns=[c for c in columns if c not in _DROPPED])
    )
    return df


def measured(df: pd.DataFrame) -> pd.DataFrame:
    """The rows that statistics are computed from: not warmup, status ok."""
    if df.empty:
        return df
    return df[(~df["warmup"].astype(bool)) & (df["status"] == "ok")]


def present_metrics(df: pd.DataFrame) -> list[str]:
    """Metrics of METRICS that have at least one value in ``df``."""
    return [m for m in METRICS if m in df.columns and df[m].notna().any()]


def present_conditions(df: pd.DataFrame) -> list[str]:
    """Conditions of CONDITIONS that have at least one value in ``df``."""
    return [c for c in CONDITIONS if c in df.columns and df[c].notna().any()]


def summarize(df: pd.DataFrame, by: tuple[str, ...] = GROUP_KEYS) -> pd.DataFrame:
    """Per group: ``<metric>_<stat>`` for each present metric, ``<condition>_median`` for each
    present condition, plus ``n`` and ``params``.

    ``df`` may be all records: warmups, failures and skips are filtered out here. Stats:
    median, p10/p90 (10th/90th percentile, linear interpolation), stdev (sample, ddof=1;
    empty for a single value), cv = stdev / mean, count (non-missing values).
    """
    data = measured(df)
    if "cpus" in by and "cpus" not in data:
        data = data.assign(cpus="")  # a frame built by hand, without placement: one setting
    metrics, conditions = present_metrics(data), present_conditions(data)
    if data.empty:
        return pd.DataFrame(
            columns=[*by, "n", "params", *(f"{m}_{s}" for m in metrics for s in STATS)]
        )
    numeric = (*metrics, *conditions, "params")
    data = data.assign(**{m: pd.to_numeric(data[m], errors="coerce") for m in numeric})
    groups = data.groupby(list(by), dropna=False, sort=True)
    parts = [groups.size().rename("n"), groups["params"].max().rename("params")]
    if "ttft_estimated" in data and data["ttft_estimated"].fillna(False).astype(bool).any():
        # Native runners that print no TTFT give prefill + one decode step; the report marks it.
        parts.append(
            groups["ttft_estimated"]
            .agg(lambda v: bool(v.fillna(False).astype(bool).any()))
            .rename("ttft_estimated")
        )
    for metric in metrics:
        values = groups[metric]
        stdev = values.std(ddof=1)
        parts += [
            values.median().rename(f"{metric}_median"),
            values.quantile(0.1).rename(f"{metric}_p10"),
            values.quantile(0.9).rename(f"{metric}_p90"),
            stdev.rename(f"{metric}_stdev"),
            (stdev / values.mean()).rename(f"{metric}_cv"),
            values.count().rename(f"{metric}_count"),
        ]
    parts += [groups[c].median().rename(f"{c}_median") for c in conditions]
    return pd.concat(parts, axis=1).reset_index()


def summarize_overall(df: pd.DataFrame) -> pd.DataFrame:
    """The per model x L summary with all tasks pooled."""
    return summarize(df, OVERALL_KEYS)


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per-task rows followed by pooled rows (``task == "all"``): what summary.csv holds."""
    overall = summarize_overall(df)
    overall.insert(list(GROUP_KEYS).index("task"), "task", "all")
    return pd.concat([summarize(df), overall], ignore_index=True)


def status_counts(df: pd.DataFrame) -> pd.DataFrame:
    """Per run: how many records were ok, failed, skipped, and how many were warmups."""
    if df.empty:
        return pd.DataFrame(columns=["run", "ok", "failed", "skipped", "warmup"])
    rows = []
    for run, part in df.groupby("run", sort=False):
        warm = part["warmup"].astype(bool)
        counts = part.loc[~warm, "status"].value_counts()
        rows.append(
            {
                "run": run,
                **{s: int(counts.get(s, 0)) for s in ("ok", "failed", "skipped")},
                "warmup": int(warm.sum()),
            }
        )
    return pd.DataFrame(rows)
