"""``slm-bench run``: benchmark one model on one device."""

from __future__ import annotations

import json
import sys

import click

from harness.cli.options import adb_server_option, csv_ints, csv_words

EPILOG = """\b
Examples:
  slm-bench run --model smollm2-135m-instruct                # the study's protocol on this desktop
  slm-bench run --model smollm2-135m-instruct --lengths 200,1000 --repeats 2 --tasks summ
  slm-bench run --model path/to/model.gguf --quantization q4f32_1
  slm-bench run --model path/to/hf-model-dir --out results/my-run
  slm-bench run --model dummy:tiny-llama --repeats 1          # a seconds-long smoke run
  # a stock phone (docs/phones.md: Other runners)
  slm-bench run --model smollm2-135m-instruct --device adb --runner llama-bench
  # a thread sweep
  slm-bench run --model smollm2-135m-instruct --tasks summ --lengths 200 --threads 1,2
  # core sets on a phone
  slm-bench run --model smollm2-135m-instruct --device adb --cores little,prime+big

\b
Metrics (per request; raw perf_counter_ns stamps are kept in each record):
  ITPS    = input_tokens / prefill_s        (input tokens in the model's tokenizer + chat template)
  TTFT    = request start -> first output token sampled   (prefill_s <= ttft_s)
  OTPS    = (output_tokens - 1) / decode_s  (decode_s = first token -> last token)
  runtime = request start -> last token

Records are appended to OUT/records.jsonl as they are measured; rerunning the same command
resumes where it stopped and measures nothing that is already there. A model whose memory
estimate is over the device's budget runs with a warning (--strict-memory refuses it); one
over the device's RAM is refused; an out-of-memory kill is journaled as a failed request.

Threads and cores: the runner is pinned to a core set (taskset on a phone) with one engine thread
per core unless --threads says otherwise, the same for every runner and engine. Each record says
what ran, read back from the runner (threads, cpu_mask, cpu_clusters) next to what was asked; a
sweep's report has a table and plot per setting with the fastest marked."""


