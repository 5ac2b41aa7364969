"""The DocAssist task templates, kept as data in ``prompts/templates.yaml``.

Validation on load catches the mistakes that would silently produce wrong prompts: a task
missing, a template without ``{context}``, a qa template without ``{question}``, or an
unknown placeholder that ``str.format`` would fail on mid-build.

Besides the three tasks the file holds ``question``: the prompt of the SlimLM paper's
"question" condition (Table 1's first rows), a one-line question and no document. It is a qa
prompt at L=0, so it uses ``{question}`` alone.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import get_args

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from harness import paths
from harness.errors import UserError
from harness.results.schema import Task

TASKS: tuple[str, ...] = get_args(Task)  # ("summ", "qs", "qa"): the schema's task names
TEMPLATES_FIX = "edit prompts/templates.yaml (see the comment at its top)"


class TaskTemplate(BaseModel):
    """One task: a human description and the prompt template."""

    model_config = ConfigDict(extra="forbid")

    description: str
    template: str

    @field_validator("template")
    @classmethod
    def _drop_final_newlines(cls, value: str) -> str:
        # A YAML block scalar ends with "\n"; dropping it here (not by stripping the filled-in
        # prompt) keeps the context in the prompt byte-identical to the one that was counted.
        return value.rstrip("\n")

    def placeholders(self) -> set[str]:
        return {
            field for _, field, _, _ in string.Formatter().parse(self.template) if field is not None
        }


class Templates(BaseModel):
    """The three task templates, the question-only one, and the file text they came from
    (hashed into the suite)."""

    model_config = ConfigDict(extra="forbid")

    summ: TaskTemplate
    qs: TaskTemplate
    qa: TaskTemplate
    question: TaskTemplate
    raw: str = ""

    @model_validator(mode="after")
    def _placeholders_match_tasks(self) -> Templates:
        for task in TASKS:
            expected = {"context", "question"} if task == "qa" else {"context"}
            found = self.get(task).placeholders()
            if found != expected:
                want = ", ".join("{" + p + "}" for p in sorted(expected))
                got = ", ".join("{" + p + "}" for p in sorted(found)) or "none"
                raise ValueError(f"task '{task}' template must use exactly {want} (found {got})")
        found = self.question.placeholders()
        if found != {"question"}:
            got = ", ".join("{" + p + "}" for p in sorted(found)) or "none"
            raise ValueError(
                f"the 'question' template (no document) must use exactly {{question}} (found {got})"
            )
        return self

    def get(self, task: str) -> TaskTemplate:
        if task not in TASKS:
            raise UserError(f"unknown task '{task}'; use one of {', '.join(TASKS)}")
        return getattr(self, task)

    def render(self, task: str, context: str, question: str | None = None) -> str:
        """The full prompt text of ``task`` for ``context`` (and ``question`` for qa)."""
        values = {"context": context}
        if task == "qa":
            if not question:
                raise UserError(
                    "the qa task needs a question; fix: set "
                    "'question' in the document's front matter"
                )
            values["question"] = question
        return self.get(task).template.format(**values)

    def render_question(self, question: str | None) -> str:
        """The question-only prompt (the paper's "question" condition, L=0): no document."""
        if not question:
            raise UserError(
                "the question-only prompt needs a question; fix: "
                "set 'question' in the document's front matter"
            )
        return self.question.template.format(question=question)


def load_templates(path: Path | str | None = None) -> Templates:
    """Read and validate the templates file (default ``<repo>/prompts/templates.yaml``)."""
    file = Path(path) if path is not None else paths.templates_path()
    try:
        raw = file.read_text(encoding="utf-8").replace("\r\n", "\n")
    except FileNotFoundError:
        raise UserError(
            f"templates file {file} not found; fix: restore prompts/templates.yaml from git"
        ) from None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise UserError(f"{file}: not valid YAML; fix: {TEMPLATES_FIX}") from None
    if not isinstance(data, dict):
        raise UserError(
            f"{file}: expected a mapping with keys {', '.join(TASKS)}; fix: {TEMPLATES_FIX}"
        )
    try:
        return Templates.model_validate({**data, "raw": raw})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UserError(f"{file}: {problems}; fix: {TEMPLATES_FIX}") from None
