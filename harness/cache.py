"""Where downloaded weights and compiled bundles live: ~/.cache/slm-bench or $SLM_BENCH_CACHE."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    root = Path(os.environ.get("SLM_BENCH_CACHE") or Path.home() / ".cache" / "slm-bench")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in 1 MiB chunks (weights and bundles are hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
