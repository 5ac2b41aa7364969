"""The TVM engine behind the engine interface (see harness/engines/__init__.py)."""

from __future__ import annotations

from pathlib import Path

NAME = "tvm"


def build(model, preset, target: str = "llvm", *, log=print) -> Path:
    from .compile import compile_model

    return compile_model(model, preset, target, log=log)


def verify(bundle: Path) -> dict:
    from .compile import verify_bundle

    return verify_bundle(bundle)


def open_session(bundle: Path, max_seq_len: int, threads: int | None = None):
    from .runtime import TVMSession

    return TVMSession(bundle, max_seq_len=max_seq_len, threads=threads)


def version() -> str:
    import tvm

    return tvm.__version__
