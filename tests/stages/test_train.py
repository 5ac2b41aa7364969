"""SlimLM training: corpus readers, answer-only SFT targets, resume, falling loss, torchrun DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import UserError

torch = pytest.importorskip("torch")
pytest.importorskip("lion_pytorch")

MICRO = {
    "preset": "micro",
    "tokenizer_vocab": 300,
    "seq_len": 64,
    "batch_size": 4,
    "pretrain_steps": 8,
    "sft_steps": 6,
    "sft_batch_size": 2,
    "ckpt_every": 3,
    "log_every": 2,
}


def test_corpus_readers_text_jsonl_and_slimpajama_zst(tmp_path):
    import zstandard

    from harness.stages.slimlm.data import corpus_files, iter_documents

    (tmp_path / "a.md").write_text("markdown doc")
    (tmp_path / "b.jsonl").write_text(
        json.dumps({"text": "json doc 1"})
        + "\n\n"
        + json.dumps({"text": "json doc 2", "meta": {}})
        + "\n"
    )
    shard = "".join(
        json.dumps({"text": f"pajama {i}", "meta": {"redpajama_set_name": "RedPajamaC4"}}) + "\n"
        for i in range(3)
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "example_train_0.jsonl.zst").write_bytes(
        zstandard.ZstdCompressor().compress(shard.encode())
    )
    (tmp_path / "ignored.bin").write_bytes(b"\0")
    assert [f.name for f in corpus_files([tmp_path])] == [
        "a.md",
        "b.jsonl",
        "example_train_0.jsonl.zst",
    ]
    assert list(iter_documents([tmp_path])) == [
        "markdown doc",
        "json doc 1",
        "json doc 2",
        "pajama 0",
        "pajama 1",
        "pajama 2",
    ]


def test_corpus_errors_are_one_line(tmp_path):
    from harness.stages.slimlm.data import iter_documents

    (tmp_path / "bad.jsonl").write_text('{"content": "x"}\n')
    with pytest.raises(UserError, match=r"bad.jsonl:1: no string \"text\" field"):
        list(iter_documents([tmp_path / "bad.jsonl"]))
    with pytest.raises(UserError, match="does not exist"):
        list(iter_documents([tmp_path / "missing"]))
    (tmp_path / "broken.jsonl.zst").write_bytes(b"not zstd at all")
    with pytest.raises(UserError, match="not a readable zstd file"):
        list(iter_documents([tmp_path / "broken.jsonl.zst"]))


def test_settings_typo_is_a_user_error():
    from harness.stages.slimlm.train import parse_settings

    with pytest.raises(UserError, match="training setting 'pretrain_stpes'"):
        parse_settings({"pretrain_stpes": 3})
    with pytest.raises(UserError, match="unknown SlimLM preset 'huge'"):
        from harness.stages.slimlm.presets import get_preset

        get_preset("huge")


def test_sft_loss_is_on_answer_tokens_only():
    from harness.stages.slimlm.batches import IGNORE, sft_batch, sft_example
    from harness.stages.slimlm.tokenizer import IM_END, chat_tokenizer, train_tokenizer

    chat = chat_tokenizer(
        train_tokenizer(["Summarize the notes. The board approved the budget."] * 10, 300)
    )
    long = sft_example(chat, "Summarize the notes. " * 5, "The board approved it.", IM_END)
    short = sft_example(chat, "Summarize.", "Approved.", IM_END)
    x, y = sft_batch([long, short], seed=0, step=0, rank=0, batch=8)

    def drawn(row, ex):
        n = len(ex.ids) - 1
        return n <= x.shape[1] and x[row, :n].tolist() == ex.ids[:-1]

    assert all(drawn(row, long) or drawn(row, short) for row in range(8))
    for row in range(8):
        ex = long if drawn(row, long) else short
        kept = y[row][y[row] != IGNORE].tolist()
        # the answer and the end-of-answer token, nothing of the prompt
        assert kept == ex.ids[ex.answer_start :]
        assert chat.decode(kept) == ("The board approved it." if ex is long else "Approved.")
        assert kept[-1] == chat.token_id(IM_END)
    prompt_only = chat.encode_chat("Summarize.")
    assert short.ids[: short.answer_start] == prompt_only


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def test_interrupted_training_resumes_to_the_same_model(tmp_path, corpus_dir, docassist_dir):
    from harness.stages.slimlm.train import parse_settings, train_slimlm

    cfg = {**MICRO, "corpus": [str(corpus_dir)], "docassist": str(docassist_dir)}
    whole = train_slimlm(parse_settings(cfg), tmp_path / "whole", log=lambda _: None)
    logs = []
    # mid pre-training
    assert (
        train_slimlm(parse_settings({**cfg, "stop_after": 5}), tmp_path / "sliced", log=logs.append)
        is None
    )
    assert (
        torch.load(tmp_path / "sliced" / "checkpoints" / "pretrain.pt", weights_only=False)["step"]
        == 5
    )
    # 3 more pre-training steps, 2 of fine-tuning
    assert (
        train_slimlm(parse_settings({**cfg, "stop_after": 5}), tmp_path / "sliced", log=logs.append)
        is None
    )
    assert (
        torch.load(tmp_path / "sliced" / "checkpoints" / "sft.pt", weights_only=False)["step"] == 2
    )
    sliced = train_slimlm(parse_settings(cfg), tmp_path / "sliced", log=logs.append)
    assert any("pretrain: resuming at step 5 of 8" in m for m in logs) and any(
        "sft: resuming at step 2 of 6" in m for m in logs
    )
    a, b = _weights(whole), _weights(sliced)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    prov_a, prov_b = (json.loads((d / "provenance.json").read_text()) for d in (whole, sliced))
    assert prov_a["phases"]["sft"]["loss_curve"] == prov_b["phases"]["sft"]["loss_curve"]
    assert (
        prov_b["steps"] == {"pretrain": 8, "sft": 6}
        and prov_b["data"]["docassist"]["examples"] == 4 * 5
    )
    with pytest.raises(UserError, match="checkpoint of different pretrain settings"):
        train_slimlm(parse_settings({**cfg, "seed": 1}), tmp_path / "sliced", log=lambda _: None)


def test_pretraining_loss_falls_on_the_repo_corpus(tmp_path):
    """The micro preset on the repository's own corpus (prompts/corpus), 40 Lion steps."""
    from harness.stages.slimlm.train import parse_settings, train_slimlm

    model_dir = train_slimlm(
        parse_settings({"preset": "micro", "seq_len": 64, "pretrain_steps": 40, "log_every": 20}),
        tmp_path,
        log=lambda _: None,
    )
    pre = json.loads((model_dir / "provenance.json").read_text())["phases"]["pretrain"]
    print(
        f"\npretrain loss: first10 {pre['loss_first10_mean']:.3f} "
        f"-> last10 {pre['loss_last10_mean']:.3f}"
    )
    assert pre["loss_last10_mean"] < pre["loss_first10_mean"] - 0.5


@pytest.mark.slow
def test_torchrun_two_processes_train_with_gloo(tmp_path, corpus_dir, docassist_dir):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "harness",
        "train",
        "slimlm",
        "--preset",
        "micro",
        "--corpus",
        str(corpus_dir),
        "--docassist",
        str(docassist_dir),
        "--pretrain-steps",
        "6",
        "--sft-steps",
        "4",
        "--seq-len",
        "64",
        "--batch-size",
        "4",
        "--set",
        "tokenizer_vocab=300",
        "--set",
        "sft_batch_size=2",
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world size 2 (gloo)" in result.stderr
    assert result.stdout.strip() == str(out / "slimlm-micro")  # rank 0 alone reports
    prov = json.loads((out / "slimlm-micro" / "provenance.json").read_text())
    assert prov["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert prov["steps"] == {"pretrain": 6, "sft": 4}
    # Each step trained on both ranks' batches: tokens counted over the two processes.
    assert prov["phases"]["pretrain"]["tokens"] == 6 * 2 * 4 * 64
    from harness.stages.slimlm.export import load_exported

    model, _ = load_exported(out / "slimlm-micro")
    assert model.num_params() == prov["params"]
