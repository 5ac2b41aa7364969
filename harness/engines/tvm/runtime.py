"""Load a bundle and run prefill / decode steps on the paged KV cache (one sequence).

Kept free of timing and sampling policy: the runner (``harness.runner``) decides what to time.
"""

from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import UserError

PAGE_SIZE = 16
CPU_DEVICE_TYPE = 1  # DLPack's kDLCPU
BIG_MODE = 1  # threading::ThreadGroup::kBig: the mode config_threadpool keeps, with our count


def set_threads(threads: int) -> None:
    """Exactly ``threads`` workers in TVM's CPU pool. Without an explicit count TVM's big mode uses
    only the cores sharing the highest scaling_max_freq (one on an Exynos S24); the pool cannot
    grow past TVM_NUM_THREADS, which the launcher sets to the same number."""
    import tvm

    tvm.get_global_func("runtime.config_threadpool")(BIG_MODE, int(threads))


class Logits:
    """A forward pass's outputs as the VM returned them: the last position's logits (a TVM
    tensor [1, 1, V]), from CPU builds their argmax (a TVM tensor [1] int32, on the CPU), and the
    KV cache. Each becomes a Python object only when it is read.

    After a decode step Python's and TVM's objects are out of the caches (the step streamed the
    weights past them), and every object made costs: unpacking all three outputs and reading the
    token through numpy took 52 us a step, the token alone read at its address 26 (SmolLM2,
    L=200, EPYC Zen 3). A CPU decode step writes its token into the session's input tensor too
    (``model``): ``token_view``, the session's numpy view of it, reads it without touching the
    returned array."""

    def __init__(self, outputs, token_view: np.ndarray | None = None):
        self._outputs = outputs  # (logits, [token,] kv cache): an FFI array or a list
        self.token_view = token_view

    @property
    def values(self) -> Any:
        return self._outputs[0]

    @property
    def token(self) -> Any:
        return self._outputs[1] if len(self._outputs) == 3 else None

    def numpy(self) -> np.ndarray:
        return self.values.numpy()


