"""``slm-bench train slimlm``: pre-train and fine-tune a SlimLM, export it as a model directory."""

from __future__ import annotations

import os
from pathlib import Path

import click


@click.group("train")
def train():
    """Train a model with a built-in stage (see also `slm-bench stages`)."""


@train.command(
    "slimlm",
    epilog="""\b
Examples:
  slm-bench train slimlm --preset tiny --corpus prompts/corpus \\
      --docassist examples/data/docassist-tiny --out build/slimlm-tiny
  slm-bench run --model build/slimlm-tiny/slimlm-tiny --lengths 200 --repeats 1
  # DDP: gloo on CPU, nccl on GPUs
  torchrun --nproc_per_node=2 -m harness train slimlm --preset tiny --out build/ddp
Rerun the same command to resume from the checkpoints in OUT/checkpoints.""",
)
@click.option(
    "--preset",
    default="tiny",
    show_default=True,
    help="Size preset: 125m, 270m, 350m, 450m, 760m, 1b, tiny, micro.",
)
@click.option(
    "--corpus",
    multiple=True,
    help=(
        "Pre-training text: files or folders of .txt/.md, .jsonl, SlimPajama .jsonl.zst"
        " (repeatable). Default: prompts/corpus."
    ),
)
@click.option(
    "--docassist",
    type=click.Path(file_okay=False),
    help="DocAssist folder (train.jsonl ...) for fine-tuning; omit to pre-train only.",
)
@click.option("--pretrain-steps", type=int, help="Pre-training steps.")
@click.option("--sft-steps", type=int, help="Fine-tuning steps.")
@click.option("--seq-len", type=int, help="Pre-training window in tokens.")
@click.option("--batch-size", type=int, help="Pre-training sequences per step and process.")
@click.option("--seed", type=int, help="Seed of the weights and the batches.")
@click.option(
    "--stop-after",
    type=int,
    help="Do at most this many steps now, checkpoint and stop; rerun to continue.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any other training setting (lr_sft=5e-4, ckpt_every=20 ...).",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Run folder: tokenizer, checkpoints, and the exported model in OUT/slimlm-PRESET.",
)
def slimlm(
    preset,
    corpus,
    docassist,
    pretrain_steps,
    sft_steps,
    seq_len,
    batch_size,
    seed,
    stop_after,
    sets,
    out_dir,
):
    """Pre-train a SlimLM on a corpus (Lion), fine-tune it on DocAssist (AdamW, loss on answers
    only), and export config.json + model.safetensors + tokenizer + provenance.json to
    OUT/slimlm-PRESET."""
    from harness.cli.stages import parse_sets
    from harness.stages.slimlm.stage import SlimLMStage

    given = {
        "preset": preset,
        "corpus": list(corpus) or None,
        "docassist": docassist,
        "pretrain_steps": pretrain_steps,
        "sft_steps": sft_steps,
        "seq_len": seq_len,
        "batch_size": batch_size,
        "seed": seed,
        "stop_after": stop_after,
    }
    config = {k: v for k, v in given.items() if v is not None} | parse_sets(sets)
    model_dir = SlimLMStage().run(config, Path(out_dir), log=lambda m: click.echo(m, err=True))
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every process returns; one reports
        click.echo(str(model_dir))
