"""Inference engines behind one small interface.

An engine module (``harness/engines/<name>/engine.py``) provides:
  ``NAME``                                        the ``--engine`` value, stored in every record
  ``build(model, preset, target, log) -> Path``   a bundle folder (cached) with manifest.json,
                                                  config.json and the model's tokenizer files
  ``verify(bundle) -> dict``                      the manifest, after checking every file's hash
  ``open_session(bundle, max_seq_len, threads)``  what the runner drives: ``prefill(ids)``,
                                                  ``decode(token)``, ``greedy(logits)``,
                                                  ``num_threads()``, ``config``
  ``version() -> str``
The runner picks the session from the bundle's ``manifest["engine"]``, so one runner contract
serves every engine. Adding an engine is one such module and one line below.
"""

from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path
from types import ModuleType

from harness.errors import UserError

ENGINES: dict[str, tuple[str, str]] = {
    # name -> (module, how to get it when it is missing)
    "tvm": ("harness.engines.tvm.engine", "pip install -e ."),
    "llama.cpp": (
        "harness.engines.llamacpp.engine",
        (
            'pip install -e ".[llamacpp]" (builds llama.cpp from source, ~20 min on 2 cores;'
            " docs/engine.md: llama.cpp side by side)"
        ),
    ),
}

# The code that shapes each engine's bundles (paths under harness/): its fingerprint is part of
# the bundle key and the manifest's ``engine_hash``, which ``slm-bench cache prune`` compares.
# Kept here, not in the engine, so computing it imports no engine (TVM takes seconds).
ENGINE_CODE: dict[str, tuple[str, ...]] = {
    "tvm": ("engines/tvm", "engines/bundle.py", "quantization.py", "models/config.py"),
    "llama.cpp": ("engines/llamacpp", "engines/bundle.py"),
}


@functools.cache  # the code a process runs does not change under it; parsed once, not per thread
def engine_code_hash(name: str) -> str:
    """Fingerprint (syntax, not bytes: ``harness.cache.code_fingerprint``) of an engine's code."""
    from harness.cache import code_fingerprint

    package = Path(__file__).resolve().parents[1]
    return code_fingerprint([package / rel for rel in ENGINE_CODE[name]])


def host_cores() -> int:
    """The CPUs this process may run on (its affinity, not the machine's count): every engine's
    thread count on the host."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# glibc 2.35+: malloc asks for transparent huge pages on the mappings it makes for large blocks
# (the KV cache, workspaces). A tunable is read when a process starts, so it goes into the
# environment of the processes the harness starts (the desktop runner). SmolLM2-135M decode at
# L=1000, EPYC Zen 4, three processes each way alternating: 3.45-3.66 ms a step against
# 3.69-4.00 without (1.04-1.11x). Other C libraries ignore the variable.
HUGE_PAGE_MALLOC = "glibc.malloc.hugetlb=1"


def with_huge_page_malloc(env: dict[str, str]) -> dict[str, str]:
    """``env`` with glibc's malloc asking for huge pages, added to its GLIBC_TUNABLES; a
    ``glibc.malloc.hugetlb`` the user set stays as it is."""
    tunables = env.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in tunables:
        return dict(env)
    return {**env, "GLIBC_TUNABLES": ":".join(filter(None, [tunables, HUGE_PAGE_MALLOC]))}


def get_engine(name: str) -> ModuleType:
    if name not in ENGINES:
        raise UserError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    module, _ = ENGINES[name]
    return importlib.import_module(module)


def engine_of(manifest: dict) -> str:
    """The engine a bundle was built for (its manifest names it)."""
    if "engine" not in manifest:
        raise UserError(
            f"bundle {manifest.get('model', '?')} names no engine in its manifest.json; rebuild it "
            "(`slm-bench compile`, or remove it from the bundle cache and rerun)"
        )
    return manifest["engine"]
