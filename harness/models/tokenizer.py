"""The model's own tokenizer and chat template, rebuilt offline from what a bundle ships."""

from __future__ import annotations

import json
from pathlib import Path

from harness.errors import UserError


class ChatTokenizer:
    """Encodes a user message the way the model sees it: chat template, then its BPE."""

    name = "model"

    def __init__(
        self,
        tokenizer_json: str,
        chat_template: str | None,
        bos_token: str | None = None,
        eos_token: str | None = None,
        add_bos: bool = False,
    ):
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_str(tokenizer_json)
        self.chat_template = chat_template
        self.bos_token, self.eos_token, self.add_bos = bos_token, eos_token, add_bos
        self._template = None
        if chat_template:
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            self._template = env.from_string(chat_template)

    @classmethod
    def from_bundle(cls, bundle: str | Path) -> ChatTokenizer:
        bundle = Path(bundle)
        tj = bundle / "tokenizer.json"
        if not tj.is_file():
            raise UserError(
                f"{bundle} has no tokenizer.json; this model's inputs can only be counted in cl100k"
                " (dummy weights)"
            )
        cfg_path = bundle / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
        return cls(
            tj.read_text(),
            cfg.get("chat_template"),
            cfg.get("bos_token"),
            cfg.get("eos_token"),
            bool(cfg.get("add_bos")),
        )

    def render(self, user_message: str) -> str:
        messages = [{"role": "user", "content": user_message}]
        if self._template is None:
            return user_message
        return self._template.render(
            messages=messages,
            add_generation_prompt=True,
            bos_token=self.bos_token or "",
            eos_token=self.eos_token or "",
        )

    def encode_chat(self, user_message: str) -> list[int]:
        ids = self._tok.encode(self.render(user_message), add_special_tokens=False).ids
        if self.add_bos and self.bos_token is not None:
            bos = self._tok.token_to_id(self.bos_token)
            if bos is not None and (not ids or ids[0] != bos):
                ids = [bos, *ids]
        return ids

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True)

    def token_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)


class Cl100kStandIn:
    """For bundles without a tokenizer (dummy weights of a catalog model): the prompt's length is
    taken from cl100k, and its ids folded into the model's vocabulary. Records say so."""

    name = "cl100k"

    def __init__(self, vocab_size: int):
        from harness.prompts.tokenizer import cl100k

        self._enc, self.vocab_size = cl100k(), vocab_size

    def encode_chat(self, user_message: str) -> list[int]:
        return [t % self.vocab_size for t in self._enc.encode(user_message)]

    def decode(self, ids: list[int]) -> str | None:
        return None  # the ids are not cl100k tokens; dummy weights produce no meaningful text


def tokenizer_for_bundle(bundle: str | Path, vocab_size: int):
    """The model's own tokenizer when the bundle ships one, else the labelled cl100k stand-in."""
    if (Path(bundle) / "tokenizer.json").is_file():
        return ChatTokenizer.from_bundle(bundle)
    return Cl100kStandIn(vocab_size)
