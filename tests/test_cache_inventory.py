"""harness.cache_inventory on a constructed cache: what the listing says of each entry, and what
prune removes and keeps (stale, unfinished, locked, recent, data, device locks)."""

from __future__ import annotations

import fcntl
import json
import os
import time
from importlib import metadata
from pathlib import Path

import pytest

from harness import cache_inventory as inv
from harness.engines import engine_code_hash
from harness.errors import UserError
from harness.kits import llamacpp, tvm_kit

DAY = 86400
NOW = time.time()
CURRENT_KIT = "llamacpp-x86_64-" + "a" * 16


def age(path: Path, days: float) -> Path:
    t = NOW - days * DAY
    os.utime(path, (t, t))
    return path


def folder(path: Path, size: int = 1000, days: float = 2) -> Path:
    path.mkdir(parents=True)
    (path / "data.bin").write_bytes(b"x" * size)
    age(path / "data.bin", days)
    return age(path, days)


def bundle(root: Path, name: str, engine: str, engine_hash: str | None, days: float = 2):
    path = root / "bundles" / name
    path.mkdir(parents=True)
    manifest = {"engine": engine, "engine_version": _version(engine)}
    if engine_hash is not None:
        manifest["engine_hash"] = engine_hash
    (path / "manifest.json").write_text(json.dumps(manifest))
    return age(path, days)


def _version(engine: str) -> str:
    try:
        return metadata.version(inv.ENGINE_DISTS[engine])
    except metadata.PackageNotFoundError:
        return "0"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache with one entry of each sort; the current keys are fixed names (no compiler run)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("SLM_BENCH_CACHE", str(root))

    def kit_path(arch):
        if arch == "aarch64":
            raise UserError("no aarch64-linux-gnu-g++ here")
        return root / "kits" / CURRENT_KIT, [], ("cc", "c++")

    monkeypatch.setattr(llamacpp, "kit_path", kit_path)
    monkeypatch.setattr(tvm_kit, "site_pins", lambda: [])
    monkeypatch.setattr(tvm_kit, "base_folder", lambda u, p: root / "kits" / "tvm-kit-x-c")
    monkeypatch.setattr(tvm_kit, "app_layer_name", lambda: "app-new.tar")
    kits = root / "kits"
    folder(kits / CURRENT_KIT)
    (kits / f"{CURRENT_KIT}.lock").touch()
    folder(kits / ("llamacpp-x86_64-" + "b" * 16))  # another key: stale
    (kits / ("llamacpp-x86_64-" + "b" * 16 + ".lock")).touch()
    folder(kits / ("llamacpp-aarch64-" + "d" * 16))  # no cross compiler: cannot tell
    (kits / "tvm-kit-app").mkdir()
    (kits / "tvm-kit-app" / "app-old.tar").write_bytes(b"t" * 500)
    age(kits / "tvm-kit-app" / "app-old.tar", 3)
    (kits / "tvm-kit-app" / "app-new.tar").write_bytes(b"t" * 500)
    tvm = engine_code_hash("tvm")
    bundle(root, "m-q4f16_1-llvm-" + "1" * 16, "tvm", tvm)  # current
    bundle(root, "m-q4f16_1-llvm-" + "2" * 16, "tvm", "old")  # other engine code
    bundle(root, "m-q4f16_1-llvm-" + "3" * 16, "tvm", "old", days=0)  # stale, used just now
    bundle(root, "m-q4f16_1-llamacpp-" + "4" * 16, "llama.cpp", None)  # from before engine_hash
    folder(root / "bundles" / ("m-q0f32-llvm-" + "5" * 16 + ".k2j_x9q1"))  # a killed build
    folder(root / "weights" / "smollm2", size=5000, days=40)
    folder(root / "weights" / "fresh", size=5000, days=1)
    folder(root / "locks")
    return root


def states(entries) -> dict[str, str]:
    return {e.name: e.state for e in entries}


