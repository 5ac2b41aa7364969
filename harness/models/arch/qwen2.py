"""Qwen2 / Qwen2.5: Llama blocks plus a bias on the fused Q/K/V projection."""

from __future__ import annotations

from harness.models.arch.llama import common_fields
from harness.models.config import ModelConfig

NAME = "qwen2"
HF_MODEL_TYPES = ("qwen2",)


def config_from_hf(hf: dict) -> ModelConfig:
    fields = common_fields(hf)
    fields["context_window"] = hf.get("max_position_embeddings", 32768)
    return ModelConfig(arch=NAME, qkv_bias=True, **fields)


TINY = ModelConfig(
    arch=NAME,
    hidden_size=64,
    intermediate_size=128,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=16,
    vocab_size=512,
    context_window=2048,
    qkv_bias=True,
    rope_theta=1e6,
)
