"""Write a model's tensors as an fp16 GGUF that llama.cpp loads (architectures llama, qwen2).

Used for models that do not come as GGUF (dummy weights of catalog models, HF directories);
llama.cpp's quantizer then turns it into Q4_0. The vocabulary written is a placeholder of the
right size: the runner tokenizes with the model's own tokenizer and hands llama.cpp token ids,
so llama.cpp's tokenizer is never used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.errors import UserError
from harness.models.sources.base import LoadedModel
from harness.models.sources.gguf_file import _BLOCK_NAMES, _TOP_NAMES

SUPPORTED = ("llama", "qwen2")
_HF_TO_GGUF_TOP = {hf: g for g, hf in _TOP_NAMES.items()}
_HF_TO_GGUF_BLOCK = {hf: g for g, hf in _BLOCK_NAMES.items()}
N_BYTE_TOKENS = 256


def gguf_tensor_name(hf_name: str) -> str:
    if hf_name in _HF_TO_GGUF_TOP:
        return _HF_TO_GGUF_TOP[hf_name]
    _, _, idx, rest = hf_name.split(".", 3)  # model.layers.N.<rest>
    return f"blk.{idx}.{_HF_TO_GGUF_BLOCK[rest]}"


def permute_for_llama_rope(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF's rotate-half row order -> llama.cpp's adjacent-pair order (inverse of
    gguf_file._unpermute).

    llama.cpp's "llama" architecture rotates adjacent pairs (x0, x1), (x2, x3)...; HF checkpoints
    rotate the two halves of each head. Reordering the q/k rows makes both compute the same."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_fp16_gguf(model: LoadedModel, path: Path) -> None:
    import gguf

    cfg = model.config
    if cfg.arch not in SUPPORTED:
        raise UserError(
            f"{model.name}: llama.cpp has no {cfg.arch!r} architecture here; use --engine tvm"
            f" (llama.cpp side: {', '.join(SUPPORTED)})"
        )
    arch = cfg.arch
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(model.name)
    writer.add_context_length(cfg.context_window)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_heads)
    writer.add_head_count_kv(cfg.num_kv_heads)
    writer.add_key_length(cfg.head_dim)
    writer.add_value_length(cfg.head_dim)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_layer_norm_rms_eps(cfg.norm_eps)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    _add_placeholder_vocab(writer, cfg.vocab_size)

    for hf_name, array in model.iter_tensors():
        if arch == "llama" and hf_name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = cfg.num_heads if "q_proj" in hf_name else cfg.num_kv_heads
            array = permute_for_llama_rope(array, heads)
        if arch == "llama" and hf_name.endswith(("q_proj.bias", "k_proj.bias")):
            raise UserError(
                f"{model.name}: a llama model with q/k biases cannot be written for llama.cpp"
            )
        # 2-D weights in fp16 (the quantizer's input); norms
        # and biases stay fp32 as llama.cpp keeps them.
        data = array.astype(np.float16) if array.ndim == 2 else array.astype(np.float32)
        writer.add_tensor(gguf_tensor_name(hf_name), data)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _add_placeholder_vocab(writer, vocab_size: int) -> None:
    """A SentencePiece-style vocabulary of the model's size: <unk>, <s>, </s>, the 256 byte
    tokens llama.cpp looks up when it loads one, then numbered filler tokens."""
    if vocab_size < 3 + N_BYTE_TOKENS:
        raise UserError(
            f"vocabulary of {vocab_size} tokens is too small for a llama.cpp GGUF (needs >="
            f" {3 + N_BYTE_TOKENS})"
        )
    import gguf

    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(N_BYTE_TOKENS))]
    types = [
        gguf.TokenType.UNKNOWN,
        gguf.TokenType.CONTROL,
        gguf.TokenType.CONTROL,
        *([gguf.TokenType.BYTE] * N_BYTE_TOKENS),
    ]
    tokens += [f"<tok{i}>" for i in range(len(tokens), vocab_size)]
    types += [gguf.TokenType.NORMAL] * (vocab_size - len(types))
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * vocab_size)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
