"""slm-bench kit userland / tvm / prepare: their one-line refusals and what they print last."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import harness.kits.userland as userland
from harness.cli import cli, main


def test_userland_without_arm64_emulation_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(
        userland,
        "arm64_blocker",
        lambda: "qemu-user is not installed; install it: apt-get install -y qemu-user-static",
    )
    with pytest.raises(SystemExit) as stop:
        main(["kit", "userland"])
    assert stop.value.code == 2
    assert (
        capsys.readouterr().err
        == "error: qemu-user is not installed; install it: apt-get install -y qemu-user-static\n"
    )


def test_prepare_builds_each_kit_and_goes_on_without_arm64(monkeypatch):
    import harness.kits.llamacpp as llamacpp
    import harness.kits.tvm_kit as tvm_kit

    built = []
    monkeypatch.setattr(userland, "arm64_blocker", lambda: "needs root")
    monkeypatch.setattr(tvm_kit, "build_kit", lambda log: built.append("tvm"))
    monkeypatch.setattr(
        llamacpp, "build_llamacpp", lambda arch, log: built.append(arch) or f"/kits/{arch}"
    )
    result = CliRunner().invoke(cli, ["kit", "prepare"])
    assert result.exit_code == 0, result.output
    assert built == ["x86_64", "aarch64"]  # no TVM kit where ARM64 cannot run, and it says so
    assert "skipping the ARM64 userland and TVM kit: needs root" in result.output
    assert result.output.splitlines()[-1].startswith("kits ready in")
