"""glibc's malloc asks for transparent huge pages in the processes the harness starts."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from harness.engines import HUGE_PAGE_MALLOC, with_huge_page_malloc


def test_the_tunable_joins_the_users_and_never_overrides_their_choice():
    assert with_huge_page_malloc({})["GLIBC_TUNABLES"] == HUGE_PAGE_MALLOC
    mine = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "PATH": "/bin"}
    assert with_huge_page_malloc(mine) == {
        "GLIBC_TUNABLES": f"glibc.malloc.arena_max=2:{HUGE_PAGE_MALLOC}",
        "PATH": "/bin",
    }
    off = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}
    assert with_huge_page_malloc(off) == off


def _glibc_at_least(major: int, minor: int) -> bool:
    name, version = platform.libc_ver()
    return name == "glibc" and tuple(map(int, version.split(".")[:2])) >= (major, minor)


def _thp_takes_advice() -> bool:
    try:
        setting = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return False
    return "[never]" not in setting


@pytest.mark.skipif(
    not (_glibc_at_least(2, 35) and _thp_takes_advice()),
    reason="needs glibc 2.35+ (glibc.malloc.hugetlb) and transparent huge pages not set to never",
)
def test_a_child_started_with_it_gets_huge_pages_for_a_large_block():
    """What the desktop runner's KV cache gets: a 64 MiB block, written, lands on huge pages."""
    # plain malloc through ctypes: numpy's own allocator asks for huge pages by itself
    probe = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None)\n"
        "libc.malloc.restype = ctypes.c_void_p\n"
        "block = libc.malloc(64 << 20)\n"
        "ctypes.memset(block, 1, 64 << 20)\n"
        "print(next(l.split()[1] for l in open(f'/proc/{os.getpid()}/smaps_rollup')"
        " if l.startswith('AnonHugePages')))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}

    def huge_kib(env) -> int:
        return int(
            subprocess.run(
                [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
            ).stdout
        )

    assert huge_kib(with_huge_page_malloc(env)) >= 32 << 10
    if "[madvise]" in open("/sys/kernel/mm/transparent_hugepage/enabled").read():
        assert huge_kib(env) < 32 << 10  # without the tunable, malloc's pages stay small


def test_the_desktop_runner_starts_with_it(tmp_path, monkeypatch):
    from harness.devices import local
    from harness.devices.placement import Placement

    started = {}

    def popen(cmd, **kwargs):
        started.update(kwargs)
        raise RuntimeError("not started")

    monkeypatch.setattr(local.subprocess, "Popen", popen)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    placement = Placement(threads=1, cores=(0,), clusters=("big",))
    with pytest.raises(RuntimeError, match="not started"):
        local.LocalDevice().start_runner(
            "bundle", tmp_path / "prompts.jsonl", {}, 4, "speed", tmp_path / "runner.log", placement
        )
    assert started["env"]["GLIBC_TUNABLES"] == HUGE_PAGE_MALLOC
