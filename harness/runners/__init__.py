"""Runners: what measures on the device. ``python`` is ``python -m harness.runner`` (a Python on
the device); the others are native programs for a stock phone, wrapped by adapters with the same
request/close surface (``harness.runners.base``). Chosen by ``slm-bench run --runner NAME`` or the
device profile's ``runner``."""

from __future__ import annotations

from importlib import import_module

from harness.errors import UserError

# name -> "module:class" (imported on use: the adapters pull in nothing heavy until they run)
RUNNERS = {
    "python": None,  # harness.runner through Device.start_runner
    "llama-bench": "harness.runners.llama_cpp:LlamaBench",
    "llama-cli": "harness.runners.llama_cpp:LlamaCli",
    "mlc-cli": "harness.runners.mlc_cli:MlcCli",
    "executorch": "harness.runners.executorch:ExecuTorch",
    "tvm-rpc": "harness.runners.tvm_rpc:TvmRpc",
}


def check_runner(name: str) -> str:
    if name not in RUNNERS:
        raise UserError(f"unknown runner {name!r}; known runners: {', '.join(RUNNERS)}")
    return name


def get_runner(name: str):
    """The adapter class of a native runner (None for ``python``)."""
    target = RUNNERS[check_runner(name)]
    if target is None:
        return None
    module, _, cls = target.partition(":")
    return getattr(import_module(module), cls)
