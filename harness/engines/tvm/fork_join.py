"""The model library's own fork-join launcher (``fork_join.cc``, which says why): linked into
every loadable CPU model library by ``compile.py``, switched on by ``runtime.TVMSession`` once TVM
has loaded the library."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

SOURCE = Path(__file__).with_name("fork_join.cc")
# "tvm" runs parallel loops on TVM's thread pool instead (an A/B, or a way around a problem)
LAUNCHER_ENV = "SLM_BENCH_LAUNCHER"


def link_args() -> dict:
    """export_library's arguments that link the launcher in. Fresh lists on every call:
    export_library appends its own objects to ``addons``."""
    return {"addons": [str(SOURCE)], "options": ["-O2"]}


def switch(lib_path: Path | str, threads: int) -> bool:
    """Route the loaded library's parallel loops through its launcher with ``threads`` threads,
    or back to TVM's pool with 0. False where the library has no launcher or no parallel loop.
    ``lib_path`` must be the file TVM loaded: dlopen hands back that handle, it loads nothing."""
    install = getattr(ctypes.CDLL(str(lib_path)), "slm_fork_join_install", None)
    return install is not None and install(ctypes.c_int(threads)) == 0


def use_fork_join(lib_path: Path | str, threads: int) -> str:
    """Switch the launcher on unless SLM_BENCH_LAUNCHER=tvm; the launcher that runs the library's
    parallel loops: "fork-join" or "tvm"."""
    if os.environ.get(LAUNCHER_ENV, "fork-join") == "tvm":
        return "tvm"
    return "fork-join" if switch(lib_path, threads) else "tvm"


def build_with_launcher(func, target, threads: int):
    """A kernel built alone (a probe, a benchmark's kernel) run as a model library runs: built
    for ``target``, exported with the launcher linked in, loaded, and its parallel loops on the
    launcher with ``threads`` threads (0: left on TVM's pool). The loaded module."""
    import tempfile

    import tvm

    built = tvm.tirx.build(tvm.IRModule({"main": func}), target=target)
    # the file may go once loaded: its mapping stays (and keeps its inode from being reused)
    with tempfile.TemporaryDirectory(prefix="slm-bench-kernel-") as work:
        path = Path(work) / "kernel.so"
        built.export_library(str(path), **link_args())
        module = tvm.runtime.load_module(str(path))
        if threads:
            use_fork_join(path, threads)
        return module
