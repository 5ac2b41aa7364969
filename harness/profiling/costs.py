"""Kernel name -> group, and the bytes and operations one call moves, from its argument shapes.

The names are those the Relax VM calls (``func_symbol`` of its instrument hook), checked against
real bundles: our matmuls are ``(gemv|gemm)_(q4|q4a8|f32)_{N}x{K}`` (harness.engines.tvm.layers),
decode GEMVs that fold in the ops around them add ``_norm``, ``_swiglu``, ``_res``,
``_from_float16``, ``_to_float16``,
norms and SwiGLU are ``rms_norm_cpu*`` / ``swiglu_cpu*``, TVM's legalizer names the rest after
its ops (``add1``, ``cast2``, ``fused_reshape1_add``). Attention, RoPE and the KV append all run
inside one VM builtin (``vm.builtin.attention_kv_cache_attention_with_fused_qkv``): the paged
KV cache calls its TIR kernels from C++, where the VM's hook cannot see them, so the engine's
RoPE time is part of "attention" and the "rope" group stays empty unless a model has its own.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

MATMUL = re.compile(
    r"^(gemv|gemm)_(q4a8|q4|f32)_(\d+)x(\d+)"
    r"((?:_norm|_swiglu|_res|_from_float\d+|_to_float\d+)*)$"
)
ATTENTION = ("attention_kv_cache", "batch_decode", "batch_prefill", "attention")
# VM bookkeeping: shape checks, allocations, tuple plumbing. Not kernels; their time is part of
# the phase's overhead (wall time minus kernel time).
VM_PREFIXES = ("vm.builtin.", "shape_func", "compute_symbolic_expr")
ELEMENTWISE = (
    "add",
    "subtract",
    "multiply",
    "divide",
    "cast",
    "reshape",
    "swiglu",
    "gelu",
    "silu",
    "tanh",
    "softcap",
    "last_position",
    "concatenate",
    "split",
    "strided_slice",
    "transpose",
    "take",
    "fused_",
)


@dataclass(frozen=True)
class Tensor:
    """A call argument's shape and dtype (what the cost model needs of it)."""

    shape: tuple[int, ...]
    dtype: str

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * dtype_bytes(self.dtype)


def dtype_bytes(dtype: str) -> int:
    bits = int(re.sub(r"\D", "", dtype) or 32)
    return max(1, bits // 8)


def is_vm_builtin(name: str) -> bool:
    return name.startswith(VM_PREFIXES) and not is_attention(name)


def is_attention(name: str) -> bool:
    return any(part in name for part in ATTENTION)


def group_of(name: str, vocab_size: int) -> str | None:
    """The group a kernel's time counts in; None for the VM's own bookkeeping."""
    found = MATMUL.match(name)
    if found:
        return "lm_head" if int(found.group(3)) == vocab_size else "linear"
    if is_attention(name):
        return "attention"
    if is_vm_builtin(name):
        return None
    if "norm" in name:
        return "norm"
    if "rope" in name:
        return "rope"
    if name.startswith("embed"):
        return "embedding"
    if name == "sampling" or name.startswith("argmax"):  # host-side, or the library's own
        return "lm_head"
    if any(part in name for part in ELEMENTWISE):
        return "elementwise"
    return "other"


def is_int8(name: str) -> bool:
    return "q4a8" in name


def call_cost(name: str, args: list[Tensor], context: int) -> tuple[float, float]:
    """(bytes, ops) of one call. ``context``: tokens in the KV cache once this forward pass has
    appended its own (what attention reads)."""
    if not args or is_vm_builtin(name):
        return 0.0, 0.0
    found = MATMUL.match(name)
    if found:
        return matmul_cost(args, int(found.group(4)))
    if is_attention(name):
        return attention_cost(args, context)
    if name.startswith("embed"):
        return embed_cost(args)
    if name.startswith("argmax"):  # the logits read, one comparison each, one index written
        return float(sum(a.nbytes for a in args)), float(args[0].numel)
    # norms, activations, casts, reshapes: each tensor read or written once, ~1 op an element
    return float(sum(a.nbytes for a in args)), float(args[-1].numel)


def matmul_cost(args: list[Tensor], k: int) -> tuple[float, float]:
    """x [M, K] @ W [N, K]^T (+ bias) -> y [M, N]: every argument once (the packed weights and
    scales included, and a folded-in norm's weight, SwiGLU's [M, 2K] input, the residual),
    2*M*N*K operations (the folded-in ops' few per element are left out)."""
    x, y = args[0], args[-1]
    m, n = x.shape[0], y.shape[-1]
    return float(sum(a.nbytes for a in args)), 2.0 * m * n * k


def attention_cost(args: list[Tensor], context: int) -> tuple[float, float]:
    """Paged attention with fused QKV: qkv [n, Hq + 2 Hkv, D] -> out [n, Hq, D]. Reads the whole
    cache of ``context`` positions once, appends n keys and values; QK^T and PV are 2 * 2 * Hq * D
    operations per (query, visible key) pair, causal within the new tokens."""
    qkv, out = args[-2], args[-1]
    n, heads, d = qkv.shape[-3], qkv.shape[-2], qkv.shape[-1]
    hq = out.shape[-2]
    hkv = (heads - hq) // 2
    item = dtype_bytes(qkv.dtype)
    kv_read = 2 * context * hkv * d * item
    kv_write = 2 * n * hkv * d * item
    pairs = n * (context - n) + n * (n + 1) / 2
    return float(qkv.nbytes + out.nbytes + kv_read + kv_write), 4.0 * hq * d * pairs


def embed_cost(args: list[Tensor]) -> tuple[float, float]:
    """Gather of n rows from the packed table [vocab / LANES, K / 8, LANES] (+ scales): only the
    gathered rows' share of the table is read."""
    *table, ids, out = args
    rows = table[0].shape[0] * table[0].shape[-1] if len(table[0].shape) == 3 else 1
    fraction = min(1.0, ids.numel / rows)
    return float(sum(t.nbytes for t in table) * fraction + ids.nbytes + out.nbytes), float(
        out.numel
    )
