"""SlimLM (arXiv 2411.09944): an MPT-style decoder that keeps biases in its layers.

Blocks: LayerNorm (with bias), fused QKV with bias, output projection with bias, a plain
two-layer GELU MLP with biases. Positions use RoPE rather than MPT's default ALiBi so the paged
KV cache (which applies RoPE itself) serves it; the training stage emits the same layout with
HF-style names (``model.layers.N.self_attn.q_proj`` ...).
"""

from __future__ import annotations

from harness.models.arch.llama import rope_fields
from harness.models.config import ModelConfig

NAME = "slimlm"
HF_MODEL_TYPES = ("slimlm",)


def config_from_hf(hf: dict) -> ModelConfig:
    heads = hf["num_attention_heads"]
    return ModelConfig(
        arch=NAME,
        hidden_size=hf["hidden_size"],
        intermediate_size=hf["intermediate_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=hf.get("num_key_value_heads", heads),
        head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
        vocab_size=hf["vocab_size"],
        context_window=hf.get("max_position_embeddings", 2048),
        norm="layer",
        norm_eps=hf.get("layer_norm_eps", 1e-5),
        activation="gelu",
        gated_mlp=False,
        qkv_bias=True,
        linear_bias=True,
        rope_theta=rope_fields(hf)[0],
        tie_word_embeddings=hf.get("tie_word_embeddings", True),
        bos_token_id=hf.get("bos_token_id"),
        eos_token_ids=tuple(hf["eos_token_id"]) if isinstance(hf.get("eos_token_id"), list) else ((hf["eos_token_id"],) if hf.get("eos_token_id") is not None else ()),
    )


TINY = ModelConfig(
    arch=NAME, hidden_size=64, intermediate_size=256, num_layers=2, num_heads=4, num_kv_heads=4, head_dim=16, vocab_size=512, context_window=2048,
    norm="layer", activation="gelu", gated_mlp=False, qkv_bias=True, linear_bias=True,
)
