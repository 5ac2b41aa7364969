"""Where downloaded weights, compiled bundles and device kits live: ~/.cache/slm-bench or
$SLM_BENCH_CACHE; and how a folder is put there whole or not at all."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from harness.errors import UserError


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


def build_atomically(out: Path, build_into: Callable[[Path], None]) -> Path:
    """Run ``build_into(work_dir)`` and rename the result to ``out``: a crash never leaves a
    half-written bundle or kit under the final name, and a full disk is a one-line error."""
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        build_into(work)
        if out.exists():
            shutil.rmtree(out)
        os.replace(work, out)
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)
        if exc.errno == 28:
            raise UserError(
                f"disk full while writing {out.name} under {out.parent}; free space or set"
                " SLM_BENCH_CACHE elsewhere"
            ) from None
        raise
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out
