"""GGUF files (llama.cpp's format), read with the ``gguf`` package and dequantized on load."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np

from harness.cache import cache_dir, file_sha256, mark_used
from harness.errors import UserError
from harness.models.config import ModelConfig
from harness.models.sources.base import LoadedModel, TokenizerSpec

# GGUF tensor name (per block) -> HF name
_BLOCK_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_norm.bias": "input_layernorm.bias",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_norm.bias": "post_attention_layernorm.bias",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_TOP_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation (adjacent-pair RoPE) back to HF's rotate-half order."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def config_from_gguf(reader, path: Path) -> ModelConfig:
    arch = _field(reader, "general.architecture")
    if arch not in ("llama", "qwen2"):
        raise UserError(
            f"{path}: GGUF architecture {arch!r} is not supported; supported: llama, qwen2"
        )
    p = lambda k, d=None: _field(reader, f"{arch}.{k}", d)  # noqa: E731
    hidden, heads = int(p("embedding_length")), int(p("attention.head_count"))
    names = {t.name for t in reader.tensors}
    eos = _field(reader, "tokenizer.ggml.eos_token_id")
    bos = _field(reader, "tokenizer.ggml.bos_token_id")
    scaling = None
    if p("rope.scaling.type") not in (None, "none"):
        raise UserError(
            f"{path}: RoPE scaling {p('rope.scaling.type')!r} in GGUF is not supported yet; use the"
            " HF directory"
        )
    return ModelConfig(
        arch=arch,
        hidden_size=hidden,
        intermediate_size=int(p("feed_forward_length")),
        num_layers=int(p("block_count")),
        num_heads=heads,
        num_kv_heads=int(p("attention.head_count_kv", heads)),
        head_dim=int(p("rope.dimension_count", hidden // heads)),
        vocab_size=int(p("vocab_size", len(_field(reader, "tokenizer.ggml.tokens") or []))),
        context_window=int(p("context_length")),
        norm_eps=float(p("attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(p("rope.freq_base", 10000.0)),
        rope_scaling=scaling,
        qkv_bias="blk.0.attn_q.bias" in names,
        tie_word_embeddings="output.weight" not in names,
        bos_token_id=None if bos is None else int(bos),
        eos_token_ids=() if eos is None else (int(eos),),
    )


def tokenizer_from_gguf(reader) -> TokenizerSpec | None:
    """Rebuild a HF tokenizer.json (byte-level BPE) from the GGUF vocabulary and merges."""
    if _field(reader, "tokenizer.ggml.model") != "gpt2":
        return None
    tokens = list(_field(reader, "tokenizer.ggml.tokens"))
    merges = list(_field(reader, "tokenizer.ggml.merges"))
    types = list(_field(reader, "tokenizer.ggml.token_type"))
    # token_type 3 = control: these are the special tokens that must never be split.
    added = [
        {
            "id": i,
            "content": t,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for i, (t, ty) in enumerate(zip(tokens, types, strict=True))
        if ty == 3
    ]
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Digits", "individual_digits": True},
                {
                    "type": "ByteLevel",
                    "add_prefix_space": False,
                    "trim_offsets": True,
                    "use_regex": True,
                },
            ],
        },
        "post_processor": None,
        "decoder": {
            "type": "ByteLevel",
            "add_prefix_space": True,
            "trim_offsets": True,
            "use_regex": True,
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {t: i for i, t in enumerate(tokens)},
            "merges": merges,
        },
    }
    if _field(reader, "tokenizer.ggml.pre") not in ("smollm", "gpt2", None):
        # Other pre-tokenizers (e.g. qwen2's) split differently; keep the plain byte-level one.
        tok["pre_tokenizer"] = {
            "type": "ByteLevel",
            "add_prefix_space": False,
            "trim_offsets": True,
            "use_regex": True,
        }
    bos, eos = (
        _field(reader, "tokenizer.ggml.bos_token_id"),
        _field(reader, "tokenizer.ggml.eos_token_id"),
    )
    return TokenizerSpec(
        tokenizer_json=json.dumps(tok),
        chat_template=_field(reader, "tokenizer.chat_template"),
        bos_token=tokens[int(bos)] if bos is not None else None,
        eos_token=tokens[int(eos)] if eos is not None else None,
        add_bos=bool(_field(reader, "tokenizer.ggml.add_bos_token", False)),
    )


def _hf_name(gguf_name: str, path: Path) -> str | None:
    if gguf_name in _TOP_NAMES:
        return _TOP_NAMES[gguf_name]
    if gguf_name.startswith("blk."):
        _, idx, rest = gguf_name.split(".", 2)
        if rest not in _BLOCK_NAMES:
            raise UserError(
                f"{path}: unexpected tensor {gguf_name}; this GGUF variant is not supported"
            )
        return f"model.layers.{idx}.{_BLOCK_NAMES[rest]}"
    return None  # e.g. rope_freqs: recomputed from the config


def _open(path: Path):
    import gguf

    try:
        return gguf.GGUFReader(str(path))
    except Exception as exc:  # the gguf package raises ValueError/struct errors on damage
        raise UserError(f"{path}: not a readable GGUF file ({exc}); re-download it") from None


def _metadata(path: Path, sha256: str | None) -> dict:
    """Config, tokenizer and tensor names of a GGUF, cached beside the bundles.

    Opening a GGUF with gguf-py parses every metadata field (seconds for a 49k-token vocabulary);
    a cache hit of the bundle should not pay that. The entry is keyed by path, size and mtime,
    so an edited or replaced file is read again.
    """
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[
        :24
    ]
    entry = cache_dir("gguf-meta") / f"{key}.json"
    if entry.is_file():
        try:
            meta = json.loads(entry.read_text())
            mark_used(entry)
            return meta
        except json.JSONDecodeError:
            pass  # a torn write: rebuild it
    reader = _open(path)
    tok = tokenizer_from_gguf(reader)
    meta = {
        "config": config_from_gguf(reader, path).model_dump(mode="json"),
        "tokenizer": None if tok is None else tok.__dict__,
        "tensors": {
            t.name: hf for t in reader.tensors if (hf := _hf_name(t.name, path)) is not None
        },
        "file_type": int(_field(reader, "general.file_type", -1)),
        "sha256": sha256 or file_sha256(path),
    }
    tmp = entry.with_suffix(".part")
    tmp.write_text(json.dumps(meta))
    tmp.replace(entry)
    return meta


def load_gguf(path: str | Path, name: str | None = None, sha256: str | None = None) -> LoadedModel:
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"GGUF file not found: {path}; check the path or run `slm-bench models` for built-in"
            " names"
        )
    meta = _metadata(path, sha256)
    cfg = ModelConfig.model_validate(meta["config"])
    reader = functools.lru_cache(maxsize=1)(lambda: {t.name: t for t in _open(path).tensors})

    def loader(gguf_name: str, hf_name: str):
        def load() -> np.ndarray:
            from gguf.quants import dequantize

            t = reader()[gguf_name]
            try:
                arr = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
            except Exception as exc:
                raise UserError(
                    f"{path}: tensor {t.name} is corrupt ({exc}); re-download the file"
                ) from None
            if not np.isfinite(arr).all():
                raise UserError(
                    f"{path}: tensor {t.name} holds NaN/Inf values; the file is corrupt,"
                    " re-download it"
                )
            # Only llama.cpp's "llama" architecture reorders q/k rows (adjacent-pair RoPE);
            # its "qwen2" keeps HF's order and rotates halves (NEOX style).
            if cfg.arch == "llama" and hf_name.endswith("q_proj.weight"):
                arr = _unpermute(arr, cfg.num_heads)
            elif cfg.arch == "llama" and hf_name.endswith("k_proj.weight"):
                arr = _unpermute(arr, cfg.num_kv_heads)
            return arr

        return load

    return LoadedModel(
        name=name or path.stem,
        config=cfg,
        tensors={hf: loader(g, hf) for g, hf in meta["tensors"].items()},
        tokenizer=None if meta["tokenizer"] is None else TokenizerSpec(**meta["tokenizer"]),
        weights="real",
        source=str(path),
        fingerprint=meta["sha256"],
        extra={"gguf_file_type": meta["file_type"]},
    )
