"""Task templates: the real file is valid; broken templates are refused on load."""

import pytest

from harness.errors import UserError
from harness.prompts.templates import TASKS, load_templates


def test_real_templates_have_the_right_placeholders():
    templates = load_templates()
    for task in TASKS:
        expected = {"context", "question"} if task == "qa" else {"context"}
        assert templates.get(task).placeholders() == expected


def test_render_fills_context_and_question():
    templates = load_templates()
    text = templates.render("qa", "CONTEXT {with braces}", "WHY?")
    assert "CONTEXT {with braces}" in text and "WHY?" in text
    assert "CONTEXT" in templates.render("summ", "CONTEXT")


def test_qa_without_question_is_a_user_error():
    with pytest.raises(UserError, match="question"):
        load_templates().render("qa", "ctx", None)


@pytest.mark.parametrize(
    "qa_template, message",
    [
        ("Answer: {question}", r"\{context\}"),
        ("{context} {question} {extra}", "extra"),
        ("{context}", r"\{question\}"),
    ],
    ids=["no-context", "unknown-placeholder", "qa-without-question"],
)
def test_bad_templates_are_refused(tmp_path, qa_template, message):
    path = tmp_path / "templates.yaml"
    path.write_text(
        "summ: {description: s, template: '{context}'}\n"
        "qs: {description: q, template: '{context}'}\n"
        f"qa: {{description: a, template: '{qa_template}'}}\n"
        "question: {description: o, template: '{question}'}\n"
    )
    with pytest.raises(UserError, match=message):
        load_templates(path)


def test_the_question_alone_has_no_document():
    templates = load_templates()
    assert templates.question.placeholders() == {"question"}
    assert templates.render_question("WHY?") == "WHY?"
    with pytest.raises(UserError, match="question"):
        templates.render_question("")


def test_a_question_template_with_a_context_is_refused(tmp_path):
    path = tmp_path / "templates.yaml"
    path.write_text(
        "summ: {description: s, template: '{context}'}\n"
        "qs: {description: q, template: '{context}'}\n"
        "qa: {description: a, template: '{context} {question}'}\n"
        "question: {description: o, template: '{context} {question}'}\n"
    )
    with pytest.raises(
        UserError, match=r"'question' template \(no document\) must use exactly \{question\}"
    ):
        load_templates(path)


def test_missing_task_is_refused(tmp_path):
    path = tmp_path / "templates.yaml"
    path.write_text("summ: {description: s, template: '{context}'}\n")
    with pytest.raises(UserError, match="qs"):
        load_templates(path)
