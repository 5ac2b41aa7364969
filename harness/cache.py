"""Where downloaded weights, compiled bundles and device kits live: ~/.cache/slm-bench or
$SLM_BENCH_CACHE; how a folder is put there whole or not at all; when it was last used; and the
fingerprint of the code that built it."""

from __future__ import annotations

import ast
import contextlib
import fcntl
import hashlib
import inspect
import os
import shutil
import tempfile
import textwrap
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FunctionType, ModuleType

from harness.errors import UserError


def cache_dir(*parts: str) -> Path:
    root = Path(os.environ.get("SLM_BENCH_CACHE") or Path.home() / ".cache" / "slm-bench")
    path = root.joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK):
            raise PermissionError(13, "not writable", str(path))
    except OSError as exc:  # a read-only mount, a foreign owner, a file in the way
        raise UserError(
            f"the cache folder {path} cannot be written ({exc.strerror or exc}); point"
            " SLM_BENCH_CACHE at a writable folder (a lab's shared cache must be writable by"
            " every host that builds)"
        ) from None
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
                f"disk full while writing {out.name} under {out.parent}; "
                "free space or set SLM_BENCH_CACHE elsewhere"
            ) from None
        raise
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out


@contextlib.contextmanager
def exclusive(lock: Path):
    """Hold an flock on ``lock``: one holder at a time across threads (each opens the file
    anew), processes and, on a cache shared over NFS (where Linux maps flock to POSIX locks),
    hosts. A builder takes it, then looks again whether the thing is already built."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def mark_used(path: Path) -> None:
    """Record that a cached kit, bundle or layer was used now: its mtime is its last use
    (``slm-bench cache`` shows it, ``cache prune --older-than`` reads it; atime is unreliable).
    A finished entry's files never change, so its mtime is otherwise when it was made."""
    try:
        os.utime(path)
    except OSError:  # read-only cache, or removed meanwhile: the use itself goes on
        pass


class _Unshaped(ast.NodeTransformer):
    """Drops what does not change what code does: docstrings, and statements that are only a
    call to one of ``calls`` (``log(...)``: what a build says, not what it makes)."""

    def __init__(self, calls: frozenset[str]):
        self.calls = calls

    def generic_visit(self, node):
        super().generic_visit(node)
        for field in ("body", "orelse", "finalbody"):
            stmts = getattr(node, field, None)
            if not isinstance(stmts, list) or not stmts or not isinstance(stmts[0], ast.stmt):
                continue
            if field == "body" and isinstance(node, DOCSTRING_OWNERS) and _is_docstring(stmts[0]):
                stmts = stmts[1:]
            setattr(node, field, [s for s in stmts if not self._dropped(s)] or [ast.Pass()])
        return node

    def _dropped(self, stmt: ast.stmt) -> bool:
        return (
            isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Name)
            and stmt.value.func.id in self.calls
        )


DOCSTRING_OWNERS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def code_fingerprint(
    sources: Iterable[Path | str | FunctionType | type | ModuleType],
    *,
    ignore_calls: Iterable[str] = (),
) -> str:
    """sha256 of what Python code does, not how it is written: each source (a file, a folder's
    ``*.py`` files, a function, class or module, or source text) is parsed and its syntax tree
    hashed with comments, formatting and docstrings gone (a folder's native sources,
    NATIVE_SUFFIXES, are hashed as written). A comment, a reformat (``ruff
    format``), a rewrapped string (``"a" "b"`` parses to one constant) or a docstring edit keeps
    the fingerprint; any change to code changes it. Statements that only call a name in
    ``ignore_calls`` (logging) are dropped too. Cache keys use this, so a lint pass over the
    tree does not rebuild every kit and bundle. (The tree's printed form is Python's, so a new
    Python version may change fingerprints: a rebuild, never a wrong hit.)"""
    h = hashlib.sha256()
    unshaped = _Unshaped(frozenset(ignore_calls))
    for name, text in _source_texts(sources):
        if name.endswith(NATIVE_SUFFIXES):  # C/C++ compiled into a bundle: hashed as written
            h.update(f"{name}\0{text}\0".encode())
            continue
        with _AST_LOCK:
            tree = unshaped.visit(ast.parse(textwrap.dedent(text)))
            h.update(f"{name}\0{ast.dump(tree)}\0".encode())
    return h.hexdigest()


# CPython 3.11's ast module keeps its recursion-depth check in interpreter-wide state, so two
# threads parsing at once can fail with "SystemError: AST constructor recursion depth mismatch"
# (it did: a grid's devices compute bundle keys in their own threads). One parse at a time.
_AST_LOCK = threading.Lock()
# Native sources a folder may hold beside its Python (the TVM engine's fork-join launcher)
NATIVE_SUFFIXES = (".cc",)


def _code_files(folder: Path) -> Iterable[Path]:
    return (f for f in folder.rglob("*") if f.suffix in (".py", *NATIVE_SUFFIXES))


def _source_texts(sources) -> Iterable[tuple[str, str]]:
    for src in sources:
        if isinstance(src, str):
            yield "<text>", src
        elif isinstance(src, Path):
            files = sorted(_code_files(src)) if src.is_dir() else [src]
            for f in files:
                rel = f.relative_to(src).as_posix() if src.is_dir() else f.name
                yield rel, f.read_text(encoding="utf-8")
        else:  # a function, class or module: its own source only
            yield "<def>", inspect.getsource(src)
