"""Plugin stages: code that produces model directories the benchmark picks up like any other.

A stage is registered by any installed package through a Python entry point in the group
``slm_bench.stages``; the project's own SlimLM trainer is the first one::

    [project.entry-points."slm_bench.stages"]
    slimlm = "harness.stages.slimlm.stage:SlimLMStage"

The entry point names a ``Stage`` subclass (or an instance). ``run(config, out_dir, log)`` gets
the stage's settings as a plain dict (from a pipeline YAML or ``--set key=value``) and returns
the model directory it wrote: ``config.json``, ``*.safetensors``, ``tokenizer.json`` and a
``provenance.json`` saying how the model came to be. Nothing here imports a plugin until it is
listed or run, so a broken plugin cannot break other commands.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, distributions, entry_points
from pathlib import Path

from harness.errors import UserError

GROUP = "slm_bench.stages"


class Stage(ABC):
    """What a plugin provides. ``name`` is taken from the entry point when left empty."""

    name: str = ""
    summary: str = ""  # one line for `slm-bench stages`

    @abstractmethod
    def run(self, config: dict, out_dir: Path, log: Callable[[str], None] = print) -> Path:
        """Produce a model directory under ``out_dir`` from ``config``; return its path."""


@dataclass
class StageInfo:
    name: str
    target: str  # "module:attr" of the entry point
    package: str  # the distribution that registered it, with its version
    summary: str = ""
    error: str | None = None  # why it could not be loaded, when it could not


def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, ep)  # the first on sys.path wins, as importlib resolves it
    # entry_points() keeps one metadata folder per distribution name, the first on sys.path; in a
    # checkout that is often a stale ``slm_bench.egg-info`` left in the repo root by an older
    # install, which hides the installed dist-info and its stages. Every copy is looked at.
    for dist in distributions():
        for ep in dist.entry_points.select(group=GROUP):
            found.setdefault(ep.name, ep)
    return found


def _package(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.metadata['Name']} {dist.version}" if dist is not None else "?"


def _instantiate(ep: EntryPoint) -> Stage:
    try:
        obj = ep.load()
    except Exception as exc:  # noqa: BLE001 - any import failure of third-party code is reported, not raised
        first = (str(exc).splitlines() or [""])[0]
        raise UserError(
            f"stage {ep.name!r} ({ep.value}, from {_package(ep)}) failed to import:"
            f" {type(exc).__name__}: {first}; fix or reinstall that package"
        ) from None
    stage = obj() if isinstance(obj, type) else obj
    if not callable(getattr(stage, "run", None)):
        raise UserError(
            f"stage {ep.name!r} ({ep.value}) is not a Stage (it has no run method); fix the entry"
            " point in that package"
        )
    if not getattr(stage, "name", ""):
        stage.name = ep.name
    return stage


def list_stages() -> list[StageInfo]:
    """Every registered stage, loaded to read its summary; one that fails says why instead."""
    rows = []
    for name, ep in sorted(_entry_points().items()):
        info = StageInfo(name=name, target=ep.value, package=_package(ep))
        try:
            info.summary = getattr(_instantiate(ep), "summary", "") or ""
        except UserError as exc:
            info.error = str(exc)
        rows.append(info)
    return rows


def load_stage(name: str) -> Stage:
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none"
        raise UserError(
            f"unknown stage {name!r} (installed: {known}); install the package that provides it, or"
            " `pip install -e .` for the built-in ones"
        )
    return _instantiate(eps[name])