def test_the_listing_says_what_the_current_code_would_use(cache):
    entries = inv.scan()
    # the kits' .lock files go with their kits, not in rows of their own
    assert states(entries) == {
        f"kits/{CURRENT_KIT}": "current",
        "kits/llamacpp-x86_64-" + "b" * 16: "stale",
        "kits/llamacpp-aarch64-" + "d" * 16: "unknown",
        "kits/tvm-kit-app/app-new.tar": "current",
        "kits/tvm-kit-app/app-old.tar": "stale",
        "bundles/m-q4f16_1-llvm-" + "1" * 16: "current",
        "bundles/m-q4f16_1-llvm-" + "2" * 16: "stale",
        "bundles/m-q4f16_1-llvm-" + "3" * 16: "stale",
        "bundles/m-q4f16_1-llamacpp-" + "4" * 16: "stale",
        "bundles/m-q0f32-llvm-" + "5" * 16 + ".k2j_x9q1": "partial",
        "weights/smollm2": "data",
        "weights/fresh": "data",
        "locks": "locks",
    }
    by_name = {e.name: e for e in entries}
    assert by_name["weights/smollm2"].bytes >= 5000
    assert NOW - by_name["weights/smollm2"].last_used == pytest.approx(40 * DAY, abs=60)
    assert "llamacpp-x86_64-aaaa" in by_name["kits/llamacpp-x86_64-" + "b" * 16].why
    assert "no aarch64-linux-gnu-g++" in by_name["kits/llamacpp-aarch64-" + "d" * 16].why
    text = inv.format_table(entries, cache, now=NOW)
    assert text.splitlines()[0].startswith(f"{cache}: ") and "in 13 entries" in text
    assert "\nkits: " in text and "\nbundles: " in text and "\nweights: 10.0 KB in 2" in text
    assert "40d ago  data" in text


def test_prune_removes_the_stale_and_keeps_the_current_recent_locked_and_data(cache):
    removals = inv.plan_prune(inv.scan(), keep_recent=DAY)
    gone = {r.entry.name for r in removals}
    assert gone == {
        "kits/llamacpp-x86_64-" + "b" * 16,
        "kits/tvm-kit-app/app-old.tar",
        "bundles/m-q4f16_1-llvm-" + "2" * 16,
        "bundles/m-q4f16_1-llamacpp-" + "4" * 16,
        "bundles/m-q0f32-llvm-" + "5" * 16 + ".k2j_x9q1",
    }
    freed = inv.prune(removals)
    assert freed == sum(r.entry.bytes for r in removals) > 0
    left = states(inv.scan())
    assert not gone & set(left) and len(left) == 8
    assert not (cache / "kits" / ("llamacpp-x86_64-" + "b" * 16 + ".lock")).exists()
    assert (cache / "kits" / f"{CURRENT_KIT}.lock").exists()  # a current kit's lock stays
    assert not list(cache.rglob("*.pruning"))


def test_prune_by_age_takes_anything_unused_that_long_but_never_a_held_lock(cache):
    entries = inv.scan()
    old = {r.entry.name for r in inv.plan_prune(entries, stale=False, older_than=30 * DAY)}
    assert old == {"weights/smollm2"}
    # a build in progress: its lock is held, so neither its partial folder nor its kit goes
    partial = folder(cache / "kits" / f"{CURRENT_KIT}.partial", days=5)
    with open(cache / "kits" / f"{CURRENT_KIT}.lock") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        entries = inv.scan()
        assert states(entries)[f"kits/{partial.name}"] == "building"
        removals = inv.plan_prune(entries, older_than=0, keep_recent=0)
        names = {r.entry.name for r in removals}
        assert f"kits/{partial.name}" not in names and f"kits/{CURRENT_KIT}" not in names
        assert "locks" not in names and "weights/fresh" in names
    # released and untouched for days: an abandoned build, pruned as stale
    assert states(inv.scan())[f"kits/{partial.name}"] == "partial"
    assert f"kits/{partial.name}" in {r.entry.name for r in inv.plan_prune(inv.scan())}


def test_a_lock_taken_after_planning_saves_the_entry(cache):
    removals = inv.plan_prune(inv.scan())
    stale_kit = cache / "kits" / ("llamacpp-x86_64-" + "b" * 16)
    with open(stale_kit.with_name(stale_kit.name + ".lock")) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        inv.prune(removals)
    assert stale_kit.is_dir() and not (cache / "kits" / "tvm-kit-app" / "app-old.tar").exists()


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 30 * DAY), ("12h", 43200), ("90m", 5400), ("2w", 14 * DAY)]
)
def test_ages(text, seconds):
    assert inv.parse_age(text) == seconds
    assert inv.parse_age("0") == 0


@pytest.mark.parametrize("text", ["30", "3x", "d", ""])
def test_an_age_without_a_unit_is_refused(text):
    with pytest.raises(UserError, match="not an age"):
        inv.parse_age(text)


def test_human_sizes():
    assert [inv.human_bytes(n) for n in (950, 12_345, 1_600_000_000, 2e12)] == [
        "950 B",
        "12.3 KB",
        "1.6 GB",
        "2000.0 GB",
    ]
