"""``slm-bench soak``: one prompt back to back for N minutes, to see a phone heat and slow."""

from __future__ import annotations

import json
from pathlib import Path

import click

from harness.cli.options import adb_server_option, csv_ints, csv_words

EPILOG = """\b
Examples:
  slm-bench soak --model smollm2-135m-instruct --minutes 10 --out results/soak-desktop
  slm-bench soak --model smollm2-135m-instruct --device adb --minutes 15 --L 1000 \\
      --out results/soak-s24
  slm-bench soak --model qwen2-0.5b-instruct --device adb:R5CX --cores prime+big --minutes 5 \\
      --out results/soak-big

\b
Every request is journaled (DIR/records.jsonl) and the device is sampled every --interval seconds
between and during them (DIR/samples.jsonl: each thermal zone, the battery, each cluster's
scaling_cur_freq). A killed soak keeps both; rerun the same command to continue until it has
lasted --minutes. DIR/soak.json: peak_otps (median of the first minute), sustained_otps (median
of the last third), sustained_ratio, seconds_to_first_drop (when 5 requests in a row first
decode >10% below the peak, median), peak_temp_c. DIR/report/ has the summary and a plot of
OTPS, temperature and clocks over time."""


@click.command("soak", epilog=EPILOG)
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
    help="local, adb (the only attached phone) or adb:SERIAL.",
)
@click.option("--minutes", required=True, type=float, help="How long to keep the device decoding.")
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for the soak's journal, samples, soak.json and report.",
)
@click.option(
    "--quantization", "-q", default="q4f16_1", show_default=True, help="As for `slm-bench run`."
)
@click.option("--engine", type=click.Choice(["tvm", "llama.cpp"]), default="tvm", show_default=True)
@click.option(
    "--target",
    default="llvm",
    show_default=True,
    help="Compile target (llvm for the desktop and the emulated x86 phone).",
)
@click.option(
    "--task",
    type=click.Choice(["summ", "qs", "qa"]),
    default="summ",
    show_default=True,
    help="DocAssist task of the one prompt.",
)
@click.option(
    "--L",
    "length",
    default=200,
    show_default=True,
    type=int,
    help="Context length of the one prompt (cl100k tokens).",
)
@click.option(
    "--max-new-tokens",
    default=128,
    show_default=True,
    type=click.IntRange(min=2),
    help="Output tokens per request.",
)
@click.option(
    "--threads",
    callback=csv_ints,
    default=None,
    metavar="N",
    help="Engine threads [default: one per core of the set].",
)
@click.option(
    "--cores",
    callback=csv_words,
    default=None,
    metavar="SET",
    help="Core set, as for `slm-bench run --cores` [default: the device's].",
)
@click.option(
    "--interval",
    "interval_s",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0.5),
    help="Seconds between device samples.",
)
@click.option(
    "--idle-seconds",
    "idle_s",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Idle fuel-gauge sampling first (energy above idle); 0 skips.",
)
@adb_server_option
def soak(
    model,
    device,
    minutes,
    out,
    quantization,
    engine,
    target,
    task,
    length,
    max_new_tokens,
    threads,
    cores,
    interval_s,
    idle_s,
    adb_server,
):
    """Decode one prompt back to back for --minutes and record how speed, heat and clocks move."""
    from harness.report.soak import write_soak_report
    from harness.results.schema import RunSpec
    from harness.soak import run_soak

    spec = RunSpec(
        model=model,
        quantization=quantization,
        engine=engine,
        target=target,
        device=device,
        tasks=[task],
        lengths=[length],
        repeats=1,
        warmup=1,
        max_new_tokens=max_new_tokens,
        docs=1,
        threads=threads,
        cores=cores,
        idle_s=idle_s,
    )
    summary = run_soak(
        spec, minutes, Path(out), interval_s=interval_s, adb_server=adb_server, log=click.echo
    )
    write_soak_report(Path(out), log=click.echo)
    click.echo(json.dumps(summary))
