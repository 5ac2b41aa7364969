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
For each L: a warm-up, then --rounds rounds, each a plain and a profiled prefill of the suite's
L-token summarization prompt, then --decode-steps plain decode steps interleaved with as many
profiled ones (neighbouring steps see the same machine; whole passes drift by 10% on a shared
one). The profiled runs time every call the Relax VM makes (its instrument hook), less the
hook's own cost calibrated at the start, and work out the bytes and operations of each call from
its argument shapes. Kernels are grouped (linear layers, attention with RoPE and the KV append,
norms, LM head + sampling, embedding, elementwise); the VM and host overhead is the plain runs'
phase time minus the kernels' time, so each table's groups add up to the measured phase time.
The check line under each table is the independent test: kernel times plus the VM dispatch
cost the calibration predicts, against the measured time (ok within 5%).

\b
Columns: GB/s and GOP/s achieved; %BW of the read bandwidth and %peak of the compute peak
(fp32 FMA, or int8 dot for q4a8 kernels) that benchmarks/peak.py measures on the same threads
(cached per host); %roof of the roofline min(peak, bandwidth x ops/byte).

\b
Memory: per L, a fresh process does what the runner does (TVM's runtime library only) and reads
its own VmRSS after each stage: interpreter and numpy, TVM's runtime, the tokenizer, the model
library, the weights and KV cache (beside the bytes they should take), the prefill's workspace,
the decode steps; and VmHWM, the peak a record's peak_mem_bytes reports. --no-memory skips it.

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
    help="Plain decode steps a round (as many profiled ones are interleaved).",
)
@click.option(
    "--rounds",
    default=5,
    show_default=True,
    type=click.IntRange(1),
    help="Rounds of plain and profiled runs; prefill keeps the medians, decode adds them up.",
)
@click.option(
    "--memory/--no-memory",
    default=True,
    show_default=True,
    help="Also the memory view: a fresh runner-like process per L, RSS stage by stage.",
)
@click.option("--threads", type=int, default=None, help="TVM threads (default: every core).")
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False),
    default=None,
    help="Output folder [default: results/profile-MODEL-QUANT].",
)
def profile(model, device, lengths, quantization, decode_steps, rounds, memory, threads, out):
    """Profile MODEL's prefill and decode per kernel: time shares and roofline percentages."""
    from harness.errors import UserError

    if device != "local":
        raise UserError(
            f"profile runs on the desktop only for now (--device local), not {device!r}"
        )
    from harness.profiling.collect import profile_local
    from harness.profiling.render import text_table, write_outputs

    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    result = profile_local(
        model,
        quantization,
        lengths,
        decode_steps,
        threads,
        rounds=rounds,
        log=log,
        with_memory=memory,
    )
    click.echo(text_table(result))
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(model).name or model)
    out_dir = Path(out) if out else Path("results") / f"profile-{name}-{quantization}"
    for path in write_outputs(result, out_dir):
        click.echo(f"wrote {path}")
