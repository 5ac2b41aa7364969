"""llama.cpp kits: cache key and hit, the atomic build folder, one-line errors, and (slow) a real
static aarch64 build run under qemu-user."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.kits import llamacpp

QUIET = {"log": lambda *_: None}
QEMU = shutil.which("qemu-aarch64-static")
REAL_RUN = llamacpp._run  # tests replace the cmake steps; this one is exercised on its own
HAS_CROSS = bool(shutil.which("aarch64-linux-gnu-gcc") and shutil.which("aarch64-linux-gnu-g++"))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SLM_BENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def fake_cmake(built: list, fail_step: str | None = None):
    """Stands in for the two cmake steps: the build step leaves what CMake would in build/bin."""

    def run(cmd, log_file, step, log):
        log_file.write_text(
            log_file.read_text() + f"$ {' '.join(cmd)}\n"
            if log_file.exists()
            else f"$ {' '.join(cmd)}\n"
        )
        if step == fail_step:
            raise UserError(
                f"llama.cpp {step} failed (exit 2); see the last "
                f"lines of {log_file} (rerun resumes the build)"
            )
        if step == "build":
            bin_dir = Path(cmd[2]) / "bin"
            bin_dir.mkdir(parents=True, exist_ok=True)
            for name in (*llamacpp.TOOLS, "libllama.so", "libggml-base.so", "test-tokenizer-0"):
                (bin_dir / name).write_bytes(b"\x7fELF fake")
            built.append(cmd)

    return run


def test_a_second_call_is_a_cache_hit_and_the_key_follows_the_inputs(cache, monkeypatch):
    built = []
    monkeypatch.setattr(llamacpp, "_run", fake_cmake(built))
    monkeypatch.setattr(llamacpp, "llamacpp_source", lambda log: cache / "src")
    bin_dir = llamacpp.build_llamacpp("x86_64", **QUIET)
    assert len(built) == 1 and bin_dir.parent.name.startswith("llamacpp-x86_64-")
    assert "--target llama-bench llama-completion llama ggml ggml-base ggml-cpu" in " ".join(
        built[0]
    )
    assert sorted(p.name for p in bin_dir.iterdir()) == [
        "libggml-base.so",
        "libllama.so",
        "llama-bench",
        "llama-completion",
    ]
    # built aside, renamed into place, work tree removed
    assert not list(cache.glob("kits/*.partial"))
    os.utime(bin_dir.parent, (0, 0))
    t0 = time.perf_counter()
    assert llamacpp.build_llamacpp("x86_64", **QUIET) == bin_dir and len(built) == 1
    assert time.perf_counter() - t0 < 1.0
    assert bin_dir.parent.stat().st_mtime > time.time() - 60  # a hit is a use: its last use moves
    assert llamacpp.built_kit("x86_64") == bin_dir
    # the key: same inputs -> same key; any flag, the compiler or the arch -> another kit
    flags = llamacpp.kit_flags("x86_64", "cc", "c++")
    key = llamacpp.kit_key("x86_64", flags, "gcc 12")
    assert llamacpp.kit_key("x86_64", list(flags), "gcc 12") == key
    assert (
        len(
            {
                key,
                llamacpp.kit_key("x86_64", [*flags, "-DGGML_AVX512=ON"], "gcc 12"),
                llamacpp.kit_key("x86_64", flags, "gcc 13"),
                llamacpp.kit_key("aarch64", flags, "gcc 12"),
            }
        )
        == 4
    )


def test_a_killed_or_failed_build_never_looks_complete(cache, monkeypatch):
    built = []
    monkeypatch.setattr(llamacpp, "llamacpp_source", lambda log: cache / "src")
    monkeypatch.setattr(llamacpp, "_run", fake_cmake(built, fail_step="build"))
    with pytest.raises(
        UserError,
        match=r"llama.cpp build failed \(exit 2\); see the last lines of .*\.partial/build.log",
    ):
        llamacpp.build_llamacpp("x86_64", **QUIET)
    (partial,) = cache.glob("kits/llamacpp-x86_64-*.partial")
    assert (partial / "build.log").is_file() and llamacpp.built_kit("x86_64") is None
    monkeypatch.setattr(llamacpp, "_run", fake_cmake(built))  # the rerun resumes in the same folder
    bin_dir = llamacpp.build_llamacpp("x86_64", **QUIET)
    assert (
        bin_dir.parent == partial.with_name(partial.name.removesuffix(".partial"))
        and not partial.exists()
    )
    assert "$ cmake" in (bin_dir.parent / "build.log").read_text()
    # the real step runner: output kept, failure names the log
    log_file = partial.parent / "step.log"
    with pytest.raises(
        UserError, match=r"llama.cpp build failed \(exit 2\); see the last lines of .*step.log"
    ):
        REAL_RUN(
            ["sh", "-c", "echo '[ 50%] Building C object'; echo boom >&2; exit 2"],
            log_file,
            "build",
            QUIET["log"],
        )
    assert "boom" in log_file.read_text()


def test_missing_cross_compiler_and_cmake_are_one_line(cache, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(
        UserError,
        match=(
            r"needs the compiler aarch64-linux-gnu-gcc and aarch64-linux-gnu-g\+\+, .*; "
            r"install it: apt-get install -y gcc-aarch64-linux-gnu g\+\+-aarch64-linux-gnu$"
        ),
    ):
        llamacpp.build_llamacpp("aarch64", **QUIET)
    for name in ("cc", "c++"):  # compilers, but no cmake
        (empty / name).symlink_to(shutil.which(name, path="/usr/bin:/bin"))
    with pytest.raises(
        UserError, match=r"needs cmake, which is not on PATH; install it: apt-get install -y cmake"
    ):
        llamacpp.build_llamacpp("x86_64", **QUIET)
    with pytest.raises(UserError, match=r"built for x86_64 or aarch64, not 'riscv64'"):
        llamacpp.kit_flags("riscv64", "cc", "c++")


def test_the_sdist_is_checked_and_a_failed_download_says_so(cache, monkeypatch):
    src = cache / "kits" / "src"
    src.mkdir(parents=True)
    (src / llamacpp.SDIST).write_bytes(b"not the pinned tarball")
    with pytest.raises(UserError, match=r"is not the pinned one \(sha256 differs\)"):
        llamacpp.llamacpp_source(**QUIET)
    assert not (src / llamacpp.SDIST).exists()  # a wrong file is not kept

    def no_index(cmd, **kw):
        return subprocess.CompletedProcess(
            cmd, 1, "", "ERROR: No matching distribution found for llama-cpp-python==0.3.36\n"
        )

    monkeypatch.setattr(llamacpp.subprocess, "run", no_index)
    with pytest.raises(
        UserError,
        match=(
            r"could not download llama-cpp-python==0.3.36 with pip "
            r"\(ERROR: No matching distribution .*\); check network"
        ),
    ):
        llamacpp.llamacpp_source(**QUIET)


def elf_facts(path: Path) -> dict:
    """ELF class/machine and program header types, read from the file (no readelf needed)."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1  # 64-bit little-endian
    machine = int.from_bytes(data[18:20], "little")
    phoff, phentsize, phnum = (
        int.from_bytes(data[32:40], "little"),
        int.from_bytes(data[54:56], "little"),
        int.from_bytes(data[56:58], "little"),
    )
    types = {
        int.from_bytes(data[phoff + i * phentsize : phoff + i * phentsize + 4], "little")
        for i in range(phnum)
    }
    return {"machine": machine, "interp": 3 in types, "dynamic": 2 in types}


