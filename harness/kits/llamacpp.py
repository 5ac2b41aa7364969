"""llama.cpp built by the harness: for this host (shared) and statically for ARM64 phones.

The source is the llama.cpp the project already pins: the one vendored in the
``llama-cpp-python==0.3.36`` sdist, fetched with pip from the configured index and checked against
its sha256, so the phone's ``llama-bench`` and the host's ``llama_cpp`` engine run the same code.

- ``aarch64``: cross-compiled with Debian's ``aarch64-linux-gnu-gcc`` (no Android NDK) and linked
  fully static, so the binary needs nothing from the phone: no loader, no libc++, no libgomp.
  ``-march=armv8.2-a+dotprod+fp16`` (llama.cpp's ``GGML_CPU_ARM_ARCH``): every arm64 phone since
  2019's Cortex-A76 / Snapdragon 855 has it, the Galaxy S24's Cortex-X4/A720/A520 too, and both
  qemu models the emulated phone runs (``neoverse-n1``, and ``max,sve=off`` for the S24) execute
  it. ``+i8mm`` would be faster on the S24 but would exclude older phones.
- ``x86_64``: a shared Release build tuned for this CPU (``GGML_NATIVE``); the folder also holds
  ``libllama.so`` and ``libggml*.so`` for llama-cpp-python (``LLAMA_CPP_LIB_PATH=<bin dir>``).

Each kit lives in ``cache_dir("kits")/llamacpp-<arch>-<key>``, the key a sha256 over what shapes
the build: the sdist's hash, the cmake flags, the compiler's version, the targets built and the
build recipe's code (``kit_key``), not this file's bytes. A build runs in ``<name>.partial``
under a lock and is renamed into place when complete, so a killed build never looks finished (and
the next call resumes it incrementally).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from harness.cache import cache_dir, code_fingerprint, exclusive, file_sha256, mark_used
from harness.errors import UserError

LLAMA_CPP_PYTHON = "0.3.36"
SDIST = f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
VERSION = f"from llama-cpp-python {LLAMA_CPP_PYTHON}"  # the vendored llama.cpp has no release tag
ARCHES = ("x86_64", "aarch64")
TOOLS = ("llama-bench", "llama-completion")
HOST_LIBS = ("llama", "ggml", "ggml-base", "ggml-cpu")  # what llama_cpp loads (libllama + its deps)
ARM_ARCH = "armv8.2-a+dotprod+fp16"
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
CROSS_FIX = "install it: apt-get install -y gcc-aarch64-linux-gnu g++-aarch64-linux-gnu"

COMMON_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    # only the two tools and the libraries they link; no network code (nothing is downloaded)
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_COMMON=ON",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    # ggml's own thread pool on host and phone alike: the same threading code, and no libgomp
    "-DGGML_OPENMP=OFF",
    # the sdist has no git history: llama-bench's build_commit names the source instead
    f"-DLLAMA_BUILD_COMMIT=llama-cpp-python-{LLAMA_CPP_PYTHON}",
)
ARCH_FLAGS = {
    # static: the phone needs nothing but the kernel; llamafile's sgemm is off as in llama.cpp's
    # Android recipe (docs/build.md: not supported on Android)
    "aarch64": (
        "-DBUILD_SHARED_LIBS=OFF",
        "-DGGML_STATIC=ON",
        "-DCMAKE_EXE_LINKER_FLAGS=-static",
        "-DGGML_NATIVE=OFF",
        f"-DGGML_CPU_ARM_ARCH={ARM_ARCH}",
        "-DGGML_LLAMAFILE=OFF",
    ),
    # $ORIGIN: the libraries find each other in the bin dir wherever the kit folder is renamed to.
    # No AMX although -march=native enables it: on a VM whose CPUID offers it (Sapphire Rapids under
    # Firecracker, the development machine) ggml's AMX kernels die with SIGILL on every Q4 model;
    # explicit -mno-* win over -march in GCC whatever their order.
    "x86_64": (
        "-DBUILD_SHARED_LIBS=ON",
        "-DGGML_NATIVE=ON",
        "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON",
        "-DCMAKE_INSTALL_RPATH=$ORIGIN",
        f"-DCMAKE_C_FLAGS={NO_AMX}",
        f"-DCMAKE_CXX_FLAGS={NO_AMX}",
    ),
}
TOOLCHAIN = """\
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER {cc})
set(CMAKE_CXX_COMPILER {cxx})
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
"""


def llamacpp_source(log=print) -> Path:
    """vendor/llama.cpp of the pinned sdist: downloaded with pip once, sha256-checked, extracted
    once."""
    src = cache_dir("kits", "src")
    top = f"llama_cpp_python-{LLAMA_CPP_PYTHON}"
    tree = src / top / "vendor" / "llama.cpp"
    if (tree / "CMakeLists.txt").is_file():
        return tree
    with exclusive(src / ".lock"):
        if (tree / "CMakeLists.txt").is_file():
            return tree
        tarball = src / SDIST
        if not tarball.is_file():
            _download(src, log)
        if file_sha256(tarball) != SDIST_SHA256:
            tarball.unlink()
            raise UserError(
                f"{SDIST} from the package index is not the pinned one (sha256 differs); "
                "check the index pip uses (pip config list) and retry"
            )
        log(f"extracting vendor/llama.cpp from {SDIST}")
        tmp = src / "extracting"
        shutil.rmtree(tmp, ignore_errors=True)
        # the "data" filter refuses links and paths leaving the folder (Python >= 3.11.4)
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        # the binding's Python code is not needed: only llama.cpp
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(f"{top}/vendor/llama.cpp/")]
            tar.extractall(tmp, members=members, **safe)
        shutil.rmtree(src / top, ignore_errors=True)
        (tmp / top).rename(src / top)
        tmp.rmdir()
    return tree


def _download(src: Path, log) -> None:
    log(f"downloading {SDIST} (76 MB) with pip from the configured package index")
    tmp = src / "download"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary=:all:",
        f"llama-cpp-python=={LLAMA_CPP_PYTHON}",
        "-d",
        str(tmp),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not (tmp / SDIST).is_file():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(
            f"could not download llama-cpp-python=={LLAMA_CPP_PYTHON} with pip ({last[:160]}); "
            f"check network/index access, or put {SDIST} into {src} yourself"
        )
    (tmp / SDIST).rename(src / SDIST)
    shutil.rmtree(tmp, ignore_errors=True)


def _compilers(arch: str) -> tuple[str, str]:
    if arch == "x86_64" and os.uname().machine != "x86_64":
        raise UserError(
            "the x86_64 llama.cpp kit is built by this host's compiler, and this host is "
            f"{os.uname().machine}; build it on an x86_64 machine"
        )
    if arch == "aarch64":
        names = ("aarch64-linux-gnu-gcc", "aarch64-linux-gnu-g++")
    else:
        names = (os.environ.get("CC") or "cc", os.environ.get("CXX") or "c++")
    found = tuple(shutil.which(n) for n in names)
    if not all(found):
        missing = " and ".join(n for n, f in zip(names, found, strict=True) if not f)
        fix = CROSS_FIX if arch == "aarch64" else "install it: apt-get install -y build-essential"
        raise UserError(
            f"building llama.cpp for {arch} needs the compiler {missing}, which is not on PATH; "
            + fix
        )
    return found  # type: ignore[return-value]


def _cpu_identity() -> str:
    """GGML_NATIVE tunes the host build to this CPU: a kit from another CPU must not be a hit."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return os.uname().machine
    model = re.search(r"^model name\s*:\s*(.*)$", info, re.M)
    flags = re.search(r"^flags\s*:\s*(.*)$", info, re.M)
    flags_hash = hashlib.sha256((flags[1] if flags else "").encode()).hexdigest()[:16]
    return f"{model[1] if model else '?'} {flags_hash}"


