import json

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.errors import UserError


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "gate.txt").write_text(
        "The east gate closes at 6 pm from Monday. Bring your badge.", encoding="utf-8"
    )
    (folder / "pumps.md").write_text(
        "# Pumps\n\nPump station four moved 12,400 litres per hour in May.", encoding="utf-8"
    )
    (folder / "lib.md").write_text(
        "# Library\n\nThe reading room reopens on 3 June with longer hours.", encoding="utf-8"
    )
    return folder


def test_build_and_show_through_the_cli(chat_server, docs, tmp_path, monkeypatch):
    monkeypatch.setenv("SLM_BENCH_ANNOTATOR_URL", chat_server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-cli")
    monkeypatch.setenv("SLM_BENCH_ANNOTATOR_MODEL", "gpt-4o-mini")
    out = tmp_path / "da"
    args = [
        "docassist",
        "build",
        str(docs),
        "--out",
        str(out),
        "--annotator",
        "openai",
        "--seed",
        "1",
        "--cache",
        str(tmp_path / "c"),
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "wrote 3 documents (train 1, validation 1, test 1)" in result.output
    assert "15 requests, 0 cached, 0 fallbacks" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["annotator"] == {
        "kind": "openai",
        "name": "openai:gpt-4o-mini",
        "url": chat_server.url,
        "model": "gpt-4o-mini",
        "max_tokens": 256,
        "temperature": 0,
    }
    assert manifest["seed"] == 1 and manifest["counts"]["examples_by_task"] == {
        "qa": 9,
        "qs": 3,
        "summ": 3,
    }

    again = CliRunner().invoke(cli, args)
    assert "0 requests, 15 cached" in again.output and len(chat_server.requests) == 15

    shown = CliRunner().invoke(
        cli, ["docassist", "show", str(out), "--split", "test", "--examples"]
    )
    assert shown.exit_code == 0 and shown.output.count("== ") == 5 and "-- target:" in shown.output


def test_bad_split_and_missing_key_are_user_errors(docs, tmp_path, monkeypatch):
    for var in ("SLM_BENCH_ANNOTATOR_URL", "SLM_BENCH_ANNOTATOR_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    base = ["docassist", "build", str(docs), "--out", str(tmp_path / "x"), "--annotator", "openai"]
    result = CliRunner().invoke(cli, [*base, "--split", "0.9,0.2"])
    assert isinstance(result.exception, UserError) and "--split" in str(result.exception)
    result = CliRunner().invoke(cli, base)
    assert isinstance(result.exception, UserError) and "OPENAI_API_KEY" in str(result.exception)
