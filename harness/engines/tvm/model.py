"""The decoder-only LM the engine compiles, with the entry points the runtime calls.

Entry points (MLC-LLM's shape, so a bundle reads like one of theirs, except decode's input):
  embed(input_ids[s] int32)                     -> hidden [1, s, H]
  prefill(hidden [1, s, H], kv_cache)           -> logits [1, 1, V] of the last position, kv_cache
  decode(input_ids [1] int32, kv_cache)         -> logits [1, 1, V], kv_cache
  create_paged_kv_cache(max_batch, max_total_seq_len, prefill_chunk, page_size, sliding) -> kv_cache
On CPU targets prefill and decode also return, before the cache, their logits' argmax
[1] int32 (``kernels.sampling``): the greedy token, so the host reads 4 bytes, not V floats.
Decode writes it into its own input (and returns that tensor), so a host that keeps one id
tensor finds the next step's input already in place and reads the token through its own view.

Why decode takes the id, not its embedding: each call the host makes after a step has streamed
the weights runs from cold caches. A separate embed call cost 14 us of a SmolLM2 step, and
reading the token out of the returned array 28 us (its length, its item, its address, the read;
2 us a second time), where a view the host made once reads it in a few (EPYC Zen 3).
"""

from __future__ import annotations

from tvm import tirx
from tvm.relax.frontend import nn
from tvm.relax.frontend.nn import Tensor, op
from tvm.relax.frontend.nn.llm.kv_cache import PagedKVCache

from harness.models.config import ModelConfig
from harness.quantization import QuantPreset

from . import attention, targets
from .kernels import sampling, vector_lanes
from .layers import DTYPE, DecoderLayer, Embedding, Linear, make_norm


class DecoderLM(nn.Module):
    def __init__(self, cfg: ModelConfig, preset: QuantPreset, target):
        self.cfg, self.target, self.kv_dtype = cfg, target, preset.kv_cache_dtype
        kernels = targets.matmul_kernels(target, preset)
        self.embed = Embedding(cfg.vocab_size, cfg.hidden_size, preset, kernels)
        self.layers = nn.ModuleList(
            [DecoderLayer(cfg, preset, i, kernels) for i in range(cfg.num_layers)]
        )
        self.final_norm = make_norm(cfg, cfg.hidden_size, kernels)
        self.lm_head = (
            None
            if cfg.tie_word_embeddings
            else Linear(cfg.hidden_size, cfg.vocab_size, False, preset, kernels)
        )

    def _logits(self, hidden: Tensor, token_out: Tensor | None = None) -> tuple[Tensor, ...]:
        """The logits and, on CPU targets, their argmax (written into ``token_out`` where given,
        a [1] int32 tensor, which is then what is returned)."""
        hidden = self.final_norm(hidden)
        logits = self.embed.as_lm_head(hidden) if self.lm_head is None else self.lm_head(hidden)
        cap = self.cfg.final_softcap
        if cap:
            logits = op.tanh(logits / cap) * cap
        if targets.is_gpu(self.target):
            return (logits,)
        argmax = sampling.argmax(self.cfg.vocab_size, vector_lanes(self.target))
        out = Tensor.placeholder((1,), "int32")
        if token_out is None:
            token = op.tensor_ir_op(argmax, "argmax_cpu", args=[logits], out=out)
        else:
            token = op.tensor_ir_inplace_op(
                argmax, "argmax_cpu", args=[logits, token_out], inplace_indices=[1], out=out
            )
        return logits, token

    def _body(self, hidden: Tensor, cache: PagedKVCache) -> Tensor:
        """The layers over hidden [1, s, H], the residual stream carried as [s, H]: every kernel
        takes 2-D rows, and a 3-D stream cost a pair of VM reshapes around each one (18 a layer
        of a SmolLM2 decode step, 545 VM calls and as many releases of a step's 2849)."""
        b, s, h = hidden.shape
        x = op.reshape(hidden, (s, h))  # b is 1: one sequence
        for layer in self.layers:
            x = layer(x, cache)
        return op.reshape(x, (b, s, h))

    def embed_tokens(self, input_ids: Tensor) -> Tensor:
        hidden = self.embed(input_ids)
        if self.cfg.embed_scale is not None:  # Gemma
            hidden = hidden * self.cfg.embed_scale
        return op.reshape(hidden, (1, input_ids.shape[0], self.cfg.hidden_size))

    def prefill(self, input_embed: Tensor, paged_kv_cache: PagedKVCache):
        hidden = self._body(input_embed, paged_kv_cache)

        def last_position(x):
            from tvm import te

            b, s, d = x.shape
            return te.compute((b, 1, d), lambda i, _, k: x[i, s - 1, k], name="last_position")

        # Only the last position's logits are needed to sample the first output token.
        last = op.tensor_expr_op(last_position, "last_position", [hidden])
        return *self._logits(last), paged_kv_cache

    def decode(self, input_ids: Tensor, paged_kv_cache: PagedKVCache):
        hidden = self._body(self.embed_tokens(input_ids), paged_kv_cache)
        return *self._logits(hidden, token_out=input_ids), paged_kv_cache

    def create_paged_kv_cache(
        self,
        max_batch_size: tirx.Var,
        max_total_seq_len: tirx.Var,
        prefill_chunk_size: tirx.Var,
        page_size: tirx.Var,
        support_sliding_window: tirx.Var,
    ) -> PagedKVCache:
        return attention.create_kv_cache(
            self.cfg,
            self.target,
            self.kv_dtype,
            max_batch_size,
            max_total_seq_len,
            prefill_chunk_size,
            page_size,
            support_sliding_window,
        )

    def get_default_spec(self):
        h = self.cfg.hidden_size
        packed = {"param_mode": "packed", "effect_mode": "none"}
        return nn.spec.ModuleSpec.from_raw(
            {
                "embed_tokens": {"input_ids": nn.spec.Tensor(["seq_len"], "int32"), "$": packed},
                "prefill": {
                    "input_embed": nn.spec.Tensor([1, "seq_len", h], DTYPE),
                    "paged_kv_cache": nn.spec.Object(object_type=PagedKVCache),
                    "$": packed,
                },
                "decode": {
                    "input_ids": nn.spec.Tensor([1], "int32"),
                    "paged_kv_cache": nn.spec.Object(object_type=PagedKVCache),
                    "$": packed,
                },
                "create_paged_kv_cache": {
                    "max_batch_size": int,
                    "max_total_seq_len": int,
                    "prefill_chunk_size": int,
                    "page_size": int,
                    "support_sliding_window": int,
                    "$": {"param_mode": "none", "effect_mode": "none"},
                },
            },
            self,
        )
