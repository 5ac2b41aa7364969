"""``slm-bench profile``: where prefill and decode spend their time, kernel by kernel."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.options import adb_server_option, csv_ints

EPILOG = """\b
Examples:
  slm-bench profile --model smollm2-135m-instruct --lengths 200,1000
  slm-bench profile --model qwen2-0.5b-instruct --quantization q4f16_1a8 --decode-steps 32
  slm-bench profile --model dummy:tiny-llama --lengths 200 --out /tmp/prof
  slm-bench profile --model smollm2-135m-instruct --device adb:SERIAL --lengths 200
  slm-bench devices emulate --profile galaxy-s24 --arch arm64 --port 5600 &   # an emulated S24
  adb connect 127.0.0.1:5600
  slm-bench profile --model dummy:tiny-llama --device adb:127.0.0.1:5600 --lengths 200 --rounds 2

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
(fp32 FMA, or int8 dot for q4a8 kernels) that harness/profiling/peaks.py measures on the same
threads (cached per host); %roof of the roofline min(peak, bandwidth x ops/byte).

\b
On a phone (--device adb, adb:SERIAL, adb:SERIAL@HOST:PORT) the runner `slm-bench run` starts
there does the same (a stock ARM64 phone: harness.runner in the harness's TVM kit, pushed once):
the host compiles the bundle and the hook's calibration module for the phone's target
(arm64-linux, or arm64-linux-i8mm where its /proc/cpuinfo lists i8mm) and pushes both. A real
phone's GB/s and GOP/s are its own; %BW and %roof use its device profile's bandwidth where one is
given, %peak stays empty (no phone's compute peak is known). An emulated phone's times are this
host's (qemu-user), so it shows shares and the check, and leaves every rate column empty. The
memory view runs on the desktop only for now.

\b
Memory: per L, a fresh process does what the runner does (TVM's runtime library only) and reads
its own VmRSS after each stage: interpreter and numpy, TVM's runtime, the tokenizer, the model
library, the weights and KV cache (beside the bytes they should take), the prefill's workspace,
the decode steps; and VmHWM, the peak a record's peak_mem_bytes reports. --no-memory skips it.

\b
Writes DIR/profile.json (every kernel and group of every phase), DIR/profile.md and
DIR/profile.png (stacked group time per L); DIR defaults to results/profile-MODEL-QUANT/ (and
-adb_SERIAL after it for a phone). profile.json names the device, its target and kernels. With
--out RUN_DIR (a `slm-bench run` folder) the run's report includes the profile: `slm-bench
report RUN_DIR` adds a table per phase and L and the chart."""


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
    help="local (this desktop), adb (the only attached phone), adb:SERIAL or adb:SERIAL@HOST:PORT.",
)
@adb_server_option
@click.option(
    "--target",
    default=None,
    help=(
        "Compile target [default: llvm here (llvm-avx2 profiles the AVX2 kernels on a newer x86);"
        " on an ARM64 phone arm64-linux, or arm64-linux-i8mm where its cores list i8mm]."
    ),
)
@click.option(
    "--cores",
    default=None,
    metavar="SET",
    help=(
        "A phone's cores to pin the runner to, as for `slm-bench run` (prime+big, 4-9, ...)"
        " [default: all but the slowest cluster]."
    ),
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
def profile(
    model,
    device,
    adb_server,
    target,
    cores,
    lengths,
    quantization,
    decode_steps,
    rounds,
    memory,
    threads,
    out,
):
    """Profile MODEL's prefill and decode per kernel: time shares and roofline percentages."""
    from harness.errors import UserError

    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    if device == "local":
        from harness.engines.tvm.targets import HOST_CPU_TARGETS

        if target not in (None, *HOST_CPU_TARGETS):
            raise UserError(
                f"the desktop profile runs llvm (or llvm-avx2) bundles, and {target} builds for"
                " another device; leave --target out here, or profile on that device with"
                " --device adb:SERIAL"
            )
        if cores:
            raise UserError("--cores pins a phone's runner; the desktop profile takes --threads")
        from harness.profiling.collect import profile_local

        result = profile_local(
            model,
            quantization,
            lengths,
            decode_steps,
            threads,
            rounds=rounds,
            log=log,
            with_memory=memory,
            target=target or "llvm",
        )
    else:
        from harness.profiling.phone import profile_on_device

        result = profile_on_device(
            model,
            quantization,
            lengths,
            decode_steps,
            device,
            target=target,
            threads=threads,
            cores=cores,
            rounds=rounds,
            adb_server=adb_server,
            log=log,
            with_memory=memory,
        )
    from harness.profiling.render import text_table, write_outputs

    click.echo(text_table(result))
    safe = lambda text: "".join(c if c.isalnum() or c in "-_." else "_" for c in text)  # noqa: E731
    name = f"profile-{safe(Path(model).name or model)}-{quantization}"
    if device != "local":  # a phone's profile never overwrites the desktop's
        name += f"-{safe(result.device)}"
    out_dir = Path(out) if out else Path("results") / name
    for path in write_outputs(result, out_dir):
        click.echo(f"wrote {path}")
