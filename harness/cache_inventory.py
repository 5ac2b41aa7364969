"""What is in the cache (``harness.cache``), how big, when last used, and whether the current code
would still use it; and pruning what it would not, or what has not been used for a while.

Entries, one per row:

- ``kits/``: each llama.cpp kit, the llama.cpp source, the ARM64 userland, the TVM kit's base
  layers and each of its app layers. A kit's folder name carries its key, so whether the current
  code would use it is exact: the name is compared with the one the current code computes
  (``kit_path``, ``base_folder``, ``userland_path``, ``app_layer_name``), which builds nothing.
- ``bundles/``: a bundle's key hashes the model's weights and config, which no listing can
  enumerate; so each bundle's manifest records, at build time, the fingerprint of the engine code
  that built it (``engine_hash``) and the engine's version, and those are compared with the
  current ones (``harness.engines.engine_code_hash``, the installed distribution).
- everything else (``weights/``, ``runners/``, ``gguf-meta/``, judgements, ...) is data, not
  built by code: only its age can make it go. ``locks/`` (device locks) is one row, never pruned.

Last use is an entry's mtime: kits, layers, bundles and weights are touched when used from the
cache (``harness.cache.mark_used``); atime is unreliable. An unfinished build (``*.partial``, a
``build_atomically`` work folder) is dated by its newest file.

Pruning never removes an entry whose build lock is held, nor anything used within
``keep_recent`` (another checkout of the harness, with other code, shares this cache and may be
using what this one calls stale).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import stat
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from harness.cache import cache_dir
from harness.errors import UserError

CURRENT, STALE, UNKNOWN, PARTIAL, BUILDING, DATA, LOCKS = (
    "current",
    "stale",
    "unknown",
    "partial",
    "building",
    "data",
    "locks",
)
# The distribution whose version a bundle's key holds, by engine (manifest "engine").
ENGINE_DISTS = {"tvm": "apache-tvm", "llama.cpp": "llama-cpp-python"}
# ``name.partial`` (kits), ``name.pruning`` (removed halfway), ``name-<key>.XXXXXXXX`` (the work
# folder of ``build_atomically``: mkdtemp's 8 characters after the entry's name)
UNFINISHED = re.compile(r".+\.(partial|pruning)|.+-[0-9a-f]{12,16}\.[a-z0-9_]{8}")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass
class Entry:
    kind: str  # the top folder: kits, bundles, weights, ...
    name: str  # path under the cache root
    path: Path
    bytes: int
    last_used: float  # epoch seconds
    state: str  # current, stale, unknown, partial, building, data, locks
    why: str = ""  # what makes it stale or unknown
    lock: Path | None = None  # the build lock that guards it, if any

    def as_json(self) -> dict:
        d = asdict(self)
        d.update(path=str(self.path), lock=str(self.lock) if self.lock else None)
        d["last_used"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.last_used))
        return d


def scan(root: Path | None = None) -> list[Entry]:
    """Every entry of the cache, sorted by kind then name."""
    root = root or cache_dir()
    current = _CurrentKeys()
    entries: list[Entry] = []
    for top in sorted(root.iterdir()):
        if top.is_file() or top.is_symlink():
            entries.append(_entry("other", root, top, DATA))
        elif top.name == "locks":
            entries.append(_entry("locks", root, top, LOCKS))
        elif top.name == "kits":
            entries += _kits(root, top, current)
        elif top.name == "bundles":
            # a bundle's build lock (name.lock, harness.engines.tvm.compile) goes with its bundle
            bundles = [p for p in sorted(top.iterdir()) if not p.name.endswith(".lock")]
            entries += [_bundle(root, p, current) for p in bundles]
        else:
            entries += [_entry(top.name, root, p, DATA) for p in sorted(top.iterdir())]
    return entries


@dataclass
class Removal:
    entry: Entry
    reason: str


def plan_prune(
    entries: list[Entry],
    *,
    stale: bool = True,
    older_than: float | None = None,
    keep_recent: float = 86400,
    now: float | None = None,
) -> list[Removal]:
    """What prune removes: with ``stale``, entries the current code would not use (and unfinished
    builds nobody touched) unused for ``keep_recent`` seconds; with ``older_than``, any entry
    unused for that long. Never an entry being built, nor the device locks."""
    now = time.time() if now is None else now
    out = []
    for e in entries:
        idle = now - e.last_used
        if e.state in (BUILDING, LOCKS) or _locked(e.lock):
            continue
        if stale and idle >= keep_recent and e.state in (STALE, PARTIAL):
            reason = e.why if e.state == STALE else "unfinished build, untouched"
            out.append(Removal(e, f"{reason}; last used {_ago(idle)}"))
        elif older_than is not None and idle >= older_than:
            out.append(Removal(e, f"last used {_ago(idle)}"))
    return out


def prune(removals: list[Removal]) -> int:
    """Remove what ``plan_prune`` chose; bytes freed. Each entry is renamed aside first, so no
    reader ever sees half of one, and skipped if its build lock was taken meanwhile."""
    freed = 0
    for r in removals:
        e = r.entry
        with _try_lock(e.lock) as held:
            if not held or not (e.path.exists() or e.path.is_symlink()):
                continue
            aside = e.path.with_name(e.path.name + ".pruning") if e.path.is_dir() else e.path
            if aside != e.path:
                os.replace(e.path, aside)
                shutil.rmtree(aside, ignore_errors=True)
            else:
                e.path.unlink(missing_ok=True)
            # a stale kit's lock: no current code opens it again (a current one's stays)
            if e.lock and e.state == STALE:
                e.lock.unlink(missing_ok=True)
        freed += e.bytes
    return freed


def parse_age(text: str) -> float:
    """Seconds in ``30d``, ``12h``, ``90m``, ``2w``, ``45s`` or ``0``."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not m or (not m[2] and float(m[1]) != 0):
        raise UserError(f"{text!r} is not an age; write a number and a unit: 30d, 12h, 90m, 2w")
    return float(m[1]) * UNITS[m[2] or "s"]


