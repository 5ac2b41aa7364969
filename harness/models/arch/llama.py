"""The Llama family: Llama-2/3 (with the ``llama3`` RoPE scaling of Llama-3.1/3.2), SmolLM and
SmolLM2 (Llama blocks, tied embeddings). RMSNorm, SwiGLU MLP, no biases, grouped-query attention."""

from __future__ import annotations

from harness.models.config import ModelConfig

NAME = "llama"
HF_MODEL_TYPES = ("llama",)


def _eos(hf: dict) -> tuple[int, ...]:
    eos = hf.get("eos_token_id")
    if eos is None:
        return ()
    return tuple(eos) if isinstance(eos, list) else (int(eos),)


def rope_fields(hf: dict) -> tuple[float, dict | None]:
    """(theta, scaling) from either transformers 4's ``rope_theta``/``rope_scaling`` keys or
    transformers 5's single ``rope_parameters`` dict."""
    params = hf.get("rope_parameters")
    if params is not None:
        theta, scaling = params.get("rope_theta", hf.get("rope_theta", 10000.0)), params
    else:
        theta, scaling = hf.get("rope_theta", 10000.0), hf.get("rope_scaling")
    if scaling is None:
        return float(theta), None
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind not in ("llama3", "default"):
        raise UnsupportedConfig(
            f"RoPE scaling {kind!r} is not supported (supported: default, llama3)"
        )
    if kind == "default":
        return float(theta), None
    return float(theta), {k: v for k, v in scaling.items() if k != "rope_theta"} | {
        "rope_type": kind
    }


class UnsupportedConfig(ValueError):
    """A config value this architecture module cannot compile."""


def common_fields(hf: dict) -> dict:
    heads = hf["num_attention_heads"]
    theta, scaling = rope_fields(hf)
    return dict(
        hidden_size=hf["hidden_size"],
        intermediate_size=hf["intermediate_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=hf.get("num_key_value_heads", heads),
        head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
        vocab_size=hf["vocab_size"],
        context_window=hf.get("max_position_embeddings", 2048),
        norm_eps=hf.get("rms_norm_eps", 1e-5),
        rope_theta=theta,
        rope_scaling=scaling,
        tie_word_embeddings=hf.get("tie_word_embeddings", False),
        bos_token_id=hf.get("bos_token_id"),
        eos_token_ids=_eos(hf),
    )


def config_from_hf(hf: dict) -> ModelConfig:
    return ModelConfig(arch=NAME, **common_fields(hf))


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
)
