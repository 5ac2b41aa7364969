"""Seeded random weights of the right shapes, for speed-only runs of models whose weights are
not at hand (a dense transformer's speed does not depend on its weight values). Every record
made from them says ``weights=dummy``."""

from __future__ import annotations

import hashlib

import numpy as np

from harness.models.config import ModelConfig
from harness.models.sources.base import LoadedModel

GENERATOR = "normal-f32"  # part of the fingerprint: other values, other bundles


def hf_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """HF-style tensor names and shapes for a config (what a real checkpoint would hold)."""
    h, i, d = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    q, kv = cfg.num_heads * d, cfg.num_kv_heads * d
    shapes: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (cfg.vocab_size, h),
        "model.norm.weight": (h,),
    }
    if cfg.norm == "layer":
        shapes["model.norm.bias"] = (h,)
    for n in range(cfg.num_layers):
        p = f"model.layers.{n}"
        norms = ["input_layernorm", "post_attention_layernorm"]
        if cfg.norms_per_layer == 4:  # Gemma 2's names for the norms around the MLP
            norms += ["pre_feedforward_layernorm", "post_feedforward_layernorm"]
        for norm in norms:
            shapes[f"{p}.{norm}.weight"] = (h,)
            if cfg.norm == "layer":
                shapes[f"{p}.{norm}.bias"] = (h,)
        for proj, rows in (("q", q), ("k", kv), ("v", kv)):
            shapes[f"{p}.self_attn.{proj}_proj.weight"] = (rows, h)
            if cfg.qkv_bias:
                shapes[f"{p}.self_attn.{proj}_proj.bias"] = (rows,)
        shapes[f"{p}.self_attn.o_proj.weight"] = (h, q)
        mlp = ["gate_proj", "up_proj"] if cfg.gated_mlp else ["up_proj"]
        for proj in mlp:
            shapes[f"{p}.mlp.{proj}.weight"] = (i, h)
        shapes[f"{p}.mlp.down_proj.weight"] = (h, i)
        if cfg.linear_bias:
            shapes[f"{p}.self_attn.o_proj.bias"] = (h,)
            for proj in mlp:
                shapes[f"{p}.mlp.{proj}.bias"] = (i,)
            shapes[f"{p}.mlp.down_proj.bias"] = (h,)
    if not cfg.tie_word_embeddings:
        shapes["lm_head.weight"] = (cfg.vocab_size, h)
    return shapes


def load_dummy(name: str, cfg: ModelConfig, seed: int = 0) -> LoadedModel:
    def loader(tname: str, shape: tuple[int, ...]):
        def load() -> np.ndarray:
            # One generator per tensor, seeded by name: any tensor can be made alone, reproducibly.
            rng = np.random.default_rng(
                [seed, int(hashlib.sha256(tname.encode()).hexdigest()[:8], 16)]
            )
            if len(shape) == 1:
                return (
                    (1.0 + 0.02 * rng.standard_normal(shape)).astype(np.float32)
                    if "norm" in tname
                    else (0.02 * rng.standard_normal(shape)).astype(np.float32)
                )
            # float32 from the start and scaled in place: an 8B model's embedding is 2 GB as is
            matrix = rng.standard_normal(shape, dtype=np.float32)
            matrix *= np.float32(1.0 / np.sqrt(shape[1]))
            return matrix

        return load

    tensors = {t: loader(t, s) for t, s in hf_shapes(cfg).items()}
    fp = hashlib.sha256(f"dummy:{GENERATOR}:{seed}:{cfg.model_dump_json()}".encode()).hexdigest()
    return LoadedModel(
        name=name,
        config=cfg,
        tensors=tensors,
        tokenizer=None,
        weights="dummy",
        source=f"dummy weights, seed={seed}",
        fingerprint=fp,
    )
