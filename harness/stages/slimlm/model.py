"""SlimLM in PyTorch: an MPT-style decoder that keeps biases in its layers.

Each block is pre-norm: LayerNorm (with bias) -> causal self-attention (q/k/v/out projections,
all with bias) -> residual; LayerNorm -> two-layer GELU MLP (with biases) -> residual. A final
LayerNorm, and the LM head tied to the token embedding.

Positions: MPT's default is ALiBi (a per-head linear bias added to the attention scores, no
position embedding at all). SlimLM here uses rotary position embeddings (RoPE) instead, because
the serving engine's paged KV cache (TVM's, as in MLC-LLM) applies RoPE to q and k itself as it
appends to the cache; ALiBi would need a bias term inside its attention kernels that it does not
have. RoPE is the usual choice of small decoders (Llama, Qwen2, SmolLM) and trains as well.

Parameter names follow Hugging Face's Llama layout (``model.layers.N.self_attn.q_proj`` ...), the
names ``harness.engines.tvm.weights`` reads for ``model_type: "slimlm"``, so ``state_dict()``
is exported as is. The numerics also follow the engine: GELU with the tanh approximation,
rotate-half RoPE with inverse frequencies ``theta ** (-2i / head_dim)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

MODEL_TYPE = "slimlm"


@dataclass(frozen=True)
class SlimLMConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    context_window: int = 2048
    rope_theta: float = 10000.0
    layer_norm_eps: float = 1e-5
    bos_token_id: int | None = None
    eos_token_id: int | None = None

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def __post_init__(self):
        if self.hidden_size % self.num_heads or self.head_dim % 2:
            raise ValueError(
                f"hidden_size {self.hidden_size} must split into {self.num_heads} heads of an even"
                " size (RoPE)"
            )

    def to_hf(self) -> dict:
        """config.json as ``harness.models.arch.slimlm.config_from_hf`` reads it."""
        return {
            "model_type": MODEL_TYPE,
            "architectures": ["SlimLMForCausalLM"],
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_heads,
            "head_dim": self.head_dim,
            "max_position_embeddings": self.context_window,
            "rope_theta": self.rope_theta,
            "layer_norm_eps": self.layer_norm_eps,
            "hidden_act": "gelu_pytorch_tanh",
            "tie_word_embeddings": True,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "torch_dtype": "float32",
        }

    @classmethod
    def from_hf(cls, hf: dict) -> SlimLMConfig:
        return cls(
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=hf["num_attention_heads"],
            context_window=hf.get("max_position_embeddings", 2048),
            rope_theta=hf.get("rope_theta", 10000.0),
            layer_norm_eps=hf.get("layer_norm_eps", 1e-5),
            bos_token_id=hf.get("bos_token_id"),
            eos_token_id=hf.get("eos_token_id"),
        )

    def as_dict(self) -> dict:
        return asdict(self)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Rotary(nn.Module):
    """cos/sin tables of rotate-half RoPE, computed for the positions asked (no cached buffer,
    so the state dict holds only the exported weights)."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        self.head_dim, self.theta = head_dim, theta

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inv = self.theta ** (
            -torch.arange(0, self.head_dim, 2, dtype=torch.float32, device=positions.device)
            / self.head_dim
        )
        angles = positions.float()[:, None] * inv[None, :]
        angles = torch.cat((angles, angles), dim=-1)
        return angles.cos(), angles.sin()


class Attention(nn.Module):
    def __init__(self, cfg: SlimLMConfig):
        super().__init__()
        h = cfg.hidden_size
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (
            nn.Linear(h, h, bias=True) for _ in range(4)
        )

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        q, k, v = (
            proj(x).view(b, s, self.num_heads, self.head_dim).transpose(1, 2)
            for proj in (self.q_proj, self.k_proj, self.v_proj)
        )
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(out.transpose(1, 2).reshape(b, s, -1))


class MLP(nn.Module):
    def __init__(self, cfg: SlimLMConfig):
        super().__init__()
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=True)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.gelu(self.up_proj(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg: SlimLMConfig):
        super().__init__()
        self.input_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Body(nn.Module):
    def __init__(self, cfg: SlimLMConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)


class SlimLM(nn.Module):
    """``forward(ids)`` -> logits of every position, shape (batch, seq, vocab)."""

    def __init__(self, cfg: SlimLMConfig, seed: int | None = None):
        super().__init__()
        if seed is not None:
            torch.manual_seed(seed)
        self.config = cfg
        self.model = Body(cfg)
        self.rotary = Rotary(cfg.head_dim, cfg.rope_theta)
        self._init_weights()

    def _init_weights(self) -> None:
        # GPT-2/MPT style: N(0, 0.02), zero biases, residual output projections scaled by depth.
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif "layernorm" in name or name.startswith("model.norm"):
                nn.init.ones_(p)
            else:
                std = (
                    0.02 / (2 * self.config.num_layers) ** 0.5
                    if name.endswith(("o_proj.weight", "down_proj.weight"))
                    else 0.02
                )
                nn.init.normal_(p, 0.0, std)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.config.context_window:
            raise ValueError(
                f"sequence of {ids.shape[1]} tokens exceeds the context window of"
                f" {self.config.context_window}"
            )
        cos, sin = self.rotary(torch.arange(ids.shape[1], device=ids.device))
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        return F.linear(self.model.norm(x), self.model.embed_tokens.weight)  # tied LM head

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross entropy; ``targets`` are
    already shifted, -100 marks ignored positions."""
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=-100
    )
