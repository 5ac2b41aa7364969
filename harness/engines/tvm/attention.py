"""The paged KV cache (TVM's ``vm.builtin.paged_attention_kv_cache_create``) for our models."""

from __future__ import annotations

import contextlib

from tvm import relax as rx
from tvm.relax.frontend.nn.llm import kv_cache as tvm_kv_cache
from tvm.relax.frontend.nn.llm.kv_cache import RopeMode, TIRPagedKVCache

from harness.models.config import ModelConfig

from .kernels import attention as cpu_attention
from .kernels import decode_attention, kv_append


@contextlib.contextmanager
def _our_cpu_kernels(cfg: ModelConfig, target):
    """Swap our parallel CPU kernels (decode, ragged prefill, RoPE, the KV append) in for TVM's
    serial ones while the cache is declared.

    TIRPagedKVCache looks its CPU kernel factories up by module-level name when it is built;
    replacing those names for the duration of the call is the narrowest hook the 0.27 API
    offers (the alternative is re-declaring its ~40-argument builtin call by hand). Our kernels
    also carry what TVM's lack: Gemma 2's score soft-capping, exact per-query sliding windows
    (``cpu_attention.WINDOWED``) and LongRoPE's short factors.
    """
    orig_decode, orig_ragged = (
        tvm_kv_cache._attention_decode_cpu,
        tvm_kv_cache._attention_prefill_ragged_cpu,
    )
    orig_rope = tvm_kv_cache.llama_rope_with_position_map
    orig_append = tvm_kv_cache._kv_cache_transpose_append
    window = cfg.sliding_window if cfg.window_applies() else 0
    softcap = cfg.attn_softcap or 0.0

    def decode(
        num_kv_heads, num_qo_heads, head_dim, dtype, sliding_window, rope_scaling, *args, **kw
    ):
        if sliding_window:  # TVM's whole-cache sliding variant: never used by our models
            return orig_decode(
                num_kv_heads,
                num_qo_heads,
                head_dim,
                dtype,
                sliding_window,
                rope_scaling,
                *args,
                **kw,
            )
        return decode_attention.decode_paged(
            num_kv_heads,
            num_qo_heads,
            head_dim,
            dtype,
            window=window,
            softcap=softcap,
            budget=decode_attention.decode_group_acc(target),
        )

    def ragged(h_kv, h_q, d_qk, d_v, dtype, rope_scaling):
        return cpu_attention.prefill_ragged(
            h_kv,
            h_q,
            d_qk,
            d_v,
            dtype,
            window=window,
            softcap=softcap,
            query_block=cpu_attention.prefill_query_block(target),
        )

    def rope(
        theta, scale, head_dim, num_q_heads, num_kv_heads, dtype, rope_scaling, rotary_dim=None
    ):
        return cpu_attention.fused_rope(
            theta, scale, head_dim, num_q_heads, num_kv_heads, dtype, dict(cfg.rope_scaling or {})
        )

    tvm_kv_cache._attention_decode_cpu, tvm_kv_cache._attention_prefill_ragged_cpu = decode, ragged
    tvm_kv_cache.llama_rope_with_position_map = rope
    tvm_kv_cache._kv_cache_transpose_append = kv_append.kv_append
    try:
        yield
    finally:
        tvm_kv_cache._kv_cache_transpose_append = orig_append
        tvm_kv_cache._attention_decode_cpu, tvm_kv_cache._attention_prefill_ragged_cpu = (
            orig_decode,
            orig_ragged,
        )
        tvm_kv_cache.llama_rope_with_position_map = orig_rope


def needs_cpu_kernels(cfg: ModelConfig) -> str | None:
    """What of a model only our CPU kernels implement (None: TVM's GPU kernels serve it)."""
    if cfg.attn_softcap:
        return "attention soft-capping"
    if cfg.window_applies():
        return "a sliding window shorter than the context"
    if (cfg.rope_scaling or {}).get("rope_type") == "longrope":
        return "LongRoPE"
    return None


def create_kv_cache(
    cfg: ModelConfig,
    target,
    dtype,
    max_batch_size,
    max_total_seq_len,
    prefill_chunk_size,
    page_size,
    support_sliding_window,
):
    """RoPE is applied by the cache (NORMAL mode: to q and
    k before k is stored), llama3 scaling included."""
    hook = _our_cpu_kernels(cfg, target) if target.kind.name == "llvm" else contextlib.nullcontext()
    with hook:
        return _declare(
            cfg,
            target,
            dtype,
            max_batch_size,
            max_total_seq_len,
            prefill_chunk_size,
            page_size,
            support_sliding_window,
        )


def _declare(
    cfg,
    target,
    dtype,
    max_batch_size,
    max_total_seq_len,
    prefill_chunk_size,
    page_size,
    support_sliding_window,
):
    return TIRPagedKVCache(
        attn_kind="mha",
        max_batch_size=max_batch_size,
        max_total_seq_len=max_total_seq_len,
        prefill_chunk_size=prefill_chunk_size,
        page_size=page_size,
        support_sliding_window=support_sliding_window,
        layer_partition=rx.ShapeExpr([0, cfg.num_layers]),
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        qk_head_dim=cfg.head_dim,
        v_head_dim=cfg.head_dim,
        mla_original_qk_head_dim=0,
        mla_original_v_head_dim=0,
        rope_mode=RopeMode.NORMAL,
        rope_scale=1,
        rope_theta=cfg.rope_theta,
        # TVM's own kernels (built even where ours replace them) know LongRoPE only with
        # factors passed at run time; ours rotate before they run (NORMAL mode), so they get none.
        rope_scaling=_tvm_rope_scaling(cfg),
        rope_ext_factors=rx.prim_value(0),
        rotary_dim=cfg.head_dim,
        enable_disaggregation=False,
        dtype=dtype,
        target=target,
    )


def _tvm_rope_scaling(cfg: ModelConfig) -> dict:
    scaling = dict(cfg.rope_scaling or {})
    return {} if scaling.get("rope_type") == "longrope" else scaling
