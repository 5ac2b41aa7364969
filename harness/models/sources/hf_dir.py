"""Hugging Face-style model directories: config.json + *.safetensors + tokenizer.json.

safetensors is a small format (8-byte header length, JSON header, raw little-endian data), read
here with numpy memory maps so a model is never fully loaded twice.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np

from harness.errors import UserError
from harness.models.sources.base import LoadedModel, TokenizerSpec

_DTYPES = {
    "F32": np.float32,
    "F16": np.float16,
    "F64": np.float64,
    "I64": np.int64,
    "I32": np.int32,
}


def _np_dtype(code: str, path: Path, name: str):
    if code == "BF16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    if code not in _DTYPES:
        raise UserError(
            f"{path}: tensor {name} has unsupported dtype {code}; convert the model to"
            " fp16/bf16/fp32"
        )
    return _DTYPES[code]


def read_safetensors_index(path: Path) -> dict[str, tuple]:
    """name -> (dtype code, shape, absolute byte offset, nbytes)."""
    try:
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(header_len))
    except (OSError, struct.error, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(
            f"{path}: not a readable safetensors file ({exc}); re-download it"
        ) from None
    size = path.stat().st_size
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        if 8 + header_len + end > size:
            raise UserError(
                f"{path}: tensor {name} runs past the end of the file (truncated); re-download it"
            )
        out[name] = (info["dtype"], tuple(info["shape"]), 8 + header_len + start, end - start)
    return out


def load_hf_dir(path: str | Path, name: str | None = None) -> LoadedModel:
    from harness.models.registry import config_from_hf

    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise UserError(
            f"{path}: no config.json; a model directory needs config.json, *.safetensors and"
            " tokenizer.json"
        )
    try:
        hf_config = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{cfg_file}: invalid JSON ({exc}); fix or re-download it") from None
    config = config_from_hf(hf_config, cfg_file)
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise UserError(
            f"{path}: no *.safetensors files; export the model with safetensors"
            " (save_pretrained(safe_serialization=True))"
        )
    fingerprint = hashlib.sha256(cfg_file.read_bytes())
    tensors = {}
    for f in files:
        st = f.stat()
        fingerprint.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
        for tname, (code, shape, offset, nbytes) in read_safetensors_index(f).items():
            tensors[tname] = _loader(f, tname, code, shape, offset, nbytes)
    if config.tie_word_embeddings is False and "lm_head.weight" not in tensors:
        raise UserError(f"{path}: config says untied embeddings but lm_head.weight is missing")
    tok = None
    tj = path / "tokenizer.json"
    if tj.is_file():
        tc_file = path / "tokenizer_config.json"
        tc = json.loads(tc_file.read_text()) if tc_file.is_file() else {}
        template = tc.get("chat_template")
        ct_file = path / "chat_template.jinja"
        if template is None and ct_file.is_file():
            template = ct_file.read_text()
        tok = TokenizerSpec(
            tj.read_text(),
            template,
            _token_str(tc.get("bos_token")),
            _token_str(tc.get("eos_token")),
            bool(tc.get("add_bos_token", False)),
        )
    return LoadedModel(
        name=name or path.name,
        config=config,
        tensors=tensors,
        tokenizer=tok,
        weights="real",
        source=str(path),
        fingerprint=fingerprint.hexdigest(),
    )


def _token_str(tok):
    return tok.get("content") if isinstance(tok, dict) else tok


def _loader(f: Path, tname: str, code: str, shape, offset: int, nbytes: int):
    def load() -> np.ndarray:
        dtype = _np_dtype(code, f, tname)
        count = int(np.prod(shape)) if shape else 1
        if count * np.dtype(dtype).itemsize != nbytes:
            raise UserError(
                f"{f}: tensor {tname} has {nbytes} bytes for shape {shape} {code}; the file is"
                " corrupt"
            )
        arr = (
            np.memmap(f, dtype=dtype, mode="r", offset=offset, shape=(count,))
            .reshape(shape)
            .astype(np.float32)
        )
        if not np.isfinite(arr).all():
            raise UserError(f"{f}: tensor {tname} holds NaN/Inf values; the file is corrupt")
        return arr

    return load


def save_hf_dir(
    out: Path,
    hf_config: dict,
    tensors: dict[str, np.ndarray],
    tokenizer_json: str | None = None,
    tokenizer_config: dict | None = None,
) -> None:
    """Write a model directory in the same format (used by the training stage and tests)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(hf_config, indent=1))
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        header[name] = {
            "dtype": "F32",
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + arr.nbytes],
        }
        blobs.append(arr.tobytes())
        offset += arr.nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(out / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for blob in blobs:
            f.write(blob)
    if tokenizer_json:
        (out / "tokenizer.json").write_text(tokenizer_json)
    if tokenizer_config:
        (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=1))
