"""Architecture registry: HF ``model_type`` -> the module that understands it.

Each architecture module (``harness/models/arch/<name>.py``) provides:
  ``NAME``                 registry key, stored in ModelConfig.arch
  ``HF_MODEL_TYPES``       the ``model_type`` values of config.json it accepts
  ``config_from_hf(dict)`` -> ModelConfig
  ``TINY``                 a tiny ModelConfig for compile tests and smoke runs
Adding an architecture is adding one such module and one line below.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from harness.errors import UserError

ARCHITECTURES = {
    "llama": "harness.models.arch.llama",
    "gemma2": "harness.models.arch.gemma2",
    "phi3": "harness.models.arch.phi3",
    "qwen2": "harness.models.arch.qwen2",
    "slimlm": "harness.models.arch.slimlm",
}


def get_arch(name: str) -> ModuleType:
    if name not in ARCHITECTURES:
        raise UserError(
            f"architecture {name!r} is not supported; supported: {', '.join(ARCHITECTURES)}"
        )
    return importlib.import_module(ARCHITECTURES[name])


def arch_for_model_type(model_type: str) -> ModuleType | None:
    for name in ARCHITECTURES:
        mod = get_arch(name)
        if model_type in mod.HF_MODEL_TYPES:
            return mod
    return None


def config_from_hf(hf: dict, source: Path | str = "config.json"):
    model_type = hf.get("model_type", "")
    mod = arch_for_model_type(model_type)
    if mod is None:
        supported = sorted(t for n in ARCHITECTURES for t in get_arch(n).HF_MODEL_TYPES)
        raise UserError(
            f"{source}: model_type {model_type!r} is not supported; supported:"
            f" {', '.join(supported)}"
        )
    try:
        return mod.config_from_hf(hf)
    except KeyError as exc:
        raise UserError(f"{source}: missing key {exc} for a {model_type} config") from None
    except ValueError as exc:  # the arch module's UnsupportedConfig, or a pydantic check
        raise UserError(f"{source}: {str(exc).splitlines()[0]}") from None


def tiny_configs() -> dict:
    return {f"tiny-{name}": get_arch(name).TINY for name in ARCHITECTURES}