@click.command("run", epilog=EPILOG)
@click.option(
    "--model",
    "-m",
    required=True,
    help=(
        "Built-in name (smollm2-135m-instruct), a .gguf file, a HF model directory, or"
        " dummy:tiny-<arch>."
    ),
)
@click.option(
    "--quantization",
    "-q",
    default="q4f16_1",
    show_default=True,
    help=(
        "q4f16_1 (4-bit, group 32, fp16 scales; MLC's float activations), q4f16_1a8 (the same"
        " weights, int8 activations on integer dot products), q4f32_1, or q0f32."
    ),
)
@click.option(
    "--engine",
    type=click.Choice(["tvm", "llama.cpp"]),
    default="tvm",
    show_default=True,
    help=(
        "tvm: the embedded MLC-style engine (q4f16_1 = 4-bit group 32). llama.cpp: the same prompts"
        " through llama.cpp as GGUF Q4_0 (also 4-bit group 32), side by side; needs pip install -e"
        " '.[llamacpp]'."
    ),
)
@click.option(
    "--target",
    default="llvm",
    show_default=True,
    help=(
        "Compile target: llvm (host CPU), llvm-avx2 (the host held to AVX2), cuda, arm64-linux,"
        " arm64-linux-i8mm, android-cpu, opencl. An ARM64 phone without Python gets arm64-linux"
        " (the harness's TVM kit), or arm64-linux-i8mm where its /proc/cpuinfo lists i8mm."
    ),
)
@click.option(
    "--device",
    "-d",
    "devices",
    multiple=True,
    default=("local",),
    show_default=True,
    help=(
        "local, adb (the only attached phone) or adb:SERIAL; repeat to run on several devices in"
        " parallel."
    ),
)
@adb_server_option
@click.option(
    "--tasks",
    default="summ,qs,qa",
    show_default=True,
    callback=csv_words,
    help="DocAssist tasks to run.",
)
@click.option(
    "--lengths",
    default="200,400,600,800,1000",
    show_default=True,
    callback=csv_ints,
    help=(
        "Context lengths L in cl100k tokens; 0 is the paper's question alone, no document (qa"
        " only)."
    ),
)
@click.option(
    "--docs",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many corpus documents (the first N) to use.",
)
@click.option(
    "--repeats",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="Measured requests per prompt.",
)
@click.option(
    "--warmup",
    default=1,
    show_default=True,
    type=click.IntRange(min=0),
    help="Unmeasured warm-up requests per prompt.",
)
@click.option(
    "--max-new-tokens",
    default=128,
    show_default=True,
    type=click.IntRange(min=1),
    help="Output tokens per request (EOS ignored in speed mode).",
)
@click.option(
    "--cooldown",
    "cooldown",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds to rest before each measured request.",
)
@click.option(
    "--max-temp",
    default=None,
    type=float,
    metavar="C",
    help=(
        "Before each measured request, wait until the battery (else the hottest thermal zone) is at"
        " or below C degrees."
    ),
)
@click.option(
    "--max-wait",
    default=600.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Longest wait for --max-temp or --max-load, in seconds (then measure anyway; recorded).",
)
@click.option(
    "--max-load",
    default=None,
    type=click.FloatRange(0, 1),
    metavar="SHARE",
    help=(
        "Before each measured request, wait until other processes use at most this share of the"
        " device's CPU (0.1 = 10%%); each record keeps cpu_load_other either way."
    ),
)
@click.option(
    "--idle-seconds",
    "idle_s",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help=(
        "Before measuring, sample the fuel gauge this long at idle (phones; the desktop has none)"
        " to report energy above idle; 0 skips."
    ),
)
@click.option(
    "--mode",
    type=click.Choice(["speed", "quality"]),
    default="speed",
    show_default=True,
    help="quality stops at EOS and keeps the full answers.",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False),
    default=None,
    help="Run directory [default: results/<run-id>/].",
)
@click.option("--no-report", is_flag=True, help="Only journal records; skip the report and plots.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON summary on stdout (logs go to stderr)."
)
@click.option(
    "--runner",
    default=None,
    metavar="NAME",
    help=(
        "What measures on the device: python (harness.runner), llama-bench, llama-cli, mlc-cli,"
        " executorch, tvm-rpc [default: the device profile's, else python]."
    ),
)
@click.option(
    "--runner-bin",
    default=None,
    metavar="PATH",
    help=(
        "A native runner's binary (or its folder); hashed into run.json. Else its SLM_BENCH_*"
        " variable, else PATH."
    ),
)
@click.option(
    "--threads",
    callback=csv_ints,
    default=None,
    metavar="N[,N...]",
    help=(
        "Engine threads; several values are a sweep, each measured in turn [default: one per core"
        " of the set]."
    ),
)
@click.option(
    "--cores",
    callback=csv_words,
    default=None,
    metavar="SET[,SET...]",
    help=(
        "Cores to pin the runner to: all, a cluster (prime, big, mid, little), a + of clusters"
        " (prime+big) or a core list (4-9, 0-1+4); several sets are a sweep [default: a phone's"
        " cores but its slowest cluster, a desktop's every core]. `slm-bench devices` shows the"
        " clusters."
    ),
)
@click.option(
    "--strict-memory",
    is_flag=True,
    help=(
        "Refuse a run whose memory estimate exceeds the device's budget (the profile's planning"
        " figure); without it such a run goes ahead with a warning, flagged over_budget. A run over"
        " the device's total RAM is refused either way."
    ),
)
def run(
    model,
    quantization,
    engine,
    target,
    devices,
    adb_server,
    tasks,
    lengths,
    docs,
    repeats,
    warmup,
    max_new_tokens,
    cooldown,
    max_temp,
    max_wait,
    max_load,
    idle_s,
    mode,
    out,
    no_report,
    as_json,
    runner,
    runner_bin,
    threads,
    cores,
    strict_memory,
):
    """Measure ITPS, OTPS, TTFT and runtime of MODEL on the DocAssist prompt suite.

    Compiles the model (or finds it in the bundle cache), runs every (document, task, L)
    prompt with warm-ups and repeats on the device, journals every request and writes
    report.md, report.html, summary.csv and plots into OUT/report/.
    """
    from harness.benchmark import run_on_devices
    from harness.results.schema import RunSpec

    spec = RunSpec(
        model=model,
        quantization=quantization,
        engine=engine,
        target=target,
        device=devices[0],
        tasks=tasks,
        lengths=lengths,
        repeats=repeats,
        warmup=warmup,
        max_new_tokens=max_new_tokens,
        cooldown_s=cooldown,
        max_temp_c=max_temp,
        max_wait_s=max_wait,
        max_load=max_load,
        idle_s=idle_s,
        docs=docs,
        threads=threads,
        cores=cores,
        **({"runner": runner} if runner else {}),
    )
    log = (lambda msg: click.echo(msg, err=True)) if as_json else click.echo
    outcomes = run_on_devices(
        spec,
        list(devices),
        out,
        mode=mode,
        log=log,
        write_reports=not no_report,
        adb_server=adb_server,
        strict_memory=strict_memory,
        **({"runner_bin": runner_bin} if runner_bin else {}),
    )
    if as_json:
        from harness.report.aggregate import load_runs, summary_table

        payload = [
            {
                "run_dir": str(o.out_dir),
                "measured": o.measured,
                "already_done": o.skipped_done,
                "failed": o.failed,
                "report_files": [str(p) for p in o.report_files],
                "runner": o.runner_summary,
                "summary": json.loads(
                    summary_table(load_runs([o.out_dir]).df).to_json(orient="records")
                ),
            }
            for o in outcomes
        ]
        json.dump(payload[0] if len(payload) == 1 else payload, sys.stdout, indent=1)
        sys.stdout.write("\n")
    for o in outcomes:
        if o.failed:
            click.echo(
                f"{o.failed} request(s) failed; see {o.out_dir / 'records.jsonl'} and runner.log",
                err=True,
            )
