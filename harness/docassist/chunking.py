"""Cut a document into the study's chunks: N=5 consecutive runs of at most 200 cl100k tokens.

The cut is made on cl100k token boundaries (like the prompt suite, ``harness.prompts.suite``),
with two guards that the suite's prefix decoding does not need:

- a chunk never ends inside a multi-byte UTF-8 character (the bytes of a token run can
  split one); the cut moves back a token until the chunk's bytes decode cleanly;
- re-encoding a chunk on its own can merge differently at its edges, so the chunk text is
  re-counted and shortened until it really is <= 200 tokens.

Joined without a separator the chunks are the document's first tokens, text unchanged.
"""

from __future__ import annotations

from harness.docassist.format import CHUNK_TOKENS, N_CHUNKS
from harness.errors import UserError
from harness.prompts.tokenizer import cl100k


def chunk_text(text: str, n_chunks: int = N_CHUNKS, max_tokens: int = CHUNK_TOKENS) -> list[str]:
    """Up to ``n_chunks`` chunks of <= ``max_tokens`` cl100k tokens from the start of ``text``."""
    if n_chunks < 1 or max_tokens < 1:
        raise UserError(
            f"chunking needs at least 1 chunk of at least 1 token (got {n_chunks} x {max_tokens})"
        )
    enc = cl100k()
    tokens = enc.encode(text, disallowed_special=())
    chunks: list[str] = []
    start = 0
    while start < len(tokens) and len(chunks) < n_chunks:
        end = min(start + max_tokens, len(tokens))
        chunk, end = _clean_chunk(enc, tokens, start, end, max_tokens)
        chunks.append(chunk)
        start = end
    return chunks if any(c.strip() for c in chunks) else []  # a blank document has no chunks


def _clean_chunk(enc, tokens: list[int], start: int, end: int, max_tokens: int) -> tuple[str, int]:
    """The text of tokens[start:end'] for the largest end' <= end that decodes and re-counts
    cleanly."""
    cut = end
    while cut > start:
        try:
            chunk = enc.decode_bytes(tokens[start:cut]).decode("utf-8")
        except UnicodeDecodeError:
            cut -= 1  # the run ends inside a character: leave its first bytes to the next chunk
            continue
        if len(enc.encode(chunk, disallowed_special=())) <= max_tokens:
            return chunk, cut
        cut -= 1
    # A single token that is not valid UTF-8 on its own (part of a rare character): take
    # enough tokens to finish the character, decoding leniently.
    cut = min(start + 4, len(tokens))
    return enc.decode_bytes(tokens[start:cut]).decode("utf-8", errors="ignore"), cut