def kit_flags(arch: str, cc: str, cxx: str) -> list[str]:
    if arch not in ARCHES:
        raise UserError(f"llama.cpp kits are built for {' or '.join(ARCHES)}, not {arch!r}")
    flags = [*COMMON_FLAGS, *ARCH_FLAGS[arch]]
    if arch == "x86_64":
        flags += [f"-DCMAKE_C_COMPILER={cc}", f"-DCMAKE_CXX_COMPILER={cxx}"]
    return flags


def kit_targets(arch: str) -> list[str]:
    """The CMake targets built: the tools, and for the host the libraries llama_cpp loads."""
    return [*TOOLS, *(HOST_LIBS if arch == "x86_64" else ())]


@functools.cache  # the code a process runs does not change under it
def recipe_fingerprint() -> str:
    """The build recipe's code: ``_build``, which writes the toolchain file, configures, builds
    and installs (copies the tools and libraries into the kit and writes kit.json). Not the
    module: ``_run`` only runs a step and shows its progress, the download/extract is covered by
    the sdist's sha256, and the flags, targets and toolchain template are keyed as values. Its
    ``log(...)`` lines say what happens and are left out, so rewording one, a comment or a
    reformat rebuilds nothing (20 minutes on 2 cores); a code change to ``_build`` does."""
    return code_fingerprint([_build], ignore_calls={"log"})


