"""Gemma 2 (Google, arXiv 2408.00118): Llama-like blocks with Gemma's own choices.

- GeGLU MLP: gelu(tanh approximation)(gate) * up;
- four RMSNorms per layer, before and after both attention and the MLP ("sandwich"), each
  scaling by (1 + weight) — the offset is folded into the weights at conversion;
- embeddings times sqrt(hidden_size); tied LM head;
- attention scores scaled by query_pre_attn_scalar ** -0.5 (not head_dim's), then soft-capped
  (cap * tanh(s / cap)); the final logits are soft-capped too;
- layers alternate between a sliding window (layer 0, 2, ...) and global attention.

The window of the released models (4096) is longer than any context the study uses (L = 1000
plus the output, ~1.5k model tokens), so at those lengths every layer sees every key; the window
logic is tested at a small window (tests/engines/test_reference_archs.py).
"""

from __future__ import annotations

from harness.models.arch.llama import UnsupportedConfig, common_fields
from harness.models.config import ModelConfig

NAME = "gemma2"
HF_MODEL_TYPES = ("gemma2",)


def sliding_layers(hf: dict, num_layers: int) -> tuple[int, ...]:
    """Layers with a sliding window: from ``layer_types`` where the config has it (transformers
    >= 4.53), else Gemma 2's fixed pattern (even layers slide)."""
    kinds = hf.get("layer_types")
    if kinds is None:
        return tuple(range(0, num_layers, 2))
    unknown = set(kinds) - {"sliding_attention", "full_attention"}
    if unknown:
        raise UnsupportedConfig(
            f"layer_types {sorted(unknown)} are not supported (supported: sliding_attention,"
            " full_attention)"
        )
    return tuple(i for i, kind in enumerate(kinds) if kind == "sliding_attention")


def config_from_hf(hf: dict) -> ModelConfig:
    activation = hf.get("hidden_activation") or hf.get("hidden_act", "gelu_pytorch_tanh")
    if activation not in ("gelu_pytorch_tanh", "gelu_tanh"):
        raise UnsupportedConfig(
            f"hidden_activation {activation!r} is not supported (supported: gelu_pytorch_tanh)"
        )
    fields = common_fields({**hf, "tie_word_embeddings": hf.get("tie_word_embeddings", True)})
    fields["context_window"] = hf.get("max_position_embeddings", 8192)
    fields["norm_eps"] = hf.get("rms_norm_eps", 1e-6)
    window = hf.get("sliding_window")
    return ModelConfig(
        arch=NAME,
        activation="gelu",
        norms_per_layer=4,
        norm_weight_offset=1.0,
        embed_scale=fields["hidden_size"] ** 0.5,
        attn_scale=hf.get("query_pre_attn_scalar", fields["head_dim"]) ** -0.5,
        attn_softcap=hf.get("attn_logit_softcapping"),
        final_softcap=hf.get("final_logit_softcapping"),
        sliding_window=window,
        sliding_layers=sliding_layers(hf, fields["num_layers"]) if window else (),
        **fields,
    )


TINY = ModelConfig(
    arch=NAME,
    hidden_size=64,
    intermediate_size=128,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=32,
    vocab_size=512,
    context_window=2048,
    activation="gelu",
    norms_per_layer=4,
    norm_weight_offset=1.0,
    embed_scale=8.0,
    attn_scale=24**-0.5,
    attn_softcap=50.0,
    final_softcap=30.0,
    sliding_window=64,
    sliding_layers=(0,),
    norm_eps=1e-6,
)
