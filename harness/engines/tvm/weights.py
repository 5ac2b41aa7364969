"""HF-named float weights -> the engine's parameter names, fused and packed per preset.

Fusions (fewer, larger kernels; what MLC-LLM does too): q/k/v -> ``attn.qkv_proj``,
gate/up -> ``mlp.up_proj`` (gate rows first); checkpoints that store them fused already (Phi-3's
``qkv_proj`` and ``gate_up_proj``, same row order) pass through. Shards are flat little-endian
binaries with a JSON index, loaded with ``np.fromfile`` — no pickle, no extra dependency.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from harness.errors import UserError
from harness.models.config import ModelConfig
from harness.models.sources.base import LoadedModel
from harness.quantization import QuantPreset, pack_linear

SHARD_BYTES = 256 << 20
# Our norm name -> the checkpoint's, per layer. With four norms (Gemma 2) the checkpoint's
# "post_attention_layernorm" is the norm on the attention output, not the one before the MLP.
LAYER_NORMS = {
    2: (("attn_norm", "input_layernorm"), ("mlp_norm", "post_attention_layernorm")),
    4: (
        ("attn_norm", "input_layernorm"),
        ("post_attn_norm", "post_attention_layernorm"),
        ("mlp_norm", "pre_feedforward_layernorm"),
        ("post_mlp_norm", "post_feedforward_layernorm"),
    ),
}


def _take(
    model: LoadedModel, cache: dict, name: str, shape: tuple[int, ...] | None = None
) -> np.ndarray:
    if name not in model.tensors:
        raise UserError(
            f"{model.source}: tensor {name} is missing; the weights do not match architecture"
            f" {model.config.arch}"
        )
    arr = cache.pop(name) if name in cache else model.tensors[name]()
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise UserError(
            f"{model.source}: tensor {name} has shape {tuple(arr.shape)}, expected {tuple(shape)}"
            " from the config"
        )
    return arr


def _linear(
    prefix: str, w: np.ndarray, b: np.ndarray | None, preset: QuantPreset, want_bias: bool
) -> Iterator[tuple[str, np.ndarray]]:
    for part, arr in pack_linear(w, preset).items():
        yield f"{prefix}.{part}", arr
    if want_bias:
        yield (
            f"{prefix}.bias",
            (b if b is not None else np.zeros(w.shape[0], np.float32)).astype(np.float32),
        )


def convert(model: LoadedModel, preset: QuantPreset) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (engine parameter name, array) for every parameter the DecoderLM declares."""
    cfg: ModelConfig = model.config
    h, d = cfg.hidden_size, cfg.head_dim
    q_rows, kv_rows = cfg.num_heads * d, cfg.num_kv_heads * d
    cache: dict = {}
    take = lambda name, shape=None: _take(model, cache, name, shape)  # noqa: E731
    opt = lambda name: model.tensors[name]() if name in model.tensors else None  # noqa: E731

    yield from _linear(
        "embed.table", take("model.embed_tokens.weight", (cfg.vocab_size, h)), None, preset, False
    )
    for i in range(cfg.num_layers):
        p = f"model.layers.{i}"
        for ours, theirs in LAYER_NORMS[cfg.norms_per_layer]:
            yield from _norm(f"layers.{i}.{ours}", f"{p}.{theirs}", cfg, take, opt)
        fused = f"{p}.self_attn.qkv_proj.weight"
        if fused in model.tensors:
            qkv = take(fused, (q_rows + 2 * kv_rows, h))
        else:
            qkv = np.concatenate(
                [
                    take(f"{p}.self_attn.{x}_proj.weight", (rows, h))
                    for x, rows in (("q", q_rows), ("k", kv_rows), ("v", kv_rows))
                ]
            )
        qkv_b = None
        if cfg.qkv_bias:
            qkv_b = np.concatenate([take(f"{p}.self_attn.{x}_proj.bias") for x in "qkv"])
        yield from _linear(f"layers.{i}.attn.qkv_proj", qkv, qkv_b, preset, cfg.qkv_bias)
        yield from _linear(
            f"layers.{i}.attn.o_proj",
            take(f"{p}.self_attn.o_proj.weight", (h, q_rows)),
            opt(f"{p}.self_attn.o_proj.bias"),
            preset,
            cfg.linear_bias,
        )
        inter = cfg.intermediate_size
        if cfg.gated_mlp and f"{p}.mlp.gate_up_proj.weight" in model.tensors:
            up, up_b = take(f"{p}.mlp.gate_up_proj.weight", (2 * inter, h)), None
        elif cfg.gated_mlp:
            up = np.concatenate(
                [
                    take(f"{p}.mlp.gate_proj.weight", (inter, h)),
                    take(f"{p}.mlp.up_proj.weight", (inter, h)),
                ]
            )
            up_b = None
            if cfg.linear_bias:
                up_b = np.concatenate(
                    [take(f"{p}.mlp.gate_proj.bias"), take(f"{p}.mlp.up_proj.bias")]
                )
        else:
            up, up_b = take(f"{p}.mlp.up_proj.weight", (inter, h)), opt(f"{p}.mlp.up_proj.bias")
        yield from _linear(f"layers.{i}.mlp.up_proj", up, up_b, preset, cfg.linear_bias)
        yield from _linear(
            f"layers.{i}.mlp.down_proj",
            take(f"{p}.mlp.down_proj.weight", (h, inter)),
            opt(f"{p}.mlp.down_proj.bias"),
            preset,
            cfg.linear_bias,
        )
    yield from _norm("final_norm", "model.norm", cfg, take, opt)
    if not cfg.tie_word_embeddings:
        yield from _linear(
            "lm_head", take("lm_head.weight", (cfg.vocab_size, h)), None, preset, False
        )


