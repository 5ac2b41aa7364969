import pytest

from harness.docassist.annotate import OpenAIAnnotator
from harness.errors import UserError


def _annotator(server, tmp_path, **kw):
    return OpenAIAnnotator(
        server.url, "sk-test", "gpt-4o-mini", tmp_path / "cache", backoff_s=0.01, **kw
    )


def test_retries_500_and_429_then_caches_on_disk(chat_server, tmp_path):
    chat_server.failures = [500, 429]
    first = _annotator(chat_server, tmp_path)
    prompt = (
        "Read the document below and write a concise summary of its main points.\n\n"
        "Document:\nPump report."
    )
    answer = first.complete(prompt)
    assert answer == "The document is about Pump report.."
    assert len(chat_server.requests) == 3  # 500, 429, then the answer
    sent = chat_server.requests[-1]
    assert sent["auth"] == "Bearer sk-test"
    assert sent["body"]["model"] == "gpt-4o-mini" and sent["body"]["temperature"] == 0
    assert sent["body"]["messages"] == [{"role": "user", "content": prompt}]

    # a fresh annotator (a rerun of an interrupted build) answers from the disk cache: no request
    again = _annotator(chat_server, tmp_path)
    assert again.complete(prompt) == answer
    assert len(chat_server.requests) == 3
    assert (again.asked, again.cache_hits) == (0, 1)
    # a different request is not served from the cache
    again.complete(
        "Read the document below and write a concise summary of its main points.\n\n"
        "Document:\nOther."
    )
    assert len(chat_server.requests) == 4


def test_gives_up_after_retries_and_does_not_retry_client_errors(chat_server, tmp_path):
    chat_server.failures = [503] * 3
    with pytest.raises(UserError, match="HTTP 503"):
        _annotator(chat_server, tmp_path, retries=2).complete("x")
    assert len(chat_server.requests) == 3  # first try + 2 retries
    chat_server.failures = [401]
    with pytest.raises(UserError, match="HTTP 401.*OPENAI_API_KEY"):
        _annotator(chat_server, tmp_path).complete("y")
    assert len(chat_server.requests) == 4  # 401 is not retried
    assert not list((tmp_path / "cache").rglob("*.json"))  # failures are never cached


def test_unreachable_endpoint_is_a_user_error(tmp_path):
    annotator = OpenAIAnnotator(
        "http://127.0.0.1:9/v1", None, "m", None, retries=1, backoff_s=0.01, timeout_s=2
    )
    with pytest.raises(UserError, match="cannot reach the annotator endpoint"):
        annotator.complete("hello")


def test_from_env_needs_a_key_for_the_public_endpoint(monkeypatch, tmp_path):
    for var in (
        "SLM_BENCH_ANNOTATOR_URL",
        "SLM_BENCH_ANNOTATOR_KEY",
        "OPENAI_API_KEY",
        "SLM_BENCH_ANNOTATOR_MODEL",
    ):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(UserError, match="OPENAI_API_KEY"):
        OpenAIAnnotator.from_env(tmp_path)
    monkeypatch.setenv("SLM_BENCH_ANNOTATOR_URL", "http://127.0.0.1:8000/v1/")
    monkeypatch.setenv("SLM_BENCH_ANNOTATOR_MODEL", "qwen-local")
    local = OpenAIAnnotator.from_env(tmp_path)
    assert (local.url, local.model, local.name) == (
        "http://127.0.0.1:8000/v1",
        "qwen-local",
        "openai:qwen-local",
    )
