"""Prefill and decode through llama.cpp (llama-cpp-python), the same surface as TVMSession."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class LlamaCppSession:
    """One sequence on llama.cpp: the whole prompt in one batch, logits of the last position only.

    Logits are read with ``llama_get_logits_ith(ctx, -1)``: with ``logits_all=False``
    llama-cpp-python no longer copies them into ``Llama.scores``.
    """

    def __init__(self, bundle: str | Path, max_seq_len: int, threads: int | None = None):
        from harness.engines import host_cores

        from .engine import GGUF_NAME, llama_cpp

        self.lib = llama_cpp()
        self.bundle = Path(bundle)
        self.manifest = json.loads((self.bundle / "manifest.json").read_text())
        self.config = json.loads((self.bundle / "config.json").read_text())
        self.max_seq_len = int(max_seq_len)
        self.threads = threads or host_cores()  # the process's affinity carries the core set
        self.llm = self.lib.Llama(
            model_path=str(self.bundle / GGUF_NAME),
            n_ctx=self.max_seq_len,
            n_batch=self.max_seq_len,
            n_ubatch=self.max_seq_len,
            n_threads=self.threads,
            n_threads_batch=self.threads,
            logits_all=False,
            verbose=False,
        )
        self.vocab_size = self.llm.n_vocab()

    def num_threads(self) -> int:
        return self.threads

    def prefill(self, ids: np.ndarray):
        self.llm.reset()  # the next eval drops the cached positions from 0 on
        self.llm.eval([int(t) for t in ids])
        return self._last_logits()

    def decode(self, token: int):
        self.llm.eval([int(token)])
        return self._last_logits()

    def _last_logits(self) -> np.ndarray:
        # A copy: the view points into llama.cpp's buffer, which the next step overwrites (TVM's
        # greedy pays the same copy when it reads its logits tensor back).
        return np.ctypeslib.as_array(
            self.lib.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.vocab_size,)
        ).copy()

    @staticmethod
    def greedy(logits) -> int:
        return int(np.argmax(logits))
