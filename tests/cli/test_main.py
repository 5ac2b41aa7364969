"""The CLI entry: lazy subcommands, light imports, and UserError -> one-line error, exit 2."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from harness import __version__
from harness.cli import LazyGroup, _import_command, cli
from harness.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("tvm", "torch", "matplotlib", "pandas", "harness.cli.run", "harness.cli.compile")


def imported_after(argv: list[str]) -> list[str]:
    """Run the CLI with ``argv`` in a fresh interpreter; return which heavy modules got imported."""
    script = textwrap.dedent(
        f"""
        import json, sys
        import harness.cli
        try:
            harness.cli.main({argv!r})
        except SystemExit:
            pass
        print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["report", "--help"],
        ["plot", "--help"],
        ["prompts", "--help"],
        ["cache", "--help"],
        ["cache", "prune", "--help"],
        ["profile", "--help"],
    ],
)
def test_help_imports_nothing_heavy(argv):
    assert imported_after(argv) == []


def test_top_level_help_lists_every_command():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("prompts", "report", "plot", "run", "compile"):
        assert f"  {name} " in result.output
    assert "Typical session" in result.output


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert __version__ in result.output


def test_user_error_is_one_line_on_stderr_with_exit_code_2(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "prompts",
            "show",
            "--suite",
            str(tmp_path / "missing.jsonl"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: prompt suite")
    assert "slm-bench prompts build" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_lazy_group_imports_on_use_only():
    group = LazyGroup(
        name="g", lazy_commands={"hello": ("tests.cli.lazy_target:hello", "Say hello.")}
    )
    assert "tests.cli.lazy_target" not in sys.modules
    result = CliRunner().invoke(group, ["--help"])
    assert "Say hello." in result.output
    assert "tests.cli.lazy_target" not in sys.modules
    result = CliRunner().invoke(group, ["hello"])
    assert result.output == "hello\n"


def test_missing_command_module_is_a_user_error():
    with pytest.raises(UserError, match="not available in this checkout"):
        _import_command("ghost", "harness.cli.does_not_exist:ghost")


def test_missing_dependency_is_a_user_error(tmp_path, monkeypatch):
    (tmp_path / "needs_dep.py").write_text("import a_module_nobody_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match="a_module_nobody_installed"):
        _import_command("dep", "needs_dep:command")


def test_registry_points_at_click_commands():
    for name in ("prompts", "report", "plot"):
        assert isinstance(cli.get_command(click.Context(cli), name), click.Command)
