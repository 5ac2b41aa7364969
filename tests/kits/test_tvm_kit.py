"""The TVM kit's pieces that need no phone: reproducible layers, the app layer's cache, and how
the phone starts the kit's Python."""

from __future__ import annotations

import os
import time

from harness.cache import file_sha256
from harness.kits import tvm_kit


def test_a_layer_tar_depends_only_on_its_contents(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name / "pkg").mkdir(parents=True)
        (tmp_path / name / "pkg" / "mod.py").write_text("x = 1\n")
        os.utime(tmp_path / name / "pkg" / "mod.py", (time.time() - 1000 * (name == "b"),) * 2)
        tvm_kit._write_tar(tmp_path / f"{name}.tar", tmp_path / name)
    # times and owners do not count
    assert file_sha256(tmp_path / "a.tar") == file_sha256(tmp_path / "b.tar")


def test_the_app_layer_is_cached_by_source_and_old_ones_are_pruned(tmp_path):
    for i in range(7):
        stale = tmp_path / f"app-stale{i}.tar"
        stale.write_bytes(b"old")
        os.utime(stale, (i, i))
    layer = tvm_kit._app_layer(tmp_path, log=lambda *_: None)
    assert tvm_kit._app_layer(tmp_path, log=lambda *_: None) == layer  # same source: same file
    assert len(list(tmp_path.glob("app-*.tar"))) == tvm_kit.APP_LAYERS_KEPT and layer.exists()
    import tarfile

    with tarfile.open(layer) as tar:
        names = set(tar.getnames())
    assert "harness/runner.py" in names and any(
        n.startswith("harness/__pycache__/runner.cpython-311") for n in names
    )


def test_the_phone_starts_the_kits_python_through_its_own_loader():
    kit = "/data/local/tmp/slm-bench/kit"
    command = tvm_kit.python_command(kit)
    assert command.startswith(
        f"{kit}/python/lib/ld-linux-aarch64.so.1 --library-path {kit}/python/lib:"
    )
    assert command.endswith(f"{kit}/python/bin/python3.11")
    env = tvm_kit.runner_env(kit)
    assert env["TVM_USE_RUNTIME_LIB"] == "1" and env["PYTHONHOME"] == f"{kit}/python"
    assert env["PYTHONPATH"].split(":") == [f"{kit}/app", f"{kit}/site"]
