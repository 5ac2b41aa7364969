"""A run's kernel profile in its report.

``slm-bench profile --out RUN_DIR`` leaves ``profile.json`` and ``profile.png`` in a run's
folder; ``slm-bench report RUN_DIR`` then shows, per phase and L, where the time went (kernel
groups, their rates against the machine's ceilings, the check against the measured time) and
the profile's chart. The tables are the profile's own rows (``harness.profiling.render``), so
the report and ``profile.md`` cannot disagree.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.profiling.render import (
    COLUMNS,
    check_line,
    gap_line,
    header,
    phase_heading,
    phase_rows,
)
from harness.profiling.schema import ProfileResult

PROFILE_FILE = "profile.json"
CHART_FILE = "profile.png"


def load_profiles(run_dirs: list[str | Path]) -> tuple[list[tuple[Path, ProfileResult]], list[str]]:
    """(run folder, its profile) for every run folder holding a profile.json, and one problem
    line per profile.json that cannot be read (the report goes on without it)."""
    from pydantic import ValidationError

    found, problems = [], []
    for run_dir in map(Path, run_dirs):
        path = run_dir / PROFILE_FILE
        if not path.is_file():
            continue
        try:
            found.append((run_dir, ProfileResult.model_validate_json(path.read_text())))
        except (ValidationError, ValueError, OSError) as exc:
            first = str(exc).strip().splitlines()[0]
            problems.append(
                f"{path}: not a profile this slm-bench can read ({first}); rerun"
                f" `slm-bench profile --out {run_dir}` to replace it"
            )
    return found, problems


def profile_tables(profiles: list[tuple[Path, ProfileResult]]) -> list:
    """One table per phase and L of every profile: the kernel groups, their total and the top
    kernels, with the profile's header, the phase's measurement and its check as the note."""
    from harness.report.render import Table

    tables = []
    for run_dir, result in profiles:
        about = " ".join(header(result).split("\n"))
        for i, phase in enumerate(result.phases):
            groups, total, kernels = phase_rows(phase)
            gap = gap_line(phase, result.ceilings.bandwidth_gbps)
            note = " ".join(filter(None, [phase_heading(phase) + ".", check_line(phase), gap]))
            tables.append(
                Table(
                    title=(
                        f"Where the time goes: {result.model} {result.quantization}, L={phase.L}"
                        f" {phase.phase} ({run_dir.name})"
                    ),
                    headers=list(COLUMNS),
                    rows=[*groups, total, *[[f"kernel {r[0].strip()}", *r[1:]] for r in kernels]],
                    note=f"{note} Profile: {about}" if i == 0 else note,
                )
            )
    return tables


def copy_charts(profiles: list[tuple[Path, ProfileResult]], plots_dir: Path) -> list[Path]:
    """Each profile's chart into the report's plots folder, named after its run."""
    copied = []
    for run_dir, _ in profiles:
        chart = run_dir / CHART_FILE
        if chart.is_file():
            plots_dir.mkdir(parents=True, exist_ok=True)
            copied.append(Path(shutil.copyfile(chart, plots_dir / f"profile-{run_dir.name}.png")))
    return copied
