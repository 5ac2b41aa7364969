"""Grid output folders laid out as ``run_grid`` writes them: ``<grid>/<run-id>/`` per cell, each
with run.json and records.jsonl, and the grid's own ``report/`` beside the cells.

The journals are written through the harness's own Journal and Record (so they match the
schema); their numbers are chosen, not measured: these tests are about which folders are read.
"""

from __future__ import annotations

from pathlib import Path

from harness.benchmark import run_id_for
from harness.results.journal import RECORDS_FILE, Journal
from harness.results.schema import DeviceInfo, Record, RunInfo, RunSpec

LENGTHS = (200, 600)
DEVICE = DeviceInfo(serial="local", model="test desktop")


def write_cell(grid: Path, model: str, params: int, otps: float = 20.0, repeats: int = 2) -> Path:
    """One cell: ``repeats`` measured requests per L, OTPS ``otps``, named by its run id."""
    spec = RunSpec(
        model=model,
        quantization="q4f16_1",
        tasks=["summ"],
        lengths=list(LENGTHS),
        repeats=repeats,
        warmup=0,
        docs=1,
    )
    run_id = run_id_for(spec)
    journal = Journal(grid / run_id)
    journal.write_run_info(RunInfo(run_id=run_id, spec=spec, device=DEVICE))
    for length in LENGTHS:
        for repeat in range(repeats):
            prefill_s = length / 2000
            journal.append(
                Record(
                    model=model,
                    params=params,
                    quantization="q4f16_1",
                    engine="tvm",
                    target="llvm",
                    device=DEVICE,
                    prompt_id=f"d01-summ-L{length}",
                    task="summ",
                    L=length,
                    repeat=repeat,
                    run_id=run_id,
                    input_tokens=length,
                    output_tokens=9,
                    prefill_s=prefill_s,
                    ttft_s=prefill_s + 0.05,
                    decode_s=8 / otps,
                    itps=2000.0,
                    otps=otps,
                    runtime_s=prefill_s + 8 / otps,
                    peak_mem_bytes=params,
                )
            )
    return grid / run_id


def write_grid(grid: Path, models: dict[str, int], otps: float = 20.0) -> list[Path]:
    """A finished grid: one cell per model, plus the ``report/`` folder the grid renders."""
    cells = [write_cell(grid, model, params, otps) for model, params in models.items()]
    (grid / "report").mkdir()
    (grid / "report" / "report.md").write_text("# an earlier grid report\n")
    return cells


def damage_line(run_dir: Path, number: int) -> None:
    """Insert a line that is not JSON as line ``number`` of the cell's journal."""
    lines = (run_dir / RECORDS_FILE).read_text().splitlines(keepends=True)
    lines.insert(number - 1, "{not json\n")
    (run_dir / RECORDS_FILE).write_text("".join(lines))
