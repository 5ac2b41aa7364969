"""The four runner output formats, parsed into the common schema: from captured files (origin in
data/README.md) and, where llama.cpp is built on this host, from the real programs' live output."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest

from harness.results.schema import Record
from harness.runners.base import RunnerFailed, record_fields
from harness.runners.executorch import observer_phases, parse_observer
from harness.runners.llama_cpp import (
    llama_bench_phases,
    llama_perf_phases,
    parse_llama_bench_jsonl,
    parse_llama_perf,
)
from harness.runners.mlc_cli import mlc_phases, parse_mlc_stats

DATA = Path(__file__).parent / "data"
TEMPLATE = {
    "model": "smollm2-135m-instruct",
    "quantization": "q4f16_1",
    "engine": "llama.cpp",
    "prompt_id": "d-summ-L200",
    "task": "summ",
    "L": 200,
}


def llama_bin(name: str) -> Path | None:
    folder = os.environ.get("SLM_BENCH_LLAMA_BIN_DIR")
    path = (
        Path(folder) / name
        if folder
        else (Path(shutil.which(name)) if shutil.which(name) else None)
    )
    return path if path is not None and path.is_file() else None


def as_record(phases, input_tokens: int) -> Record:
    return Record(**TEMPLATE, **record_fields(phases, input_tokens), status="ok")


def check_schema_definitions(rec: Record) -> None:
    """The schema's definitions hold whichever runner measured (harness.results.schema)."""
    assert rec.prefill_s <= rec.ttft_s <= rec.runtime_s
    assert rec.runtime_s == pytest.approx(rec.ttft_s + rec.decode_s)
    assert rec.itps == pytest.approx(rec.input_tokens / rec.prefill_s)
    assert rec.otps == pytest.approx((rec.output_tokens - 1) / rec.decode_s)


# -- llama-bench -o jsonl ------------------------------------------------------------------------
def test_llama_bench_jsonl_captured():
    results = parse_llama_bench_jsonl((DATA / "llama-bench-smollm2-135m.jsonl").read_text())
    pp, tg = results
    assert (pp["n_prompt"], pp["n_gen"], pp["n_depth"]) == (32, 0, 0) and (
        tg["n_prompt"],
        tg["n_gen"],
        tg["n_depth"],
    ) == (0, 8, 32)
    # llama-bench's avg is the mean of its samples
    assert pp["avg_ns"] == pytest.approx(statistics.mean(pp["samples_ns"]), abs=1)
    phases = llama_bench_phases(results, 32, 8)
    step = tg["avg_ns"] * 1e-9 / 8
    assert phases.prefill_s == pytest.approx(pp["avg_ns"] * 1e-9)
    assert phases.ttft_estimated and phases.ttft_s == pytest.approx(phases.prefill_s + step)
    assert phases.decode_s == pytest.approx(7 * step) and phases.output_tokens == 8
    rec = as_record(phases, 32)
    check_schema_definitions(rec)
    # OTPS by the schema's definition equals llama-bench's own tg rate (avg_ts is the mean of
    # per-sample rates)
    assert rec.otps == pytest.approx(8 / (tg["avg_ns"] * 1e-9))
    assert (
        rec.ttft_estimated
        and rec.engine_version == "1 (0c1e570)"
        and rec.runner_stats["model_type"] == "llama 256M Q4_1"
    )


def test_llama_bench_missing_test_or_key_is_one_line():
    results = parse_llama_bench_jsonl((DATA / "llama-bench-smollm2-135m.jsonl").read_text())
    with pytest.raises(
        RunnerFailed,
        match=r"did not report the test pp200/tg0@d0 \(it reported: pp32/tg0@d0, pp0/tg8@d32\)",
    ):
        llama_bench_phases(results, 200, 8)
    line = json.loads((DATA / "llama-bench-smollm2-135m.jsonl").read_text().splitlines()[0])
    del line["n_depth"]
    with pytest.raises(RunnerFailed, match="lacks n_depth"):
        parse_llama_bench_jsonl(json.dumps(line))


