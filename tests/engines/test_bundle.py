"""Bundles: built under a temporary name, every file hashed, damage named on load."""

from __future__ import annotations

import pytest

from harness.cache import build_atomically
from harness.engines.bundle import verify_files, write_manifest
from harness.errors import UserError


def test_a_failed_build_leaves_nothing_under_the_final_name(tmp_path):
    def half_written(work):
        (work / "model.so").write_bytes(b"partial")
        raise RuntimeError("compiler crashed")

    with pytest.raises(RuntimeError):
        build_atomically(tmp_path / "bundle", half_written)
    assert list(tmp_path.iterdir()) == []


def test_damaged_and_missing_files_are_named(tmp_path):
    def build(work):
        (work / "params").mkdir()
        (work / "params" / "shard_000.bin").write_bytes(b"\x00" * 64)
        (work / "config.json").write_text("{}")
        write_manifest(work, {"model": "m"})

    bundle = build_atomically(tmp_path / "bundle", build)
    assert set(verify_files(bundle, "rebuild it")["files"]) == {
        "params/shard_000.bin",
        "config.json",
    }
    (bundle / "params" / "shard_000.bin").write_bytes(b"\x01" * 64)
    with pytest.raises(
        UserError, match=r"shard_000.bin does not match its manifest hash; rebuild it"
    ):
        verify_files(bundle, "rebuild it")
    (bundle / "config.json").unlink()
    with pytest.raises(UserError, match=r"config.json is missing; rebuild it"):
        verify_files(bundle, "rebuild it")
    with pytest.raises(UserError, match="no manifest.json"):
        verify_files(tmp_path, "rebuild it")
