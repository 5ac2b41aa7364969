"""Data files (device profiles, the model catalog, grids) are YAML validated with pydantic; a bad
one is a one-line error naming the file, the line or field, and the fix."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ValidationError

from harness.errors import UserError


def load_validated(
    path: Path, model: type[BaseModel], malformed_fix: str, invalid_fix: str
) -> BaseModel:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}{where}: malformed YAML; {malformed_fix}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(map(str, err["loc"])) or path.stem
        raise UserError(f"{path}: {field}: {err['msg']}; {invalid_fix}") from None


def load_named_folder(
    folder: Path, model: type[BaseModel], malformed_fix: str, invalid_fix: str
) -> dict[str, BaseModel]:
    """Every ``*.yaml`` in ``folder``, validated, keyed by its ``name`` — which must equal the file
    name, so ``--device``/``--model`` names and files can be found from each other."""
    entries = {}
    for path in sorted(folder.glob("*.yaml")):
        entry = load_validated(path, model, malformed_fix, invalid_fix)
        if entry.name != path.stem:
            raise UserError(f"{path}: name {entry.name!r} must equal the file name {path.stem!r}")
        entries[entry.name] = entry
    return entries
