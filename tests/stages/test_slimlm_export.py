"""The PyTorch SlimLM, exported, against the engine: same config, same tensors, same logits."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

TEXTS = [
    "The quarterly report covers revenue, costs and the hiring plan for the next year.",
    "Meeting notes: the team agreed to ship the release on Friday after the final review.",
] * 20


def _model(vocab: int, seed: int = 0):
    from harness.stages.slimlm.model import SlimLM, SlimLMConfig

    model = SlimLM(
        SlimLMConfig(
            vocab_size=vocab,
            hidden_size=64,
            intermediate_size=256,
            num_layers=2,
            num_heads=4,
            context_window=512,
        ),
        seed=seed,
    )
    # larger than the init's 0.02 so a wrong RoPE or bias would show in the logits
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed)
        for p in model.parameters():
            p.mul_(4.0) if p.dim() > 1 else p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from harness.stages.slimlm.export import export_model
    from harness.stages.slimlm.tokenizer import (
        padded_vocab,
        train_tokenizer,
        vocab_size_of,
    )

    tok = train_tokenizer(TEXTS, 300)
    model = _model(padded_vocab(vocab_size_of(tok)))
    out = export_model(
        model, tok, tmp_path_factory.mktemp("export") / "slimlm", {"steps": {"pretrain": 0}}
    )
    return model, out


def test_export_is_a_model_directory_the_engine_reads(exported):
    from harness.models.sources.hf_dir import load_hf_dir
    from harness.models.tokenizer import ChatTokenizer

    model, out = exported
    loaded = load_hf_dir(out)
    cfg = loaded.config
    assert (cfg.arch, cfg.norm, cfg.activation, cfg.gated_mlp, cfg.qkv_bias, cfg.linear_bias) == (
        "slimlm",
        "layer",
        "gelu",
        False,
        True,
        True,
    )
    assert cfg.param_count() == model.num_params()
    assert set(loaded.tensors) == set(model.state_dict())
    assert np.array_equal(
        loaded.tensors["model.layers.1.mlp.up_proj.bias"](),
        model.state_dict()["model.layers.1.mlp.up_proj.bias"].numpy(),
    )
    prov = json.loads((out / "provenance.json").read_text())
    assert (
        prov["model_type"] == "slimlm"
        and prov["params"] == model.num_params()
        and prov["code_version"]
    )
    chat = ChatTokenizer(
        loaded.tokenizer.tokenizer_json,
        loaded.tokenizer.chat_template,
        eos_token=loaded.tokenizer.eos_token,
    )
    rendered = chat.render("Summarize the report.")
    assert rendered == "<|im_start|>user\nSummarize the report.<|im_end|>\n<|im_start|>assistant\n"
    ids = chat.encode_chat("Summarize the report.")
    assert (
        ids[0] == chat.token_id("<|im_start|>")
        and chat.decode(chat.encode("the quarterly report")) == "the quarterly report"
    )


def test_load_exported_round_trips(exported):
    from harness.stages.slimlm.export import load_exported

    model, out = exported
    again, _ = load_exported(out)
    ids = torch.randint(
        0, model.config.vocab_size, (1, 40), generator=torch.Generator().manual_seed(3)
    )
    with torch.no_grad():
        assert torch.equal(model(ids), again(ids))


@pytest.mark.slow
def test_q0f32_bundle_matches_pytorch_logits(exported, tmp_path, monkeypatch):
    """Prefill and teacher-forced decode steps of the compiled q0f32 bundle against the PyTorch
    model: covers the tensor names, fused QKV with bias, LayerNorm bias, tanh GELU, RoPE layout."""
    from harness.engines.tvm.compile import compile_model
    from harness.engines.tvm.runtime import TVMSession
    from harness.models.resolve import resolve_model
    from harness.quantization import get_preset

    monkeypatch.setenv("SLM_BENCH_CACHE", str(tmp_path / "cache"))
    model, out = exported
    session = TVMSession(
        compile_model(resolve_model(str(out)), get_preset("q0f32"), "llvm", log=lambda *_: None),
        max_seq_len=512,
    )
    ids = np.random.default_rng(1).integers(0, model.config.vocab_size, 200)
    with torch.no_grad():
        ref = model(torch.tensor(ids[None])).numpy()[0]
    ours = session.prefill(ids[:-8].astype(np.int32)).numpy().reshape(-1)
    for step in range(8):
        pos = len(ids) - 8 + step - 1
        spread = ref[pos].max() - ref[pos].min()
        assert np.abs(ours - ref[pos]).max() <= 1e-3 * spread, f"position {pos}"
        assert int(np.argmax(ours)) == int(np.argmax(ref[pos]))
        ours = session.decode(int(ids[pos + 1])).numpy().reshape(-1)
