"""Phi-3 and Phi-3.5 (Microsoft, arXiv 2404.14219): Llama blocks with fused checkpoints.

The checkpoint stores q/k/v as one ``qkv_proj`` and gate/up as one ``gate_up_proj`` (gate rows
first) — the very fusions the engine makes, so the weights pass through. Phi-3-mini-4k uses plain
RoPE; Phi-3.5-mini and the 128k Phi-3 models use LongRoPE (``longrope``, called ``su`` in older
configs): per-dimension frequency divisors (``short_factor`` up to the trained length,
``long_factor`` beyond it) and cos/sin scaled by an attention factor.

The engine compiles the short factors and so serves contexts up to
``original_max_position_embeddings`` (4096): its context window for these models. That covers the
study (L = 1000 plus the output) and is where the short factors are exact. Phi-3's sliding window
(2047 tokens in Phi-3-mini-4k) applies to every layer.
"""

from __future__ import annotations

import math

from harness.models.arch.llama import UnsupportedConfig, common_fields
from harness.models.config import ModelConfig

NAME = "phi3"
HF_MODEL_TYPES = ("phi3",)


def longrope(hf: dict, params: dict, head_dim: int) -> dict:
    """The engine's rope_scaling for a LongRoPE config: short factors and the attention factor."""
    original = hf.get("original_max_position_embeddings") or params.get(
        "original_max_position_embeddings"
    )
    if not original:
        raise UnsupportedConfig("a longrope config needs original_max_position_embeddings")
    short = params.get("short_factor")
    if not short or len(short) != head_dim // 2:
        raise UnsupportedConfig(
            f"longrope short_factor must hold head_dim / 2 = {head_dim // 2} values"
        )
    # transformers' convention for Phi-3: the factor is the ratio of the extended to the trained
    # length, and the attention factor follows from it unless the config states one.
    factor = hf.get("max_position_embeddings", original) / original
    attention = params.get("attention_factor")
    if attention is None:
        attention = math.sqrt(1 + math.log(factor) / math.log(original)) if factor > 1 else 1.0
    return {
        "rope_type": "longrope",
        "short_factor": [float(f) for f in short],
        "attention_factor": float(attention),
        "original_max_position_embeddings": int(original),
    }


def config_from_hf(hf: dict) -> ModelConfig:
    if hf.get("partial_rotary_factor", 1.0) != 1.0:
        raise UnsupportedConfig(
            f"partial_rotary_factor {hf['partial_rotary_factor']} is not supported (supported: 1.0)"
        )
    params = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in ("default", "longrope", "su"):
        raise UnsupportedConfig(
            f"RoPE scaling {kind!r} is not supported (supported: default, longrope)"
        )
    plain = {
        **hf,
        "rope_parameters": {"rope_theta": params.get("rope_theta", hf.get("rope_theta", 10000.0))},
        "rope_scaling": None,
    }
    fields = common_fields({**plain, "tie_word_embeddings": hf.get("tie_word_embeddings", False)})
    fields["context_window"] = hf.get("max_position_embeddings", 4096)
    if kind in ("longrope", "su"):
        fields["rope_scaling"] = longrope(hf, params, fields["head_dim"])
        fields["context_window"] = fields["rope_scaling"]["original_max_position_embeddings"]
    window = hf.get("sliding_window")
    layers = tuple(range(fields["num_layers"])) if window else ()
    return ModelConfig(arch=NAME, sliding_window=window, sliding_layers=layers, **fields)


TINY = ModelConfig(
    arch=NAME,
    hidden_size=64,
    intermediate_size=128,
    num_layers=2,
    num_heads=4,
    num_kv_heads=4,
    head_dim=16,
    vocab_size=512,
    context_window=512,
    tie_word_embeddings=False,
    rope_scaling={
        "rope_type": "longrope",
        "short_factor": [1.0 + 0.1 * i for i in range(8)],
        "attention_factor": 1.2,
        "original_max_position_embeddings": 512,
    },
)
