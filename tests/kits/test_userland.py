"""Where ARM64 programs cannot run, the reason is one line naming the fix."""

from __future__ import annotations

from click.testing import CliRunner

import harness.kits.userland as userland
from harness.cli import cli


def test_not_root_without_binfmt_says_so(monkeypatch):
    monkeypatch.setattr(userland, "_binfmt_enabled", lambda: False)
    monkeypatch.setattr(userland.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(userland.os, "geteuid", lambda: 1000)
    reason = userland.arm64_blocker()
    assert "only root" in reason and "slm-bench kit userland" in reason and "\n" not in reason


def test_without_qemu_the_fix_is_the_package(monkeypatch):
    monkeypatch.setattr(userland, "_binfmt_enabled", lambda: False)
    monkeypatch.setattr(userland.shutil, "which", lambda name: None)
    monkeypatch.setattr(userland.Path, "exists", lambda self: False)
    assert "apt-get install -y qemu-user-static" in userland.arm64_blocker()


def test_emulate_arm64_refuses_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(
        userland,
        "arm64_blocker",
        lambda: "qemu-user is not installed; install it: apt-get install -y qemu-user-static",
    )
    result = CliRunner().invoke(
        cli, ["devices", "emulate", "--arch", "arm64", "--port", "0", "--root", str(tmp_path / "p")]
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [
        "error: the emulated ARM64 phone: qemu-user is not "
        "installed; install it: apt-get install -y qemu-user-static"
    ]


def test_the_debian_mirror_comes_from_the_user_or_apt(monkeypatch, tmp_path):
    import pytest

    from harness.errors import UserError

    monkeypatch.setenv("SLM_BENCH_DEBIAN_MIRROR", "http://mirror.invalid/debian")
    assert userland._mirror() == "http://mirror.invalid/debian"
    monkeypatch.delenv("SLM_BENCH_DEBIAN_MIRROR")
    ubuntu = tmp_path / "sources.list"
    ubuntu.write_text("deb http://archive.invalid/ubuntu noble main\n")
    real_path = userland.Path
    monkeypatch.setattr(
        userland,
        "Path",
        lambda p: ubuntu if p == "/etc/apt/sources.list" else real_path(tmp_path / "none"),
    )
    with pytest.raises(UserError, match="set SLM_BENCH_DEBIAN_MIRROR"):
        userland._mirror()


def test_the_emulated_phones_qemu_cpu_and_cpuinfo_follow_its_profile():
    """A profile with i8mm gets qemu's only i8mm model (max, SVE off); one without gets
    neoverse-n1; the Features line keeps only what the chosen model executes."""
    from harness.devices.emulated.adbd import load_profile
    from harness.devices.emulated.cpu import EmulatedCpu
    from harness.kits.userland import QEMU_CPU, executable_features, qemu_cpu_for

    s24 = load_profile("galaxy-s24")["cpu"]
    assert qemu_cpu_for(s24["features"]) == "max,sve=off"
    shown = executable_features(s24["features"], "max,sve=off")
    assert {"asimddp", "i8mm", "bf16"} <= set(shown) and not {"sve", "sve2", "svei8mm"} & set(shown)
    older = [f for f in s24["features"] if f != "i8mm"]
    assert qemu_cpu_for(older) == QEMU_CPU == "neoverse-n1"
    assert "asimddp" in executable_features(older, QEMU_CPU)
    assert "bf16" not in executable_features(older, QEMU_CPU)  # neoverse-n1 has no bf16
    cpuinfo = EmulatedCpu(s24, [0], shown).cpuinfo()
    assert f"Features\t: {' '.join(shown)}\n" in cpuinfo and " sve" not in cpuinfo
