"""``slm-bench prompts build/show`` through click's CliRunner."""

import json

from click.testing import CliRunner

from harness.cli import cli
from harness.errors import UserError
from harness.prompts.suite import load_suite


def test_build_writes_the_suite_and_prints_the_table(tmp_path):
    result = CliRunner().invoke(cli, ["prompts", "build", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "L=1000" in result.output and "d01" in result.output
    records = load_suite(tmp_path)
    assert f"wrote {len(records)} prompts" in result.output
    assert (tmp_path / "docassist-v1.meta.json").is_file()


def test_show_one_prompt_prints_its_text(tmp_path):
    CliRunner().invoke(cli, ["prompts", "build", "--out", str(tmp_path)])
    result = CliRunner().invoke(
        cli,
        ["prompts", "show", "--suite", str(tmp_path), "--doc", "d01", "--task", "qa", "--L", "400"],
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("== d01-qa-L400")
    assert "Question:" in result.output


def test_show_json_lines(tmp_path):
    CliRunner().invoke(cli, ["prompts", "build", "--out", str(tmp_path)])
    result = CliRunner().invoke(
        cli, ["prompts", "show", "--suite", str(tmp_path), "--task", "summ", "--L", "200", "--json"]
    )
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows and all(r["task"] == "summ" and r["L"] == 200 for r in rows)


def test_show_listing_and_bad_filter(tmp_path):
    CliRunner().invoke(cli, ["prompts", "build", "--out", str(tmp_path)])
    listing = CliRunner().invoke(cli, ["prompts", "show", "--suite", str(tmp_path), "--doc", "d01"])
    assert "16 prompts" in listing.output  # 5 L x 3 tasks + the question alone (qa, L=0)
    bad = CliRunner().invoke(cli, ["prompts", "show", "--suite", str(tmp_path), "--L", "300"])
    assert isinstance(bad.exception, UserError)
    assert "unknown L 300" in str(bad.exception)