class TVMSession:
    def __init__(
        self,
        bundle: str | Path,
        max_seq_len: int | None = None,
        device: str = "cpu",
        threads: int | None = None,
    ):
        import tvm

        # not tvm.relax: the phone kit has TVM's runtime only
        from tvm.runtime.vm import (
            VirtualMachine,
        )

        from .fork_join import use_fork_join
        from .weights import load_params

        self.bundle = Path(bundle)
        self.manifest = json.loads((self.bundle / "manifest.json").read_text())
        self.config = json.loads((self.bundle / "config.json").read_text())
        self.vocab_size = self.config["vocab_size"]
        self.max_seq_len = int(max_seq_len or self.config["context_window"])
        self.device = tvm.cpu() if device == "cpu" else tvm.cuda()
        lib_path = self.bundle / self.manifest["library"]
        try:
            lib = tvm.runtime.load_module(str(lib_path))
        except Exception as exc:
            raise UserError(
                f"cannot load {lib_path} ({exc}); it was compiled for {self.manifest['target']},"
                " run on a matching host or recompile"
            ) from None
        # Parallel loops on the library's own launcher (fork_join.cc). TVM's pool is sized, and
        # so started, only where that is not possible: its new workers spin in sched_yield for
        # a while, next to ours.
        count = int(threads or os.environ["TVM_NUM_THREADS"])  # harness.engines.tvm sets it
        self.launcher = use_fork_join(lib_path, count) if device == "cpu" else "tvm"
        self._threads = count if self.launcher == "fork-join" else None
        if self.launcher == "tvm" and threads:
            set_threads(threads)
        self.vm = VirtualMachine(lib, self.device)
        order = json.loads((self.bundle / "params" / "order.json").read_text())
        # One FFI array for every call: a Python list would be converted (a new array of ~300
        # objects) on each of the two VM calls of every decode step.
        self.params = tvm.runtime.convert(load_params(self.bundle / "params", order, self.device))
        self._embed = self.vm["embed_tokens"]
        self._prefill = self.vm["prefill"]
        self._decode = self.vm["decode"]
        get = tvm.get_global_func
        self._add_seq = get("vm.builtin.kv_state_add_sequence")
        self._remove_seq = get("vm.builtin.kv_state_remove_sequence")
        self._begin = get("vm.builtin.kv_state_begin_forward")
        self._end = get("vm.builtin.kv_state_end_forward")
        self._shape = tvm.runtime.ShapeTuple
        self._first_seq = self._shape([0])
        self._one = self._shape([1])  # a decode step's length
        self._tensor = tvm.runtime.tensor
        chunk = self.max_seq_len
        self.kv = self.vm["create_paged_kv_cache"](
            self._shape([1]),
            self._shape([self.max_seq_len]),
            self._shape([chunk]),
            self._shape([PAGE_SIZE]),
            self._shape([0]),
        )
        self._seq_open = False
        self.length = 0
        # Decode's input token lives in one tensor, written in place: creating a fresh one-id
        # tensor each step cost 100-190 us of a 3 ms SmolLM2 step (decode 1.04-1.05x; 13 us alone).
        self._token = self._tensor(np.zeros(1, np.int32), self.device)
        on_host = self._token.device.dlpack_device_type() == CPU_DEVICE_TYPE
        self._token_view = np.from_dlpack(self._token) if on_host else None

    def num_threads(self) -> int:
        """Threads that run the model's parallel loops: the fork-join launcher's, else those of
        TVM's CPU pool (TVM_NUM_THREADS, see harness.engines.tvm._default_threads)."""
        if self._threads:
            return self._threads
        import tvm

        return int(tvm.get_global_func("runtime.NumThreads")())

    def reset(self) -> None:
        """Start a fresh sequence (drops the cached keys/values), on pages in address order."""
        if self._seq_open:
            self._remove_seq(self.kv, 0)
            if self.length:
                self._restack_pages(self.length)
        self._add_seq(self.kv, 0)
        self._seq_open = True
        self.length = 0

    def _restack_pages(self, length: int) -> None:
        """Take the pages a removed sequence of ``length`` tokens held and free them once more.

        The cache hands out free pages last-in first-out, and a removed sequence returns its
        pages in its own order: a fresh cache gives pages in ascending addresses, the next
        sequence gets them descending, the one after ascending again. Decode attention reads a
        sequence's pages in table order; descending, it ran 0.88-0.91x as fast at 1000 keys
        (SmolLM2's shapes, EPYC Zen 3), so runs alternated between two speeds. Reserving the
        pages for a placeholder sequence and removing it (no kernel runs) turns the stack back.
        """
        self._add_seq(self.kv, 0)
        self._begin(self.kv, self._first_seq, self._shape([length]))
        self._end(self.kv)
        self._remove_seq(self.kv, 0)

    def _forward(self, fn, inputs, n: int):
        """Run VM function ``fn`` on ``inputs`` (prefill: the prompt's embeddings, decode: the
        token's id) for ``n`` new tokens; its outputs."""
        if self.length + n > self.max_seq_len:
            raise UserError(
                f"sequence of {self.length + n} tokens exceeds the model's window of"
                f" {self.max_seq_len}; use a shorter L or fewer output tokens"
            )
        self._begin(self.kv, self._first_seq, self._one if n == 1 else self._shape([n]))
        # The cache the function returns last is self.kv itself (updated in place): not read.
        outputs = fn(inputs, self.kv, self.params)
        self._end(self.kv)
        self.length += n
        return outputs

    def prefill(self, ids: np.ndarray):
        """Run the prompt through the model; returns the last position's logits."""
        self.reset()
        ids = self._tensor(np.asarray(ids, dtype=np.int32), self.device)
        n = int(ids.shape[0])
        hidden = self._embed(ids, self.params)
        return Logits(self._forward(self._prefill, hidden, n))

    def decode(self, token: int):
        """One step from ``token``. A CPU build (the one kind a host-side view exists for) writes
        the next greedy token back into the same input tensor (``model``)."""
        if self._token_view is not None:
            self._token_view[0] = token
        else:
            self._token.copyfrom(np.array([token], dtype=np.int32))
        outputs = self._forward(self._decode, self._token, 1)
        return Logits(outputs, self._token_view)

    @staticmethod
    def greedy(logits: Logits) -> int:
        """The argmax the library computed (CPU builds), else that of the logits, read in place
        on the CPU: ``.numpy()`` would copy 200 kB (SmolLM2's 49k floats) into a fresh array,
        page faults included, every step."""
        if logits.token_view is not None:  # decode's token, where the session's view sees it
            return int(logits.token_view[0])
        if logits.token is not None:  # the int32 at its address: no array made (8 us a step)
            return ctypes.c_int32.from_address(logits.token.data_ptr()).value
        values = logits.values
        on_host = values.device.dlpack_device_type() == CPU_DEVICE_TYPE
        values = np.from_dlpack(values) if on_host else values.numpy()
        return int(np.argmax(values.reshape(-1)))
