"""Greedy sampling inside the model library: the argmax of the logits, on the CPU threads.

Read on the host after a decode step (``np.argmax`` over a fresh logits tensor), SmolLM2's 49k
logits took 37-54 us a step: the step has just streamed 80 MB of weights through the caches, so
the logits and numpy's own code come back from memory, on one thread. The same call on hot data
took 6-10 us (EPYC Zen 3). Here each work item scans a run of logits that the LM head's threads
wrote a moment before, and the host reads back one int32.
"""

from __future__ import annotations

from functools import cache

from . import cpu_attrs

# Work items: runs of about 3k logits for a 49k vocabulary, more items than a phone has cores;
# the launcher hands each thread a contiguous block of them.
CHUNKS = 16
LOWEST = -3.4028234663852886e38  # float32's lowest: every finite logit beats it


@cache
def argmax(vocab: int, lanes: int):
    """token[0] = the first index of the largest of ``logits[0, 0, :vocab]`` (np.argmax's
    answer, NaN aside). Each item keeps, per vector lane, the largest value it has seen and
    where; lanes and items are then combined keeping the lowest index among equal values."""
    from tvm.script import tirx as T

    per_item = -(-vocab // CHUNKS)
    per_item = -(-per_item // lanes) * lanes  # whole vectors, except in the last item
    items = -(-vocab // per_item)

    @T.prim_func(private=True, s_tir=True)
    def argmax_cpu(logits: T.Buffer((1, 1, vocab), "float32"), token: T.Buffer((1,), "int32")):
        T.func_attr(cpu_attrs(op_pattern=8))
        best = T.alloc_buffer((items,), "float32")
        where = T.alloc_buffer((items,), "int32")
        top_all = T.alloc_buffer((1,), "float32")
        for item in T.parallel(items):
            with T.sblock("scan"):
                T.reads()
                T.writes()
                top = T.sblock_alloc_buffer((lanes,), "float32")
                at = T.sblock_alloc_buffer((lanes,), "int32")
                start: T.let[T.int32] = item * per_item
                stop: T.let[T.int32] = T.min(start + per_item, vocab)
                whole: T.let[T.int32] = (stop - start) // lanes
                top[T.Ramp(0, 1, lanes)] = T.Broadcast(T.float32(LOWEST), lanes)
                at[T.Ramp(0, 1, lanes)] = T.Ramp(start, 1, lanes)
                for v in T.serial(whole):
                    # strictly greater: a lane keeps the first index of its largest value
                    here = logits[0, 0, T.Ramp(start + v * lanes, 1, lanes)]
                    wins = here > top[T.Ramp(0, 1, lanes)]
                    at[T.Ramp(0, 1, lanes)] = T.Select(
                        wins, T.Ramp(start + v * lanes, 1, lanes), at[T.Ramp(0, 1, lanes)]
                    )
                    top[T.Ramp(0, 1, lanes)] = T.Select(wins, here, top[T.Ramp(0, 1, lanes)])
                best[item] = top[0]
                where[item] = at[0]
                for ln in T.serial(1, lanes):
                    if top[ln] > best[item] or (top[ln] == best[item] and at[ln] < where[item]):
                        best[item] = top[ln]
                        where[item] = at[ln]
                for i in T.serial(start + whole * lanes, stop):  # the vocabulary's last few
                    if logits[0, 0, i] > best[item]:
                        best[item] = logits[0, 0, i]
                        where[item] = i
        # items in order, strictly greater: the lowest index wins a tie across items too
        top_all[0] = best[0]
        token[0] = where[0]
        for item in T.serial(1, items):
            if best[item] > top_all[0]:
                top_all[0] = best[item]
                token[0] = where[item]

    return argmax_cpu
