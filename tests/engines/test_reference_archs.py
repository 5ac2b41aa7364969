"""Tiny Llama (with llama3 RoPE scaling), Qwen2 (QKV bias), Gemma 2 and Phi-3 against transformers.

A randomly initialised transformers model is saved as a HF directory, read by our HF-directory
source, compiled at q0f32 and compared logit by logit: covers the config mapping (including
transformers 5's ``rope_parameters``), the RoPE variants and the biases. The Gemma 2 and Phi-3
models keep their real head layouts (8 x 256 with 4 KV heads; 96-wide MHA) and get sliding
windows far shorter than the 300-token prompt, so the window masks of prefill and decode are
exercised (the released windows, 4096 and 2047, exceed the study's contexts).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

COMMON = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=512,
    max_position_embeddings=2048,
    tie_word_embeddings=True,
)


GEMMA2 = dict(
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=8,
    num_key_value_heads=4,
    head_dim=256,
    vocab_size=512,
    max_position_embeddings=2048,
    sliding_window=40,
    query_pre_attn_scalar=64,
    attn_logit_softcapping=20.0,
    final_logit_softcapping=15.0,
)
PHI3 = dict(
    hidden_size=384,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    vocab_size=512,
    tie_word_embeddings=False,
    max_position_embeddings=4096,
    original_max_position_embeddings=512,
    sliding_window=48,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)


def _build(kind: str):
    torch.manual_seed(0)
    if kind == "gemma2":
        model = transformers.Gemma2ForCausalLM(
            transformers.Gemma2Config(**GEMMA2, attn_implementation="eager")
        )
    elif kind == "phi3":
        rng = np.random.default_rng(2)  # LongRoPE factors: 48 per-dimension divisors each
        scaling = {
            "rope_type": "longrope",
            "short_factor": (1 + rng.random(48)).tolist(),
            "long_factor": (1 + 8 * rng.random(48)).tolist(),
        }
        model = transformers.Phi3ForCausalLM(
            transformers.Phi3Config(**PHI3, rope_scaling=scaling, attn_implementation="eager")
        )
    elif kind == "llama3":
        cfg = transformers.LlamaConfig(
            **COMMON,
            rope_theta=500000.0,
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
        )
        model = transformers.LlamaForCausalLM(cfg)
    else:
        cfg = transformers.Qwen2Config(**COMMON, rope_theta=1000000.0)
        model = transformers.Qwen2ForCausalLM(cfg)
    with torch.no_grad():  # larger weights than the init's 0.02 so differences would show
        for p in model.parameters():
            p.mul_(5.0) if p.dim() > 1 else p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def _assert_close(ours, ref, what: str) -> None:
    assert np.abs(ours - ref).max() <= 1e-3 * (ref.max() - ref.min()), what


def _compiled(model, tmp_path, monkeypatch):
    from harness.engines.tvm.compile import compile_model
    from harness.engines.tvm.runtime import TVMSession
    from harness.models.sources.hf_dir import load_hf_dir
    from harness.quantization import get_preset

    monkeypatch.setenv("SLM_BENCH_CACHE", str(tmp_path / "cache"))
    model.save_pretrained(tmp_path / "hf", safe_serialization=True)
    loaded = load_hf_dir(tmp_path / "hf")
    return loaded.config, TVMSession(
        compile_model(loaded, get_preset("q0f32"), "llvm", log=lambda *_: None), max_seq_len=512
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gemma2", "phi3"])
def test_gemma2_and_phi3_match_transformers_in_prefill_and_greedy_decode(
    kind, tmp_path, monkeypatch
):
    model = _build(kind)
    config, session = _compiled(model, tmp_path, monkeypatch)
    if kind == "gemma2":
        assert (config.sliding_layers, config.sliding_window, config.attn_softcap) == (
            (0,),
            40,
            20.0,
        )
    else:
        assert config.rope_scaling["rope_type"] == "longrope" and config.context_window == 512
        assert config.sliding_layers == (0, 1)
    prompt = np.random.default_rng(1).integers(0, 512, 300).tolist()
    with torch.no_grad():  # transformers' greedy continuation: 16 tokens
        generated = model.generate(
            torch.tensor([prompt]), max_new_tokens=16, do_sample=False, min_new_tokens=16
        )[0].tolist()
        ref = model(torch.tensor([generated])).logits[0].numpy()
    ours = session.prefill(np.array(prompt, dtype=np.int32)).numpy().reshape(-1)
    for step, token in enumerate(generated[len(prompt) :]):
        pos = len(prompt) + step - 1
        _assert_close(ours, ref[pos], f"{kind}: position {pos}")
        assert int(np.argmax(ours)) == token, f"{kind}: greedy token {step}"
        ours = session.decode(token).numpy().reshape(-1)


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
    session = TVMSession(
        compile_model(loaded, get_preset("q0f32"), "llvm", log=lambda *_: None), max_seq_len=512
    )

    ids = np.random.default_rng(1).integers(0, 512, 300).astype(np.int32)
    with torch.no_grad():
        ref = model(torch.tensor(ids[None].astype(np.int64))).logits[0].numpy()
    ours = session.prefill(ids[:-8]).numpy().reshape(-1)
    for step in range(8):
        pos = len(ids) - 8 + step - 1
        assert np.abs(ours - ref[pos]).max() <= 1e-3 * (ref[pos].max() - ref[pos].min()), (
            f"{kind}: position {pos}"
        )
        ours = session.decode(int(ids[pos + 1])).numpy().reshape(-1)
