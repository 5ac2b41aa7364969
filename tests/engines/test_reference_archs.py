"""Tiny Llama (with llama3 RoPE scaling) and Qwen2 (QKV bias) against transformers.

A randomly initialised transformers model is saved as a HF directory, read by our HF-directory
source, compiled at q0f32 and compared logit by logit: covers the config mapping (including
transformers 5's ``rope_parameters``), the RoPE variants and the biases.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

COMMON = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=512, max_position_embeddings=2048, tie_word_embeddings=True)


def _build(kind: str):
    torch.manual_seed(0)
    if kind == "llama3":
        cfg = transformers.LlamaConfig(**COMMON, rope_theta=500000.0, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
        model = transformers.LlamaForCausalLM(cfg)
    else:
        cfg = transformers.Qwen2Config(**COMMON, rope_theta=1000000.0)
        model = transformers.Qwen2ForCausalLM(cfg)
    with torch.no_grad():  # larger weights than the init's 0.02 so differences would show
        for p in model.parameters():
            p.mul_(5.0) if p.dim() > 1 else p.add_(0.1 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("kind", ["llama3", "qwen2"])
def test_tiny_model_matches_transformers(kind, tmp_path, monkeypatch):
    from harness.engines.tvm.compile import compile_model
    from harness.engines.tvm.runtime import TVMSession
    from harness.models.sources.hf_dir import load_hf_dir
    from harness.quantization import get_preset

    monkeypatch.setenv("SLM_BENCH_CACHE", str(tmp_path / "cache"))
    model = _build(kind)
    model.save_pretrained(tmp_path / "hf", safe_serialization=True)
    loaded = load_hf_dir(tmp_path / "hf")
    if kind == "llama3":
        assert loaded.config.rope_scaling["rope_type"] == "llama3"
    else:
        assert loaded.config.qkv_bias
    session = TVMSession(compile_model(loaded, get_preset("q0f32"), "llvm", log=lambda *_: None), max_seq_len=512)

    ids = np.random.default_rng(1).integers(0, 512, 300).astype(np.int32)
    with torch.no_grad():
        ref = model(torch.tensor(ids[None].astype(np.int64))).logits[0].numpy()
    ours = session.prefill(ids[:-8]).numpy().reshape(-1)
    for step in range(8):
        pos = len(ids) - 8 + step - 1
        assert np.abs(ours - ref[pos]).max() <= 1e-3 * (ref[pos].max() - ref[pos].min()), f"{kind}: position {pos}"
        ours = session.decode(int(ids[pos + 1])).numpy().reshape(-1)
