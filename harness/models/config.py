"""One normalized description of a decoder-only transformer, whatever file it came from."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    arch: str  # key in harness.models.registry
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    context_window: int
    norm: Literal["rms", "layer"] = "rms"
    norms_per_layer: int = 2  # Gemma 2 has four (pre/post attention and MLP)
    norm_eps: float = 1e-5
    activation: Literal["silu", "gelu"] = "silu"
    gated_mlp: bool = True  # SwiGLU (gate * up) vs a plain two-layer MLP
    qkv_bias: bool = False
    linear_bias: bool = False  # biases on o_proj and the MLP too (SlimLM / MPT with biases)
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    tie_word_embeddings: bool = True
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()

    def param_count(self) -> int:
        """Parameters computed from the config; tied embeddings are counted once."""
        h, i, d = self.hidden_size, self.intermediate_size, self.head_dim
        q, kv = self.num_heads * d, self.num_kv_heads * d
        attn = h * (q + 2 * kv) + q * h
        attn += (q + 2 * kv) if self.qkv_bias else 0
        attn += h if self.linear_bias else 0
        mlp = (3 if self.gated_mlp else 2) * h * i
        mlp += ((2 if self.gated_mlp else 1) * i + h) if self.linear_bias else 0
        norm_params = h * (2 if self.norm == "layer" else 1)
        per_layer = attn + mlp + self.norms_per_layer * norm_params
        embed = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return self.num_layers * per_layer + embed + norm_params

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(N, K) of every per-layer linear after fusion (qkv, gate_up)."""
        h, i, d = self.hidden_size, self.intermediate_size, self.head_dim
        q, kv = self.num_heads * d, self.num_kv_heads * d
        return {
            "qkv_proj": (q + 2 * kv, h),
            "o_proj": (h, q),
            "up_proj": ((2 if self.gated_mlp else 1) * i, h),
            "down_proj": (h, i),
        }
