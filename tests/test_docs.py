"""The documentation cannot drift from the CLI or the tree.

Every ``slm-bench ...`` command in README.md and docs/*.md (fenced code blocks and inline code
spans) must name subcommands that exist and options that those subcommands list in their
``--help``; every relative link must resolve to a file. The CLI is read through click's
``CliRunner`` and ``--help`` only, which imports no command module's heavy dependencies.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import cli

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(\s*)(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
ANGLE_PLACEHOLDER = re.compile(r"<[^<>\s]+>")
SHELL_OPERATORS = {"&&", "||", "|", ";", "&", ">", ">>", "<", "2>", "2>&1", "&>"}


# --- the CLI, as its --help shows it ---------------------------------------------------------


@dataclass
class HelpPage:
    """What one command's ``--help`` says: its options (and whether each takes a value) and its
    subcommands."""

    options: dict[str, bool] = field(default_factory=dict)  # name -> takes a value
    subcommands: set[str] = field(default_factory=set)


def _section(lines: list[str], title: str) -> list[str]:
    """The lines of a help section (``Options:``, ``Commands:``) up to the next blank line."""
    try:
        start = lines.index(title)
    except ValueError:
        return []
    body = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        body.append(line)
    return body


def parse_help(text: str) -> HelpPage:
    lines = text.splitlines()
    page = HelpPage()
    for line in _section(lines, "Options:"):
        match = re.match(r"^  (-\S.*?)(?:\s{2,}|$)", line)
        if not match:
            continue  # a wrapped description line
        for alternative in re.split(r",\s+|\s+/\s+", match.group(1)):
            name, _, metavar = alternative.strip().partition(" ")
            page.options[name] = bool(metavar.strip())
    for line in _section(lines, "Commands:"):
        match = re.match(r"^  (\S+)(?:\s{2,}|$)", line)
        if match:
            page.subcommands.add(match.group(1))
    return page


@cache
def help_page(path: tuple[str, ...]) -> HelpPage | None:
    """The parsed ``slm-bench PATH... --help``; None when click refuses the path."""
    result = CliRunner().invoke(cli, [*path, "--help"])
    if result.exit_code != 0:
        return None
    return parse_help(result.output)


# --- commands in a document ------------------------------------------------------------------


def split_markdown(text: str) -> tuple[list[str], str]:
    """(the logical lines of fenced code blocks, the prose outside them).

    Fenced lines ending in a backslash are joined with the next; the prose keeps a blank line
    where each block was, so that inline spans never cross a block.
    """
    code: list[str] = []
    prose: list[str] = []
    fence = None
    pending = ""
    for line in text.splitlines():
        match = FENCE.match(line)
        if fence is None:
            if match:
                fence = match.group(2)
                prose.append("")
            else:
                prose.append(line)
            continue
        if match and match.group(2) == fence:
            if pending:
                code.append(pending)
                pending = ""
            fence = None
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
        else:
            code.append(pending + line)
            pending = ""
    return code, "\n".join(prose)


def inline_spans(prose: str) -> list[str]:
    """Inline code spans of the prose, each on one line (a span may wrap across lines)."""
    spans = []
    for paragraph in re.split(r"\n\s*\n", prose):
        for match in INLINE_CODE.finditer(paragraph):
            spans.append(" ".join(match.group(2).split()))
    return spans


def tokenize(line: str) -> list[str]:
    """Shell words of a line, operators (``&&``, ``|``, ``;``) as words of their own, comments
    dropped; ``<placeholder>`` becomes one word."""
    line = ANGLE_PLACEHOLDER.sub("PLACEHOLDER", line)
    lexer = shlex.shlex(line, posix=True, punctuation_chars="&|;")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        return list(lexer)
    except ValueError:  # an unbalanced quote in prose-like code: read it word by word
        return line.split()


def commands_in(line: str) -> list[list[str]]:
    """The argument lists that follow ``slm-bench`` (or ``-m harness``) in a line, one per
    command of a ``&&`` / ``|`` / ``;`` chain; environment prefixes and wrappers are skipped."""
    found = []
    segment: list[str] = []
    for token in [*tokenize(line), ";"]:
        if token in SHELL_OPERATORS or token.startswith((">", "2>")):
            for i, word in enumerate(segment):
                if word == "slm-bench" or (word == "harness" and i and segment[i - 1] == "-m"):
                    found.append(segment[i + 1 :])
                    break
            segment = []
        else:
            segment.append(token)
    return found


def is_placeholder(word: str) -> bool:
    """COMMAND, M, RUN_DIR, DOCS..., PLACEHOLDER: stands for something, names nothing."""
    return re.fullmatch(r"[A-Z][A-Z0-9_]*", word.rstrip(".")) is not None


def check_command(args: list[str]) -> list[str]:
    """Problems with one ``slm-bench ARGS``: unknown subcommands and options."""
    path: list[str] = []
    page = help_page(())
    problems = []
    skip_value = False
    positional_seen = False
    for raw in args:
        word = raw.strip("[]")
        if skip_value:
            skip_value = False
            continue
        if not word or word == "...":
            continue
        command = " ".join(["slm-bench", *path])
        if word.startswith("-") and len(word) > 1 and not re.fullmatch(r"-[\d.]+", word):
            name = word.split("=", 1)[0]
            if name not in page.options:
                problems.append(f"`{command}` has no option {name}")
            elif page.options[name] and "=" not in word:
                skip_value = True
            continue
        if page.subcommands and not positional_seen:
            alternatives = word.split("|")
            if all(a in page.subcommands for a in alternatives) and len(alternatives) > 1:
                return problems  # `prompts build|show`: both exist, options are ambiguous
            if word in page.subcommands:
                path.append(word)
                page = help_page(tuple(path))
                if page is None:
                    return [*problems, f"`{command} {word} --help` fails"]
                continue
            if is_placeholder(word):
                return problems  # `slm-bench COMMAND --help`
            problems.append(f"`{command}` has no subcommand {word}")
            return problems
        positional_seen = True
    return problems


def check_document(text: str, where: Path) -> list[str]:
    """Every problem of one Markdown document: commands the CLI does not have, options their
    command does not list, relative links to missing files."""
    code, prose = split_markdown(text)
    problems = []
    for line in code + inline_spans(prose):
        for args in commands_in(line):
            for problem in check_command(args):
                problems.append(f"{where.name}: {problem} (in: {line.strip()})")
    for match in LINK.finditer(re.sub(r"`[^`\n]*`", "", prose)):
        target = match.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # https:, mailto:, an anchor in the same page
        path = target.split("#", 1)[0]
        if not (where.parent / path).exists():
            problems.append(f"{where.name}: link to {target} resolves to nothing")
    return problems


# --- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_document_matches_the_cli_and_the_tree(document):
    assert check_document(document.read_text(), document) == []


def test_docs_exist_and_name_commands():
    assert len(DOCUMENTS) > 1, "docs/*.md is missing"
    code, prose = split_markdown((REPO_ROOT / "README.md").read_text())
    commands = [c for line in code + inline_spans(prose) for c in commands_in(line)]
    assert len(commands) >= 5  # the checker sees the README's commands at all


def test_a_renamed_option_is_reported(tmp_path):
    doc = tmp_path / "page.md"
    text = (
        "Run it:\n\n```bash\nslm-bench run --model M --lenghts 200,1000 --repeats 2\n```\n\n"
        "Or inline: `slm-bench grid examples/quick.yaml --dry-run --max-tokens 8`.\n"
    )
    problems = check_document(text, doc)
    assert len(problems) == 2
    assert "`slm-bench run` has no option --lenghts" in problems[0]
    assert "`slm-bench grid` has no option --max-tokens" in problems[1]


def test_an_unknown_subcommand_and_a_dead_link_are_reported(tmp_path):
    doc = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("x\n")
    text = (
        "`slm-bench kit build --arch x86_64` and `slm-bench prompts make`;\n"
        "see [there](there.md#top), [gone](gone.md) and ![pic](img/missing.png).\n"
    )
    problems = check_document(text, doc)
    assert any("`slm-bench kit` has no subcommand build" in p for p in problems)
    assert any("`slm-bench prompts` has no subcommand make" in p for p in problems)
    assert any("link to gone.md" in p for p in problems)
    assert any("link to img/missing.png" in p for p in problems)
    assert not any("there.md" in p for p in problems)
    assert len(problems) == 4


def test_commands_are_found_through_shell_syntax():
    line = (
        "SLM_BENCH_CACHE=/tmp/x nice -n 10 slm-bench run --model M --lengths 200 "
        "| tee log && adb connect 127.0.0.1:5600 && slm-bench devices  # list them"
    )
    assert commands_in(line) == [["run", "--model", "M", "--lengths", "200"], ["devices"]]
    assert commands_in("torchrun --nproc_per_node=2 -m harness train slimlm --out d") == [
        ["train", "slimlm", "--out", "d"]
    ]
    assert commands_in("slm-bench report results/<run-id> --baseline results/A") == [
        ["report", "results/PLACEHOLDER", "--baseline", "results/A"]
    ]
    code, _ = split_markdown("```bash\nslm-bench run \\\n  --model M \\\n  --repeats 1\n```\n")
    assert [commands_in(line) for line in code] == [[["run", "--model", "M", "--repeats", "1"]]]


def test_options_that_take_values_and_placeholders_are_understood():
    assert check_command(["compile", "-m", "M", "-t", "llvm", "--force"]) == []
    assert check_command(["plot", "results/a", "[--L", "1000]"]) == []
    assert check_command(["prompts", "build|show"]) == []
    assert check_command(["COMMAND", "--help"]) == []
    assert check_command(["run", "--model=M", "--json"]) == []


def test_the_test_command_is_the_ci_command_word_for_word():
    ci = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    command = ci[ci.index("# The README's test command, word for word:") + 1]
    assert command in (REPO_ROOT / "README.md").read_text().splitlines()


def test_checking_the_docs_imports_nothing_heavy():
    script = (
        "import sys\n"
        "from tests.test_docs import DOCUMENTS, check_document\n"
        "for d in DOCUMENTS: check_document(d.read_text(), d)\n"
        "print(sorted({'tvm', 'torch', 'matplotlib', 'pandas'} & set(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
