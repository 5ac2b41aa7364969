"""Device profiles are data, validated on load."""

from __future__ import annotations

import pytest

from harness.devices.profiles import load_profiles, match_profile
from harness.errors import UserError


def test_shipped_profiles_load_and_match():
    profiles = load_profiles()
    assert {"desktop-cpu", "desktop-cuda", "galaxy-s24", "android-emulator"} <= set(profiles)
    assert (
        match_profile(
            "adb",
            {
                "ro.product.brand": "samsung",
                "ro.product.model": "SM-S921B",
                "ro.product.cpu.abi": "arm64-v8a",
            },
        ).name
        == "galaxy-s24"
    )


def test_malformed_and_invalid_profiles_are_one_line(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "phone.yaml").write_text("name: phone\nmatch: {a: b\n")
    with pytest.raises(UserError, match=r"phone.yaml line \d+: malformed YAML; fix the file"):
        load_profiles(bad)
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "phone.yaml").write_text(
        "name: phone\ndescription: x\nkind: usb\ncompile_target: llvm\n"
    )
    with pytest.raises(
        UserError, match=r"phone.yaml: kind: String should match pattern .*; fix the profile"
    ):
        load_profiles(wrong)


def test_every_profile_number_states_its_source_inside_the_project():
    from harness.devices.profiles import PROFILE_DIR

    for name, profile in load_profiles().items():
        for number, source in (
            ("memory_budget_bytes", "memory_budget_source"),
            ("memory_total_bytes", "memory_total_source"),
            ("memory_bandwidth_gbps", "bandwidth_source"),
        ):
            if getattr(profile, number) is not None:
                assert getattr(profile, source), f"{name}: {number} has no {source}"
        if profile.memory_budget_bytes and profile.memory_total_bytes:
            assert profile.memory_budget_bytes < profile.memory_total_bytes, name
    for path in PROFILE_DIR.glob("*.yaml"):
        text = path.read_text()
        assert "shared/" not in text and "/work/" not in text, (
            f"{path.name} cites a file outside the project"
        )


def test_galaxy_s24_is_an_exynos_2400_with_an_xclipse_gpu_and_8_gb():
    s24 = load_profiles()["galaxy-s24"]
    assert "Exynos 2400" in s24.soc and "Xclipse 940" in s24.gpu and "RDNA" in s24.gpu
    assert "ro.hardware.egl" not in s24.getprop  # never "mali": the Exynos 2400 has no Mali GPU
    assert "mali" not in " ".join(s24.getprop.values()).lower()
    assert (s24.memory_budget_bytes, s24.memory_total_bytes) == (4_000_000_000, 8_000_000_000)
    assert "8533" in s24.bandwidth_source and "68.3" in s24.bandwidth_source


def test_the_emulated_phone_reports_its_profile_ram_as_meminfo(tmp_path):
    from harness.devices.adb import _meminfo
    from harness.devices.emulated.adbd import load_profile
    from harness.devices.emulated.services import DeviceState

    state = DeviceState(load_profile("galaxy-s24"), tmp_path / "phone")
    assert _meminfo(state.meminfo())["MemTotal"] == 8_000_000_000
