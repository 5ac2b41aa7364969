from harness.docassist.chunking import chunk_text
from harness.docassist.format import CHUNK_TOKENS, N_CHUNKS
from harness.paths import corpus_dir
from harness.prompts.tokenizer import count_tokens


def test_corpus_document_gives_five_chunks_of_at_most_200_tokens():
    text = (corpus_dir() / "d01-report.md").read_text(encoding="utf-8")
    chunks = chunk_text(text)
    assert len(chunks) == N_CHUNKS
    assert all(0 < count_tokens(c) <= CHUNK_TOKENS for c in chunks)
    # consecutive token runs: joined, they are the start of the document, unchanged
    assert text.startswith("".join(chunks))
    assert count_tokens("".join(chunks)) >= N_CHUNKS * CHUNK_TOKENS - N_CHUNKS


def test_multibyte_text_is_never_cut_inside_a_character():
    text = "Grüße aus Köln — 日本語のテキスト 😀🎉. " * 200
    chunks = chunk_text(text)
    assert len(chunks) == N_CHUNKS
    assert all(count_tokens(c) <= CHUNK_TOKENS for c in chunks)
    assert text.startswith("".join(chunks))  # no character dropped or replaced at a cut
    assert "\ufffd" not in "".join(chunks)


def test_short_and_blank_documents():
    assert chunk_text("A short note.") == ["A short note."]
    assert chunk_text("   \n ") == []
    two = chunk_text("word " * 300)
    assert len(two) == 2 and "".join(two) == ("word " * 300)
