"""One normalized description of a decoder-only transformer, whatever file it came from."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator


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
    norms_per_layer: Literal[2, 4] = 2  # Gemma 2 has four (pre/post attention and MLP)
    norm_eps: float = 1e-5
    # Gemma stores its RMSNorm scale as w with the norm multiplying by (1 + w): the offset is
    # added to the weights when they are converted, so one norm kernel serves every family.
    norm_weight_offset: float = 0.0
    activation: Literal["silu", "gelu"] = "silu"
    gated_mlp: bool = True  # SwiGLU (gate * up) vs a plain two-layer MLP
    qkv_bias: bool = False
    linear_bias: bool = False  # biases on o_proj and the MLP too (SlimLM / MPT with biases)
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    embed_scale: float | None = None  # Gemma: embeddings times sqrt(hidden_size)
    # softmax scale; None: head_dim ** -0.5 (Gemma 2: query_pre_attn_scalar ** -0.5)
    attn_scale: float | None = None
    # Gemma 2: scores -> cap * tanh(scores / cap) before the softmax
    attn_softcap: float | None = None
    final_softcap: float | None = None  # Gemma 2: the same on the output logits
    # Keys further back than the window are not attended to, in the layers listed (Gemma 2:
    # every other layer; Phi-3: all). None: full causal attention everywhere.
    sliding_window: int | None = None
    sliding_layers: tuple[int, ...] = ()
    tie_word_embeddings: bool = True
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()

    @model_validator(mode="after")
    def _sliding_layers_exist(self):
        if any(not 0 <= i < self.num_layers for i in self.sliding_layers):
            raise ValueError(
                f"sliding_layers {self.sliding_layers} name layers outside 0..{self.num_layers - 1}"
            )
        return self

    def window_applies(self) -> bool:
        """Whether some layer's window is shorter than the context, i.e. ever masks a key."""
        return (
            bool(self.sliding_layers)
            and self.sliding_window is not None
            and self.sliding_window < self.context_window
        )

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
