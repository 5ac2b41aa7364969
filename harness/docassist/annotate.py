"""Annotators: something that answers one DocAssist prompt (a user message) with text.

The builder (``harness.docassist.build``) asks each document the project's three task
prompts, so an annotator only needs ``complete(prompt) -> str``. Two kinds:

- ``openai``: an OpenAI-compatible ``/chat/completions`` endpoint (the study annotated with
  GPT-4o-mini). Configured from the environment: ``SLM_BENCH_ANNOTATOR_URL`` (base URL,
  default ``https://api.openai.com/v1``), ``OPENAI_API_KEY`` (or ``SLM_BENCH_ANNOTATOR_KEY``),
  ``SLM_BENCH_ANNOTATOR_MODEL`` (default ``gpt-4o-mini``). Transient failures (connection
  errors, 429, 5xx) are retried with exponential backoff, honouring ``Retry-After``.
- ``local``: a model compiled by the project's own TVM engine, greedy decoding until EOS.

Every answer is cached on disk under a sha256 of the request (endpoint, model, messages,
decoding settings, never the key), so an interrupted build rerun with the same command
resumes without asking again, and a finished build re-runs offline.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from harness.errors import UserError

DEFAULT_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"
MAX_NEW_TOKENS = 256
RETRY_STATUSES = {408, 409, 429, 500, 502, 503, 504}


class DiskCache:
    """One JSON file per request hash: ``<dir>/<h[:2]>/<h>.json`` holding request and answer."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))["answer"]
        except (ValueError, KeyError):
            return None  # a torn write from an interrupted build: ask again

    def put(self, key: str, request: dict, answer: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(
            json.dumps({"request": request, "answer": answer}, ensure_ascii=False), encoding="utf-8"
        )
        tmp.replace(path)  # atomic: a cache entry is whole or absent


def request_key(request: dict) -> str:
    return hashlib.sha256(
        json.dumps(request, sort_keys=True, ensure_ascii=False).encode("utf-8")
    ).hexdigest()


class Annotator:
    """Base: ``complete`` looks in the cache, else asks ``_ask`` and stores the answer."""

    kind = "base"

    def __init__(self, cache_dir: Path | str | None):
        self.cache = DiskCache(cache_dir) if cache_dir is not None else None
        self.cache_hits = 0
        self.asked = 0

    @property
    def name(self) -> str:
        """Recorded in every DocRecord and the manifest, e.g. ``openai:gpt-4o-mini``."""
        raise NotImplementedError

    def describe(self) -> dict:
        """What the manifest records about the annotator (no secrets)."""
        return {"kind": self.kind, "name": self.name}

    def _request(self, prompt: str) -> dict:
        raise NotImplementedError

    def _ask(self, request: dict) -> str:
        raise NotImplementedError

    def complete(self, prompt: str) -> str:
        request = self._request(prompt)
        key = request_key(request)
        if self.cache is not None and (cached := self.cache.get(key)) is not None:
            self.cache_hits += 1
            return cached
        answer = self._ask(request)
        self.asked += 1
        if self.cache is not None:
            self.cache.put(key, request, answer)
        return answer


class OpenAIAnnotator(Annotator):
    """An OpenAI-compatible chat-completions endpoint (temperature 0, one user message)."""

    kind = "openai"

    def __init__(
        self,
        url: str,
        api_key: str | None,
        model: str,
        cache_dir: Path | str | None,
        *,
        max_tokens: int = MAX_NEW_TOKENS,
        retries: int = 5,
        backoff_s: float = 1.0,
        timeout_s: float = 120.0,
    ):
        super().__init__(cache_dir)
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.model = model
        self.max_tokens = max_tokens
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s

    @classmethod
    def from_env(cls, cache_dir: Path | str | None, **kwargs) -> OpenAIAnnotator:
        url = os.environ.get("SLM_BENCH_ANNOTATOR_URL") or DEFAULT_URL
        key = os.environ.get("SLM_BENCH_ANNOTATOR_KEY") or os.environ.get("OPENAI_API_KEY")
        if not key and url == DEFAULT_URL:
            raise UserError(
                "the openai annotator needs an API key; fix: export "
                "OPENAI_API_KEY=... (or SLM_BENCH_ANNOTATOR_URL for a local endpoint)"
            )
        model = os.environ.get("SLM_BENCH_ANNOTATOR_MODEL") or DEFAULT_MODEL
        return cls(url, key, model, cache_dir, **kwargs)

    @property
    def name(self) -> str:
        return f"openai:{self.model}"

    def describe(self) -> dict:
        return {
            **super().describe(),
            "url": self.url,
            "model": self.model,
            "max_tokens": self.max_tokens,
            "temperature": 0,
        }

    def _request(self, prompt: str) -> dict:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }
        return {"url": self.url, "body": body}

    def _ask(self, request: dict) -> str:
        data = json.dumps(request["body"]).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        endpoint = f"{self.url}/chat/completions"
        for attempt in range(self.retries + 1):
            wait = self.backoff_s * (2**attempt)
            try:
                req = urllib.request.Request(endpoint, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return _answer_text(json.loads(resp.read().decode("utf-8")), endpoint)
            except urllib.error.HTTPError as exc:
                if exc.code not in RETRY_STATUSES or attempt == self.retries:
                    detail = exc.read()[:200].decode("utf-8", "replace")
                    hint = (
                        "check OPENAI_API_KEY"
                        if exc.code in (401, 403)
                        else "check SLM_BENCH_ANNOTATOR_URL and SLM_BENCH_ANNOTATOR_MODEL"
                    )
                    raise UserError(
                        f"annotator endpoint {endpoint} answered HTTP {exc.code} "
                        f"({detail.strip()}); fix: {hint}, then rerun (answers so far are cached)"
                    ) from None
                wait = _retry_after(exc.headers.get("Retry-After"), wait)
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt == self.retries:
                    reason = getattr(exc, "reason", exc)
                    raise UserError(
                        f"cannot reach the annotator endpoint {endpoint} "
                        f"({reason}); fix: check SLM_BENCH_ANNOTATOR_URL and "
                        "the network, then rerun (answers so far are cached)"
                    ) from None
            time.sleep(wait)
        raise AssertionError("unreachable")


def _retry_after(header: str | None, default: float) -> float:
    """Seconds from a ``Retry-After: <seconds>`` header, capped at a minute; else ``default``."""
    try:
        return min(max(float(header), 0.0), 60.0) if header is not None else default
    except ValueError:
        return default  # an HTTP-date: use our own backoff


def _answer_text(payload: dict, endpoint: str) -> str:
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise UserError(
            f"annotator endpoint {endpoint} did not answer in the "
            "chat-completions shape (choices[0].message.content); fix: "
            "point SLM_BENCH_ANNOTATOR_URL at an OpenAI-compatible /v1 base"
        ) from None
    return content or ""


class LocalAnnotator(Annotator):
    """A bundle compiled by the project's TVM engine, greedy until EOS (or ``max_new_tokens``)."""

    kind = "local"

    def __init__(
        self,
        bundle: Path | str,
        model_name: str,
        cache_dir: Path | str | None,
        *,
        max_new_tokens: int = MAX_NEW_TOKENS,
    ):
        super().__init__(cache_dir)
        self.bundle = Path(bundle)
        self.model_name = model_name
        self.max_new_tokens = max_new_tokens
        manifest = json.loads((self.bundle / "manifest.json").read_text())
        self.quantization = manifest.get("quantization", "")
        self.bundle_id = self.bundle.name  # content-addressed: names the exact weights and code
        self._generator = None

    @property
    def name(self) -> str:
        return f"local:{self.model_name}/{self.quantization}"

    def describe(self) -> dict:
        return {
            **super().describe(),
            "model": self.model_name,
            "quantization": self.quantization,
            "bundle": self.bundle_id,
            "decoding": "greedy until EOS",
            "max_new_tokens": self.max_new_tokens,
        }

    def _request(self, prompt: str) -> dict:
        return {
            "bundle": self.bundle_id,
            "prompt": prompt,
            "max_new_tokens": self.max_new_tokens,
            "decoding": "greedy",
        }

    def _ask(self, request: dict) -> str:
        if self._generator is None:  # load the engine only when the cache cannot answer
            from harness.eval.generate import BundleGenerator

            self._generator = BundleGenerator(self.bundle, max_new_tokens=self.max_new_tokens)
        return self._generator.generate(request["prompt"])
