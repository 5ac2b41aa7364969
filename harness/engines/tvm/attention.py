"""The paged KV cache (TVM's ``vm.builtin.paged_attention_kv_cache_create``) for our models."""

from __future__ import annotations

from tvm import relax as rx
from tvm.relax.frontend.nn.llm.kv_cache import RopeMode, TIRPagedKVCache

from harness.models.config import ModelConfig


def create_kv_cache(cfg: ModelConfig, target, dtype, max_batch_size, max_total_seq_len, prefill_chunk_size, page_size, support_sliding_window):
    """RoPE is applied by the cache (NORMAL mode: to q and k before k is stored), llama3 scaling included."""
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
        rope_scaling=dict(cfg.rope_scaling or {}),
        rope_ext_factors=rx.prim_value(0),
        rotary_dim=cfg.head_dim,
        enable_disaggregation=False,
        dtype=dtype,
        target=target,
    )
