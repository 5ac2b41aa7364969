"""SlimLM (arXiv 2411.09944): an MPT-style decoder that keeps biases in its layers.

Blocks: LayerNorm (with bias), fused QKV with bias, output projection with bias, a plain
two-layer GELU MLP with biases. Positions use RoPE rather than MPT's default ALiBi so the paged
KV cache (which applies RoPE itself) serves it; the training stage emits the same layout with
HF-style names (``model.layers.N.self_attn.q_proj`` ...).
"""

from __future__ import annotations

from harness.models.arch.llama import common_fields
from harness.models.config import ModelConfig

NAME = "slimlm"
HF_MODEL_TYPES = ("slimlm",)


def config_from_hf(hf: dict) -> ModelConfig:
    fields = common_fields({**hf, "tie_word_embeddings": hf.get("tie_word_embeddings", True)})
    fields["norm_eps"] = hf.get("layer_norm_eps", 1e-5)
    return ModelConfig(
        arch=NAME,
        norm="layer",
        activation="gelu",
        gated_mlp=False,
        qkv_bias=True,
        linear_bias=True,
        **fields,
    )


TINY = ModelConfig(
    arch=NAME,
    hidden_size=64,
    intermediate_size=256,
    num_layers=2,
    num_heads=4,
    num_kv_heads=4,
    head_dim=16,
    vocab_size=512,
    context_window=2048,
    norm="layer",
    activation="gelu",
    gated_mlp=False,
    qkv_bias=True,
    linear_bias=True,
)