def human_bytes(n: float) -> str:
    """1000-based, as the harness writes sizes elsewhere: 950 B, 12.3 MB, 1.6 GB."""
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1000
        if n < 1000 or unit == "GB":
            break
    return f"{n:.1f} {unit}"


def _ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f}{unit} ago"
    return "just now"


def format_table(entries: list[Entry], root: Path, now: float | None = None) -> str:
    """The listing: per kind, one row per entry (size, last use, state) and the kind's total."""
    now = time.time() if now is None else now
    total = sum(e.bytes for e in entries)
    lines = [f"{root}: {human_bytes(total)} in {len(entries)} entries"]
    width = max((len(e.name) for e in entries), default=10)
    kinds = sorted({e.kind for e in entries}, key=lambda k: (k not in ("kits", "bundles"), k))
    for kind in kinds:
        rows = [e for e in entries if e.kind == kind]
        size = human_bytes(sum(e.bytes for e in rows))
        lines += ["", f"{kind}: {size} in {len(rows)}"]
        for e in rows:
            state = f"{e.state}: {e.why}" if e.why else e.state
            age = _ago(now - e.last_used)
            lines.append(f"  {e.name:<{width}}  {human_bytes(e.bytes):>9}  {age:>9}  {state}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
class _CurrentKeys:
    """The names and fingerprints the current code computes, each at most once per scan."""

    def __init__(self):
        self._memo: dict[str, object] = {}

    def _get(self, what: str, compute):
        if what not in self._memo:
            try:
                self._memo[what] = compute()
            except UserError as exc:  # no compiler, a package missing: cannot tell here
                self._memo[what] = exc
        return self._memo[what]

    def llamacpp(self, arch: str):
        from harness.kits import llamacpp

        return self._get(f"llamacpp-{arch}", lambda: llamacpp.kit_path(arch)[0].name)

    def tvm_base(self):
        from harness.kits import tvm_kit, userland

        return self._get(
            "tvm-base",
            lambda: tvm_kit.base_folder(userland.userland_path(), tvm_kit.site_pins()).name,
        )

    def tvm_app(self):
        from harness.kits import tvm_kit

        return self._get("tvm-app", tvm_kit.app_layer_name)

    def userland(self):
        from harness.kits import userland

        return self._get("userland", lambda: userland.userland_path().name)

    def engine(self, name: str):
        from harness.engines import ENGINE_CODE, engine_code_hash

        if name not in ENGINE_CODE:
            return UserError(f"engine {name!r} unknown to this code")
        return self._get(f"engine-{name}", lambda: engine_code_hash(name))

    def dist_version(self, dist: str) -> str | None:
        def version():
            try:
                return metadata.version(dist)
            except metadata.PackageNotFoundError:
                return None

        return self._get(f"dist-{dist}", version)


def _kits(root: Path, kits: Path, current: _CurrentKeys) -> list[Entry]:
    out = []
    for p in sorted(kits.iterdir()):
        name = p.name
        if name.endswith(".lock") and p.is_file():
            continue  # a kit's build lock: goes with its kit
        if name == "tvm-kit-app" and p.is_dir():
            for layer in sorted(p.iterdir()):
                if layer.name.endswith(".partial"):
                    out.append(_entry("kits", root, layer, PARTIAL))
                else:
                    out.append(_compare(root, layer, current.tvm_app(), "app layer"))
            continue
        if UNFINISHED.fullmatch(name):
            base = name.rsplit(".", 1)[0]
            lock = kits / f"{base}.lock" if base.startswith("llamacpp-") else None
            out.append(_entry("kits", root, p, BUILDING if _locked(lock) else PARTIAL, lock=lock))
        elif name == "src":
            from harness.kits.llamacpp import LLAMA_CPP_PYTHON, SDIST

            lock = p / ".lock"
            has = (p / f"llama_cpp_python-{LLAMA_CPP_PYTHON}").is_dir() or (p / SDIST).is_file()
            state, why = (
                (CURRENT, "") if has else (STALE, f"not llama-cpp-python {LLAMA_CPP_PYTHON}")
            )
            out.append(_entry("kits", root, p, BUILDING if _locked(lock) else state, why, lock))
        elif m := re.fullmatch(r"llamacpp-(\w+)-[0-9a-f]{16}", name):
            lock = kits / f"{name}.lock"
            e = _compare(root, p, current.llamacpp(m[1]), "kit", lock=lock)
            out.append(e)
        elif name.startswith("tvm-kit-"):
            out.append(_compare(root, p, current.tvm_base(), "TVM kit base"))
        elif name.startswith("arm64-userland-"):
            out.append(_compare(root, p, current.userland(), "userland"))
        else:
            out.append(_entry("kits", root, p, UNKNOWN, "not a kit this code knows"))
    return out


def _compare(root: Path, path: Path, want, what: str, lock: Path | None = None) -> Entry:
    """A kit entry: current if its name is the one the current code computes."""
    if _locked(lock):
        return _entry("kits", root, path, BUILDING, lock=lock)
    if isinstance(want, Exception):
        return _entry("kits", root, path, UNKNOWN, f"current key unknown here: {want}", lock)
    if path.name == want:
        return _entry("kits", root, path, CURRENT, lock=lock)
    return _entry("kits", root, path, STALE, f"this code's {what} is {want}", lock)


def _bundle(root: Path, path: Path, current: _CurrentKeys) -> Entry:
    manifest = path / "manifest.json"
    if UNFINISHED.fullmatch(path.name) or not manifest.is_file():
        lock = path.with_name(path.name.rsplit(".", 1)[0] + ".lock")
        return _entry("bundles", root, path, BUILDING if _locked(lock) else PARTIAL, lock=lock)
    try:
        info = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError):
        return _entry("bundles", root, path, STALE, "unreadable manifest.json")
    engine = info.get("engine")
    want = current.engine(engine) if engine else UserError("names no engine")
    if isinstance(want, Exception):
        return _entry("bundles", root, path, STALE, str(want))
    if info.get("engine_hash") != want:
        return _entry("bundles", root, path, STALE, f"built by other {engine} engine code")
    version = current.dist_version(ENGINE_DISTS.get(engine, ""))
    if version and info.get("engine_version") != version:
        return _entry(
            "bundles", root, path, STALE, f"{engine} {info.get('engine_version')}, not {version}"
        )
    return _entry("bundles", root, path, CURRENT)