@pytest.mark.slow
@pytest.mark.skipif(
    not HAS_CROSS,
    reason=(
        "aarch64 cross compiler absent (apt-get install "
        "-y gcc-aarch64-linux-gnu g++-aarch64-linux-gnu)"
    ),
)
@pytest.mark.skipif(
    QEMU is None,
    reason=(
        "qemu-aarch64-static absent, so an aarch64 binary "
        "cannot run here (apt-get install -y qemu-user-static)"
    ),
)
def test_the_aarch64_kit_is_static_and_runs_under_qemu():
    bin_dir = llamacpp.build_llamacpp("aarch64")  # minutes the first time, then cached
    for tool in llamacpp.TOOLS:
        facts = elf_facts(bin_dir / tool)
        # AArch64, no loader, no .so
        assert facts == {"machine": 0xB7, "interp": False, "dynamic": False}, tool
    # nothing else to push
    assert sorted(p.name for p in bin_dir.iterdir()) == sorted(llamacpp.TOOLS)
    if shutil.which("file"):
        described = subprocess.run(
            ["file", "-b", str(bin_dir / "llama-bench")], capture_output=True, text=True
        ).stdout
        assert "ARM aarch64" in described and "statically linked" in described
    # neoverse-n1: Armv8.2-A + dotprod + fp16, the floor the kit targets (and the emulated
    # phone's CPU)
    bench = subprocess.run(
        [QEMU, "-cpu", "neoverse-n1", str(bin_dir / "llama-bench"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bench.returncode == 0 and "usage:" in bench.stdout and "-d, --n-depth" in bench.stdout
    version = subprocess.run(
        [QEMU, "-cpu", "neoverse-n1", str(bin_dir / "llama-completion"), "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert version.returncode == 0 and "llama-cpp-python-0.3.36" in version.stdout + version.stderr


def test_the_build_step_shows_its_percent_on_a_progress_meter(tmp_path, monkeypatch, capsys):
    import re

    from harness import progress

    monkeypatch.setattr(progress, "EVERY_S", 0)  # a line every 10%, however fast the build
    # make -j prints its percents a little out of order (47 then 45): the meter never goes back
    percents = [5, 12, 25, 31, 47, 45, 52, 68, 77, 83, 95, 100]
    script = "".join(f"echo '[{p:3d}%] Building CXX object'; " for p in percents)
    REAL_RUN(["sh", "-c", script], tmp_path / "build.log", "build", QUIET["log"])
    lines = capsys.readouterr().err.splitlines()
    shown = [re.fullmatch(r"building llama\.cpp: (\d+)%(, .* left)?", line) for line in lines[:-1]]
    assert [int(m[1]) for m in shown] == [12, 25, 31, 47, 52, 68, 77, 83, 95]
    assert re.fullmatch(r"building llama\.cpp: 100% in [\d.]+ s", lines[-1])
    assert "[ 47%] Building CXX object" in (tmp_path / "build.log").read_text()
    with pytest.raises(UserError, match="llama.cpp build failed"):  # where it stopped is said
        REAL_RUN(["sh", "-c", "echo '[ 50%] x'; exit 2"], tmp_path / "b.log", "build", print)
    last = capsys.readouterr().err.splitlines()[-1]
    assert re.fullmatch(r"building llama\.cpp: stopped at 50% after [\d.]+ s", last)
    REAL_RUN(["sh", "-c", "echo configured"], tmp_path / "c.log", "configure", print)
    assert capsys.readouterr().err == ""  # configuring has no percent to show