def test_llama_bench_live_output_parses():
    bench = llama_bin("llama-bench")
    if bench is None:
        pytest.skip(
            "llama-bench is not built here (slm-bench kit llama.cpp "
            "--arch x86_64, or set SLM_BENCH_LLAMA_BIN_DIR)"
        )
    from harness.models.sources.builtin import smollm2_gguf

    model = smollm2_gguf(log=lambda *_: None)
    out = ""
    for args in (["-p", "16", "-n", "0"], ["-p", "0", "-n", "3", "-d", "16"]):
        proc = subprocess.run(
            [str(bench), "-m", str(model), "-r", "1", "-o", "jsonl", "-t", "1", *args],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        out += proc.stdout
    phases = llama_bench_phases(parse_llama_bench_jsonl(out), 16, 3)
    rec = as_record(phases, 16)
    check_schema_definitions(rec)
    assert (
        rec.output_tokens == 3 and phases.input_tokens == 16 and rec.runner_stats["n_threads"] == 1
    )


# -- llama-completion / llama-cli perf lines ----------------------------------------------------
def test_llama_completion_captured():
    text = (DATA / "llama-completion-smollm2-135m.txt").read_text()
    perf = parse_llama_perf(text)
    assert (
        perf["prompt eval"] == (158.65, 19)
        and perf["eval"] == (221.82, 7)
        and perf["total"] == (382.34, 26)
    )
    phases = llama_perf_phases(text)
    # -n 8: 7 decode runs after the token sampled from the prompt's logits
    assert phases.output_tokens == 8
    assert phases.input_tokens == 19 and phases.ttft_estimated
    check_schema_definitions(as_record(phases, 19))


def test_llama_perf_context_print_of_older_builds():
    # lines built from the printf formats of llama_perf_context_print in llama.cpp's
    # src/llama-context.cpp, each C conversion as its format spec (%10.2f as :10.2f, %5d as :5d)
    fn = "llama_perf_context_print"
    text = "".join(
        [
            f"{fn}:        load time = {812.5:10.2f} ms\n",
            f"{fn}: prompt eval time = {950.0:10.2f} ms / {251:5d} tokens "
            f"({950.0 / 251:8.2f} ms per token, {251 / 0.95:8.2f} tokens per second)\n",
            f"{fn}:        eval time = {6350.0:10.2f} ms / {127:5d} runs   "
            f"({50.0:8.2f} ms per token, {20.0:8.2f} tokens per second)\n",
            f"{fn}:       total time = {7400.1:10.2f} ms / {378:5d} tokens\n",
        ]
    )
    rec = as_record(llama_perf_phases(text), 251)
    assert rec.output_tokens == 128 and (rec.prefill_s, rec.decode_s) == pytest.approx((0.95, 6.35))
    assert rec.otps == pytest.approx(20.0)  # 127 runs in 6.35 s
    with pytest.raises(RunnerFailed, match="no llama_perf_context_print lines"):
        llama_perf_phases("main: error: failed to load model\n")


def test_llama_completion_live_output_parses(tmp_path):
    exe = llama_bin("llama-completion") or llama_bin("llama-cli")
    if exe is None:
        pytest.skip(
            "llama-completion is not built here (slm-bench kit "
            "llama.cpp --arch x86_64, or set SLM_BENCH_LLAMA_BIN_DIR)"
        )
    from harness.models.sources.builtin import smollm2_gguf

    prompt = tmp_path / "p.txt"
    prompt.write_text("<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n")
    proc = subprocess.run(
        [
            str(exe),
            "-m",
            str(smollm2_gguf(log=lambda *_: None)),
            "-f",
            str(prompt),
            "-n",
            "4",
            "-c",
            "128",
            "-t",
            "1",
            "--temp",
            "0",
            "-no-cnv",
            "--no-display-prompt",
            "--simple-io",
            "--ignore-eos",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=True,
    )
    phases = llama_perf_phases(proc.stdout + proc.stderr)
    assert phases.output_tokens == 4 and phases.input_tokens > 10
    check_schema_definitions(as_record(phases, phases.input_tokens))


# -- mlc_cli_chat --------------------------------------------------------------------------------
def test_mlc_cli_stats_line():
    text = (DATA / "mlc-cli-chat-stats.txt").read_text()
    s = parse_mlc_stats(text)
    assert (s["decode_tokens"], s["decode_s"], s["prefill_tokens"], s["prefill_s"]) == (
        127,
        8.881,
        251,
        0.803,
    )
    phases = mlc_phases(text)
    # prefill + one decode step
    assert phases.ttft_estimated and phases.ttft_s == pytest.approx(0.803 + 8.881 / 127)
    rec = as_record(phases, 251)
    check_schema_definitions(rec)
    assert rec.otps == pytest.approx(127 / 8.881) and rec.runtime_s == pytest.approx(0.803 + 8.881)
    with pytest.raises(RunnerFailed, match="no `decode : X tok/sec"):
        mlc_phases("Segmentation fault\n")


# -- ExecuTorch llama_main -----------------------------------------------------------------------
def test_executorch_observer_line():
    text = (DATA / "executorch-llama-main.txt").read_text()
    s = parse_observer(text)
    phases = observer_phases(text)
    assert not phases.ttft_estimated  # llama_main times its first token
    assert phases.output_tokens == s["generated_tokens"] + 1 == 128
    assert phases.prefill_s == pytest.approx(
        (s["prompt_eval_end_ms"] - s["inference_start_ms"]) / 1000
    )
    assert phases.ttft_s == pytest.approx((s["first_token_ms"] - s["inference_start_ms"]) / 1000)
    rec = as_record(phases, 251)
    check_schema_definitions(rec)
    assert rec.runtime_s == pytest.approx((s["inference_end_ms"] - s["inference_start_ms"]) / 1000)
    assert rec.otps == pytest.approx(
        s["generated_tokens"] / ((s["inference_end_ms"] - s["first_token_ms"]) / 1000)
    )
    broken = text.replace('"first_token_ms":1732363202104,', "")
    with pytest.raises(RunnerFailed, match="lacks first_token_ms"):
        parse_observer(broken)
