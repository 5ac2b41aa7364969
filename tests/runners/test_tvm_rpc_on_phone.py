"""tvm-rpc end to end: a TVM RPC server on the emulated Galaxy S24 (started over adb shell),
reached through adb forward and the emulated adbd's tcp: service, runs the compiled bundle."""

from __future__ import annotations

import json

import pytest

from .conftest import ADB

if ADB is None:
    pytest.skip(
        "the `adb` binary is not installed (apt-get install -y adb)", allow_module_level=True
    )


@pytest.mark.slow
def test_cli_run_with_tvm_rpc_on_the_emulated_s24(adb_server, phone_process, tmp_path):
    from click.testing import CliRunner

    from harness.cli import cli
    from harness.engines.tvm.runtime import TVMSession
    from harness.results.journal import load

    serial, _root = phone_process
    out = tmp_path / "run"
    args = [
        "run",
        "--model",
        "dummy:tiny-llama",
        "--device",
        f"adb:{serial}",
        "--adb-server",
        f"127.0.0.1:{adb_server}",
        "--runner",
        "tvm-rpc",
        "--idle-seconds",
        "0",
        "--lengths",
        "200",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--tasks",
        "qa",
        "--max-new-tokens",
        "6",
        "--no-report",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records, problems = load(out)
    assert not problems and [r.warmup for r in records] == [True, False, False]
    for rec in records:
        assert (rec.status, rec.runner, rec.engine, rec.device.profile) == (
            "ok",
            "tvm-rpc",
            "tvm",
            "galaxy-s24",
        )
        assert (
            rec.output_tokens == 6
            and not rec.ttft_estimated
            and rec.prefill_s <= rec.ttft_s <= rec.runtime_s
        )
        assert (
            rec.runner_input_tokens == rec.input_tokens and 0 < rec.rpc_round_trip_s < rec.prefill_s
        )
        assert rec.logits_bytes_per_step == 4  # the phone's library picks the token
    # the phone computed what the host's own runtime computes: the same greedy tokens
    info = json.loads((out / "run.json").read_text())
    assert (
        info["spec"]["runner"] == "tvm-rpc" and len(info["runner_binary"]["library_sha256"]) == 64
    )
    from harness.engines.tvm.compile import compile_model
    from harness.models.resolve import resolve_model
    from harness.models.tokenizer import tokenizer_for_bundle
    from harness.prompts.suite import load_suite, select
    from harness.quantization import get_preset

    bundle = compile_model(
        resolve_model("dummy:tiny-llama", log=lambda *_: None),
        get_preset("q4f16_1"),
        "llvm",
        log=lambda *_: None,
    )
    prompt = select(load_suite(), ["qa"], [200], 1)[0]
    session = TVMSession(bundle, max_seq_len=records[0].input_tokens + 32)
    tok = tokenizer_for_bundle(bundle, session.vocab_size)
    token = session.greedy(
        session.prefill(__import__("numpy").asarray(tok.encode_chat(prompt.text), dtype="int32"))
    )
    tokens = [token]
    while len(tokens) < 6:
        tokens.append(session.greedy(session.decode(tokens[-1])))
    assert records[1].output_text == tok.decode(tokens)
