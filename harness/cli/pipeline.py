"""``slm-bench pipeline FILE.yaml``: train a model with a stage, compile, benchmark, evaluate it."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command(
    "pipeline",
    epilog="""\b
Examples:
  slm-bench pipeline examples/slimlm-tiny.yaml                  # a few minutes on a laptop CPU
  slm-bench pipeline examples/slimlm-tiny.yaml --out build/mine
  # speed and quality, beside other runs
  slm-bench report build/slimlm-tiny/runs/*
Rerun the same command to resume (training checkpoints, the benchmark journal).""",
)
@click.argument("spec_file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Output folder [default: the file's `out`, else build/<file name>].",
)
def pipeline(spec_file, out_dir):
    """Run the stage in SPEC_FILE (pre-train, fine-tune, export), compile the model to the
    benchmark's quantization, measure it through the same path as `slm-bench run`, evaluate it on
    DocAssist, and write OUT/pipeline.json."""
    from harness.paths import REPO_ROOT
    from harness.stages.pipeline import load_pipeline, run_pipeline

    spec = load_pipeline(Path(spec_file))
    out = Path(out_dir or spec.out or REPO_ROOT / "build" / Path(spec_file).stem)
    summary = run_pipeline(spec, out, log=lambda m: click.echo(m, err=True))
    click.echo(
        json.dumps(
            {
                k: summary[k]
                for k in ("model_dir", "run_dir", "training", "quality", "baseline_quality")
                if k in summary
            },
            indent=1,
        )
    )
