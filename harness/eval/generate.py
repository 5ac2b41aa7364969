"""Greedy generation from a bundle of any engine, stopping at EOS: what quality is measured on.

The benchmark runner decodes a fixed number of tokens (speed is what it measures); quality
needs the model's own answer, so here decoding stops at the model's EOS token. The prompt
goes through the model's chat template exactly as in the runner (``encode_chat``).
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.errors import UserError


class PromptTooLong(UserError):
    """The prompt leaves no room for an answer in the model's window."""


class BundleGenerator:
    """Load a bundle once; ``generate(user_message)`` returns the decoded greedy answer."""

    def __init__(self, bundle: Path | str, max_new_tokens: int = 256, max_seq_len: int = 2048):
        from harness.engines import engine_of, get_engine
        from harness.models.tokenizer import tokenizer_for_bundle

        self.bundle = Path(bundle)
        config = json.loads((self.bundle / "config.json").read_text())
        self.tokenizer = tokenizer_for_bundle(self.bundle, config["vocab_size"])
        if getattr(self.tokenizer, "name", "") != "model":
            raise UserError(
                f"{self.bundle} has no tokenizer, so its outputs cannot be read "
                "as text; fix: evaluate a model with real weights and a tokenizer"
            )
        self.max_new_tokens = max_new_tokens
        window = min(int(config["context_window"]), max_seq_len)
        engine = get_engine(engine_of(json.loads((self.bundle / "manifest.json").read_text())))
        self.session = engine.open_session(self.bundle, max_seq_len=window)  # any engine's bundle
        self.eos = set(self.session.config.get("eos_token_ids") or [])
        self.last_output_tokens = 0

    def generate(self, user_message: str) -> str:
        import numpy as np

        ids = self.tokenizer.encode_chat(user_message)
        budget = min(self.max_new_tokens, self.session.max_seq_len - len(ids) - 1)
        if budget < 1:
            raise PromptTooLong(
                f"a prompt of {len(ids)} tokens leaves no room to answer "
                f"in a window of {self.session.max_seq_len}; fix: use "
                "shorter documents or a model with a longer window"
            )
        logits = self.session.prefill(np.asarray(ids, dtype=np.int32))
        out: list[int] = []
        token = self.session.greedy(logits)
        while token not in self.eos:
            out.append(token)
            if len(out) >= budget:
                break
            token = self.session.greedy(self.session.decode(token))
        self.last_output_tokens = len(out)
        return self.tokenizer.decode(out).strip()
