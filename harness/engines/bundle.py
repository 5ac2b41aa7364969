"""What every engine's bundle shares: built under a temporary name and renamed into place
(``harness.cache.build_atomically``), the model's tokenizer files, and a manifest that lists every
file with its sha256.

A bundle is a folder in the content-addressed cache (``cache_dir("bundles")``); engines decide
what goes in it (a TVM library and weight shards, a GGUF) and the cache key.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.cache import cache_dir, file_sha256
from harness.errors import UserError


def cache_folder(model, preset, kind: str, key: str) -> Path:
    """``<cache>/bundles/<model>-<preset>-<kind>-<key>``: readable, and unique per content key."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model.name)
    return cache_dir("bundles") / f"{safe}-{preset.name}-{kind}-{key[:16]}"


def write_model_files(work: Path, model) -> None:
    """config.json, plus tokenizer.json and tokenizer_config.json (chat template, BOS/EOS) when
    the model has them: what the runner needs besides the engine's own files."""
    (work / "config.json").write_text(model.config.model_dump_json(indent=1))
    if model.tokenizer is None:
        return
    if model.tokenizer.tokenizer_json:
        (work / "tokenizer.json").write_text(model.tokenizer.tokenizer_json)
    tok_cfg = {
        k: getattr(model.tokenizer, k)
        for k in ("chat_template", "bos_token", "eos_token", "add_bos")
    }
    (work / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=1))


def base_manifest(
    engine: str,
    engine_version: str,
    model,
    preset,
    detail: str,
    target: str,
    *,
    fmt: str | None = None,
    activations: str | None = None,
) -> dict:
    """The manifest fields every engine writes; the engine adds its own (library, timings...).

    ``format`` names what really runs (the preset, or the engine's own format such as GGUF
    Q4_0) and ``activations`` how the linear layers' inputs are computed; records carry both."""
    from harness.versioning import code_version

    return {
        "engine": engine,
        "engine_version": engine_version,
        "model": model.name,
        "architecture": model.config.arch,
        "params": model.config.param_count(),
        "weights": model.weights,
        "source": model.source,
        "quantization": preset.name,
        "quantization_detail": detail,
        "format": fmt or preset.name,
        "activations": activations or preset.activations,
        "target": target,
        "code_version": code_version(),
    }


def write_manifest(work: Path, manifest: dict) -> dict:
    """Add every file's sha256 under ``files`` and write manifest.json."""
    manifest["files"] = {
        p.relative_to(work).as_posix(): file_sha256(p)
        for p in sorted(work.rglob("*"))
        if p.is_file()
    }
    (work / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def verify_files(bundle: Path, fix: str) -> dict:
    """The manifest, after checking every file it lists; a missing or altered file is an error
    naming it and ``fix``."""
    manifest_path = Path(bundle) / "manifest.json"
    if not manifest_path.is_file():
        raise UserError(f"{bundle} is not a bundle (no manifest.json); {fix}")
    manifest = json.loads(manifest_path.read_text())
    for name, digest in manifest["files"].items():
        path = Path(bundle) / name
        if not path.is_file():
            raise UserError(f"bundle file {path} is missing; {fix}")
        if file_sha256(path) != digest:
            raise UserError(f"bundle file {path} does not match its manifest hash; {fix}")
    return manifest
