"""``slm-bench profile``: where prefill and decode spend their time, kernel by kernel."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.options import csv_ints

EPILOG = """\b
Examples:
  slm-bench profile --model smollm2-135m-instruct --lengths 200,1000
  slm-bench profile --model qwen2-0.5b-instruct --quantization q4f16_1a8 --decode-steps 32
  slm-bench profile --model dummy:tiny-llama --lengths 200 --out /tmp/prof

\b
For each L: a warm-up, then one plain pass and one profiled pass, each a prefill of the suite's
L-token summarization prompt and --decode-steps greedy decode steps. The profiled pass times
every call the Relax VM makes (its instrument hook) and works out the bytes and operations of
each from its argument shapes. Kernels are grouped (linear layers, attention with RoPE and the
KV append, norms, LM head + sampling, embedding, elementwise); the VM and host overhead is the
plain pass's phase time minus the kernels' time, so each table's groups add up to the measured
phase time, and the total row shows it. The heading of each table gives the profiled pass's
time against the plain one: the profiler's own cost.

\b
Columns: GB/s and GOP/s achieved; %BW of the host's measured memory bandwidth (cached, as
`slm-bench run` measures it); %peak of the compute peak benchmarks/peak.py measures (fp32 FMA,
or int8 dot for q4a8 kernels; cached); %roof of the roofline min(peak, bandwidth x ops/byte).

\b
Writes DIR/profile.json (every kernel and group of every phase), DIR/profile.md and
DIR/profile.png (stacked group time per L); DIR defaults to results/profile-MODEL-QUANT/."""


@click.command("profile", epilog=EPILOG)
@click.option(
    "--model",
    "-m",
    required=True,
    help="Built-in name, a .gguf file, a HF model directory, or dummy:tiny-<arch>.",
)
@click.option(
    "--device",
    "-d",
    default="local",
    show_default=True,
    help="Where to profile; this version profiles the desktop (local) only.",
)
@click.option(
    "--lengths",
    "-L",
    default="200,1000",
    show_default=True,
    callback=csv_ints,
    help="Context lengths L of the prompt suite, comma-separated.",
)
@click.option(
    "--quantization", "-q", default="q4f16_1", show_default=True, help="As for `slm-bench run`."
)
@click.option(
    "--decode-steps",
    default=16,
    show_default=True,
    type=click.IntRange(1),
    help="Decode steps after each prefill.",
)
@click.option("--threads", type=int, default=None, help="TVM threads (default: every core).")
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False),
    default=None,
    help="Output folder [default: results/profile-MODEL-QUANT].",
)
def profile(model, device, lengths, quantization, decode_steps, threads, out):
    """Profile MODEL's prefill and decode per kernel: time shares and roofline percentages."""
    from harness.errors import UserError

    if device != "local":
        raise UserError(
            f"profile runs on the desktop only for now (--device local), not {device!r}"
        )
    from harness.profiling.collect import profile_local
    from harness.profiling.render import text_table, write_outputs

    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    result = profile_local(model, quantization, lengths, decode_steps, threads, log=log)
    click.echo(text_table(result))
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(model).name or model)
    out_dir = Path(out) if out else Path("results") / f"profile-{name}-{quantization}"
    for path in write_outputs(result, out_dir):
        click.echo(f"wrote {path}")