def _norm(ours: str, theirs: str, cfg: ModelConfig, take, opt) -> Iterator[tuple[str, np.ndarray]]:
    yield (
        f"{ours}.weight",
        take(f"{theirs}.weight", (cfg.hidden_size,)).astype(np.float32)
        + np.float32(cfg.norm_weight_offset),
    )
    if cfg.norm == "layer":
        bias = opt(f"{theirs}.bias")
        yield (
            f"{ours}.bias",
            (bias if bias is not None else np.zeros(cfg.hidden_size, np.float32)).astype(
                np.float32
            ),
        )


def write_shards(
    params: Iterator[tuple[str, np.ndarray]],
    expected: dict[str, tuple[tuple[int, ...], str]],
    out_dir: Path,
    advance=None,
) -> dict:
    """Write params into shards under out_dir, checking each against the exported declaration;
    ``advance(nbytes)`` (a progress meter) hears of each parameter written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    index, shard, offset, handle = [], 0, 0, None
    seen = set()
    try:
        for name, arr in params:
            if name not in expected:
                raise UserError(f"internal: converter produced unknown parameter {name}")
            shape, dtype = expected[name]
            arr = np.ascontiguousarray(arr, dtype=dtype)
            if tuple(arr.shape) != tuple(shape):
                raise UserError(
                    f"parameter {name} has shape {arr.shape}, the model declares {shape}"
                )
            if handle is None or offset + arr.nbytes > SHARD_BYTES and offset > 0:
                if handle:
                    handle.close()
                    shard += 1
                handle, offset = open(out_dir / f"shard_{shard:03d}.bin", "wb"), 0
            handle.write(arr.tobytes())
            index.append(
                {
                    "name": name,
                    "shape": list(arr.shape),
                    "dtype": str(arr.dtype),
                    "shard": f"shard_{shard:03d}.bin",
                    "offset": offset,
                    "nbytes": arr.nbytes,
                }
            )
            offset += arr.nbytes
            seen.add(name)
            if advance is not None:
                advance(arr.nbytes)
    finally:
        if handle:
            handle.close()
    missing = set(expected) - seen
    if missing:
        raise UserError(
            f"weights lack parameters {sorted(missing)[:3]}...; the source does not match the"
            " architecture"
        )
    meta = {"params": index, "total_bytes": sum(p["nbytes"] for p in index)}
    (out_dir / "index.json").write_text(json.dumps(meta, indent=1))
    return meta


def load_params(params_dir: Path, order: list[str], device) -> list:
    """Shards -> TVM tensors in the order the compiled functions expect.

    On the CPU each tensor is read straight into one arena on transparent huge pages
    (``arena.host_arena``: decode 1.00-1.08x) and TVM gets views of it, so the load holds no
    second copy. Elsewhere (a GPU) each tensor is read into a buffer of its own and copied to
    the device; the buffer goes before the next is read. A memory map of the shards would leave
    every page it touched resident until the map closed: the whole model twice at the load's
    peak, which the runner's peak_mem_bytes would report (SmolLM2: 72 MB of 75.8)."""
    import tvm

    from .arena import aligned, host_arena
    from .runtime import CPU_DEVICE_TYPE

    meta = json.loads((params_dir / "index.json").read_text())
    by_name = {p["name"]: p for p in meta["params"]}
    wanted = [by_name[name] for name in order]
    on_host = device.dlpack_device_type() == CPU_DEVICE_TYPE
    arena = host_arena(sum(aligned(p["nbytes"]) for p in wanted)) if on_host else None
    files: dict[str, BinaryIO] = {}
    out, at = [], 0
    try:
        for p in wanted:
            if p["shard"] not in files:
                files[p["shard"]] = open(params_dir / p["shard"], "rb")
            shard = files[p["shard"]]
            shard.seek(p["offset"])
            if arena is not None:
                place = arena[at : at + p["nbytes"]]
                at += aligned(p["nbytes"])
                got = shard.readinto(memoryview(place))
            else:
                place = np.frombuffer(shard.read(p["nbytes"]), dtype=np.uint8)
                got = place.nbytes
            if got != p["nbytes"]:
                raise UserError(
                    f"{params_dir / p['shard']} ends before parameter {p['name']}: the bundle is"
                    " truncated; delete it and compile again"
                )
            arr = place.view(p["dtype"]).reshape(p["shape"])
            out.append(
                tvm.runtime.from_dlpack(arr)
                if arena is not None
                else tvm.runtime.tensor(arr, device)
            )
    finally:
        for f in files.values():
            f.close()
    return out