def kit_key(arch: str, flags: list[str], compiler_version: str) -> str:
    payload = {
        "sdist": SDIST_SHA256,
        "arch": arch,
        "flags": flags,
        "compiler": compiler_version,
        "cpu": _cpu_identity() if arch == "x86_64" else ARM_ARCH,
        "targets": kit_targets(arch),
        "toolchain": TOOLCHAIN if arch == "aarch64" else None,
        "recipe": recipe_fingerprint(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def kit_path(arch: str) -> tuple[Path, list[str], tuple[str, str]]:
    """Where the ``arch`` kit is (or will be), its flags and compilers; builds nothing."""
    cc, cxx = _compilers(arch)
    flags = kit_flags(arch, cc, cxx)
    version = subprocess.run(
        [cxx, "--version"], capture_output=True, text=True
    ).stdout.splitlines()[:1]
    key = kit_key(arch, flags, "".join(version))
    return cache_dir("kits") / f"llamacpp-{arch}-{key}", flags, (cc, cxx)


def built_kit(arch: str) -> Path | None:
    """The bin dir of an already built kit for ``arch``, or None (never builds)."""
    try:
        folder = kit_path(arch)[0]
    except UserError:
        return None
    return folder / "bin" if (folder / "kit.json").is_file() else None


def build_llamacpp(arch: str, log=print, *, announce: str | None = None) -> Path:
    """The bin dir of llama.cpp's ``llama-bench`` and ``llama-completion`` for ``arch`` (x86_64
    also has ``libllama.so`` and ``libggml*.so``): from the cache, else built (minutes), after
    logging ``announce`` if given."""
    folder, flags, (cc, cxx) = kit_path(arch)
    if (folder / "kit.json").is_file():
        mark_used(folder)
        return folder / "bin"
    if announce:
        log(announce)
    if not shutil.which("cmake"):
        raise UserError(
            "building llama.cpp needs cmake, which is not on PATH; "
            "install it: apt-get install -y cmake"
        )
    source = llamacpp_source(log)
    with exclusive(folder.with_name(folder.name + ".lock")):
        if not (folder / "kit.json").is_file():  # another process may have built it while we waited
            _build(folder, arch, flags, cc, cxx, source, log)
    return folder / "bin"


def _build(folder: Path, arch: str, flags: list[str], cc: str, cxx: str, source: Path, log) -> None:
    from harness.engines import host_cores

    partial = folder.with_name(folder.name + ".partial")
    build, out = partial / "build", partial / "out"
    build.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    (out / "bin").mkdir(parents=True)
    log_file = partial / "build.log"
    if arch == "aarch64":
        (partial / "toolchain.cmake").write_text(TOOLCHAIN.format(cc=cc, cxx=cxx))
        flags = [f"-DCMAKE_TOOLCHAIN_FILE={partial / 'toolchain.cmake'}", *flags]
    targets = kit_targets(arch)
    t0 = time.perf_counter()
    what = f"static {ARM_ARCH}" if arch == "aarch64" else "shared, -march=native"
    log(f"configuring llama.cpp {VERSION} for {arch} ({what}) in {partial}")
    _run(["cmake", "-S", str(source), "-B", str(build), *flags], log_file, "configure", log)
    jobs = host_cores()
    log(f"building targets {', '.join(targets)} with -j{jobs} (minutes; log: {log_file})")
    _run(
        ["cmake", "--build", str(build), "-j", str(jobs), "--target", *targets],
        log_file,
        "build",
        log,
    )
    for path in sorted((build / "bin").iterdir()):  # CMake puts tools and shared libraries in bin/
        if path.name in TOOLS or (arch == "x86_64" and ".so" in path.name):
            shutil.copy2(path, out / "bin" / path.name, follow_symlinks=False)
    missing = [t for t in TOOLS if not (out / "bin" / t).is_file()]
    if missing:
        raise UserError(
            f"the llama.cpp build finished without {', '.join(missing)}; see {log_file}"
        )
    seconds = time.perf_counter() - t0
    shutil.copy2(log_file, out / "build.log")
    if arch == "aarch64":
        shutil.copy2(partial / "toolchain.cmake", out / "toolchain.cmake")  # kept with the kit
    sizes = {
        p.name: p.stat().st_size for p in sorted((out / "bin").iterdir()) if not p.is_symlink()
    }
    info = {
        "arch": arch,
        "source": f"{SDIST} sha256:{SDIST_SHA256}",
        "flags": flags,
        "compilers": [cc, cxx],
        "targets": targets,
        "recipe": recipe_fingerprint(),  # the build code's fingerprint, part of the folder's key
        "build_s": round(seconds, 1),
        "files": sizes,
    }
    (out / "kit.json").write_text(json.dumps(info, indent=1))  # written last: the kit is complete
    out.rename(folder)
    shutil.rmtree(partial, ignore_errors=True)
    log(f"llama.cpp for {arch} done in {seconds:.0f} s: {folder / 'bin'}")


def _run(cmd: list[str], log_file: Path, step: str, log) -> None:
    """Run a cmake step, its output appended to the build log; the build's percent (make's
    ``[ 45%]``) goes to a progress meter: a bar with time left, or a line every 10%."""
    from contextlib import nullcontext

    from harness.progress import meter

    pct = meter(100, "building llama.cpp", "%") if step == "build" else nullcontext()
    with open(log_file, "a", encoding="utf-8", buffering=1) as f, pct as done:  # line-buffered
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            f.write(line)
            m = re.match(r"\[\s*(\d+)%\]", line)
            if m and done is not None:
                done.update(int(m[1]))
        code = proc.wait()
        if code != 0:  # raised inside the meter: it ends with where the build stopped
            raise UserError(
                f"llama.cpp {step} failed (exit {code}); see the last lines of {log_file} "
                "(rerun resumes the build)"
            )