def _entry(
    kind: str, root: Path, path: Path, state: str, why: str = "", lock: Path | None = None
) -> Entry:
    size, newest = _usage(path)
    own = path.lstat().st_mtime
    last = newest if state in (PARTIAL, BUILDING) else own
    return Entry(kind, path.relative_to(root).as_posix(), path, size, last, state, why, lock)


def _usage(path: Path) -> tuple[int, float]:
    """Bytes of the files under ``path`` (their sizes, as ``du --apparent-size``; links not
    followed) and the newest mtime there."""
    st = path.lstat()
    if not path.is_dir() or path.is_symlink():
        return (st.st_size if path.is_file() else 0), st.st_mtime
    size, newest = 0, st.st_mtime
    for dirpath, dirnames, filenames in os.walk(path):
        for name in (*dirnames, *filenames):
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                size += st.st_size
            newest = max(newest, st.st_mtime)
    return size, newest


def _locked(lock: Path | None) -> bool:
    """Whether another process holds ``lock`` (an flock'd build lock) now."""
    with _try_lock(lock) as held:
        return not held


@contextmanager
def _try_lock(lock: Path | None):
    """Holds ``lock`` (without creating it) while the block runs if nobody else holds it; yields
    whether it could (no lock file: nobody holds it)."""
    if lock is None or not lock.is_file():
        yield True
        return
    fd = os.open(lock, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
