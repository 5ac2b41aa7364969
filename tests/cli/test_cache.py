"""``slm-bench cache`` and ``cache prune`` on a constructed cache (tests/test_cache_inventory.py
builds it): the listing, --json, a dry run that removes nothing, a prune that does, and listing
without importing TVM."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

from click.testing import CliRunner

from harness.cli import cli
from tests.test_cache_inventory import CURRENT_KIT, cache  # noqa: F401 (the fixture)

STALE_KIT = "kits/llamacpp-x86_64-" + "b" * 16


def invoke(*args: str):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_listing_has_a_row_per_entry_and_a_total_per_kind(cache):  # noqa: F811
    out = invoke("cache")
    assert re.fullmatch(rf"{cache}: 16\.\d KB in 13 entries", out.splitlines()[0])
    assert "\nweights: 10.0 KB in 2\n" in out and "\nbundles: " in out
    row = next(line for line in out.splitlines() if STALE_KIT in line)
    assert "1.0 KB" in row and "2d ago" in row
    assert f"stale: this code's kit is {CURRENT_KIT}" in row
    doc = json.loads(invoke("cache", "--json"))
    assert doc["root"] == str(cache) and doc["totals"]["weights"] == 10000
    entry = next(e for e in doc["entries"] if e["name"] == STALE_KIT)
    assert entry["state"] == "stale" and entry["bytes"] == 1000


def test_a_dry_run_lists_what_would_go_and_removes_nothing(cache):  # noqa: F811
    out = invoke("cache", "prune", "--dry-run")
    assert STALE_KIT in out and "weights/" not in out and CURRENT_KIT + " " not in out
    assert out.splitlines()[-1].startswith("5 entries, would free ")
    assert (cache / STALE_KIT).is_dir()
    out = invoke("cache", "prune", "--dry-run", "--no-stale", "--older-than", "30d")
    assert "weights/smollm2" in out and STALE_KIT not in out
    doc = json.loads(invoke("cache", "prune", "--dry-run", "--json", "--keep-recent", "0"))
    assert doc["dry_run"] and len(doc["removed"]) == 6  # the bundle used just now too


def test_prune_removes_and_says_how_much_it_freed(cache):  # noqa: F811
    out = invoke("cache", "prune")
    assert out.splitlines()[-1].startswith("5 entries, freed ")
    assert not (cache / STALE_KIT).exists() and (cache / "kits" / CURRENT_KIT).is_dir()
    assert invoke("cache", "prune") == "nothing to prune\n"


def test_prune_needs_something_to_prune_by(cache):  # noqa: F811
    result = CliRunner().invoke(cli, ["cache", "prune", "--no-stale"])
    assert result.exit_code == 2 and "drop --no-stale or give --older-than" in result.output
    result = CliRunner().invoke(cli, ["cache", "prune", "--older-than", "30"])
    assert result.exit_code == 2 and "not an age" in result.output


def test_listing_imports_no_engine(tmp_path):
    """The listing compares bundles' engine fingerprints without importing TVM (seconds)."""
    bundle = tmp_path / "bundles" / ("m-q0f32-llvm-" + "1" * 16)
    bundle.mkdir(parents=True)
    (bundle / "manifest.json").write_text('{"engine": "tvm", "engine_hash": "x"}')
    code = textwrap.dedent(
        """
        import sys
        from harness.cli import main
        try:
            main(["cache"])
        except SystemExit:
            pass
        print([m for m in ("tvm", "torch", "matplotlib") if m in sys.modules])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "SLM_BENCH_CACHE": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert "stale: built by other tvm engine code" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"
