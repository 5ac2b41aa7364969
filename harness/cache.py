"""Where downloaded weights and compiled bundles live: ~/.cache/slm-bench or $SLM_BENCH_CACHE."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    root = Path(os.environ.get("SLM_BENCH_CACHE") or Path.home() / ".cache" / "slm-bench")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
