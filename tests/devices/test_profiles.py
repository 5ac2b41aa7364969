"""Device profiles are data, validated on load."""

from __future__ import annotations

import pytest

from harness.devices.profiles import load_profiles, match_profile
from harness.errors import UserError


def test_shipped_profiles_load_and_match():
    profiles = load_profiles()
    assert {"desktop-cpu", "desktop-cuda", "galaxy-s24", "android-emulator"} <= set(profiles)
    assert match_profile("adb", {"ro.product.brand": "samsung", "ro.product.model": "SM-S921B", "ro.product.cpu.abi": "arm64-v8a"}).name == "galaxy-s24"


def test_malformed_and_invalid_profiles_are_one_line(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "phone.yaml").write_text("name: phone\nmatch: {a: b\n")
    with pytest.raises(UserError, match=r"phone.yaml line \d+: malformed YAML; fix the file"):
        load_profiles(bad)
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "phone.yaml").write_text("name: phone\ndescription: x\nkind: usb\ncompile_target: llvm\n")
    with pytest.raises(UserError, match=r"phone.yaml: kind: String should match pattern .*; fix the profile"):
        load_profiles(wrong)
