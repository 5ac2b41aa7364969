"""The ARM builds of the integer matmuls run as aarch64 code under qemu-user against numpy.

The kernels are compiled for ``arm64-linux-i8mm`` (smmla GEMM, sdot GEMV), linked by Debian's
cross gcc, and called from the TVM kit's aarch64 Python (``harness.kits.tvm_kit``: CPython, the
TVM runtime and numpy) started by ``qemu-aarch64-static`` with the CPU model the emulated i8mm
phone uses; the same library on the plain phone's neoverse-n1 dies of an illegal instruction,
which is why that phone must never be handed the i8mm build. qemu's speed says nothing about a
phone's: only the numbers are checked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile

import numpy as np
import pytest

from harness.quantization import GROUP, pack_q4_a8, quantize_q4

from .test_int8_kernels import numpy_a8_matmul

QEMU = shutil.which("qemu-aarch64-static")
CROSS_GCC = "aarch64-linux-gnu-gcc"
pytestmark = [
    pytest.mark.skipif(QEMU is None, reason="no qemu-user (apt-get install -y qemu-user-static)"),
    pytest.mark.skipif(
        shutil.which(CROSS_GCC) is None,
        reason=f"no {CROSS_GCC} to link ARM64 code (apt-get install -y gcc-aarch64-linux-gnu)",
    ),
]
# (n, k, m, rows): GEMMs with every tail of the 4-row tile (m % 4 = 1, 2, 3) and of the 64-row
# block, odd M (the padding row of the last pair) down to a prefill of one row, and a GEMV.
CASES = [
    (32, 64, 1, "many"),
    (32, 64, 2, "many"),
    (32, 64, 7, "many"),
    (32, 64, 13, "many"),
    (48, 160, 70, "many"),
    (48, 96, 1, "one"),
]
# What runs on the ARM side: every kernel of lib.so on its saved inputs, its outputs saved.
CALLS = """
import sys, numpy as np, tvm
lib = tvm.runtime.load_module(sys.argv[1] + "/lib.so")
for name in sys.argv[2:]:
    z = np.load(f"{sys.argv[1]}/{name}.npz")
    y = tvm.runtime.tensor(np.zeros((z["x"].shape[0], z["b"].shape[0]), np.float32))
    lib[name](*[tvm.runtime.tensor(z[a]) for a in ("x", "wq", "sc", "b")], y)
    np.save(f"{sys.argv[1]}/{name}.out.npy", y.numpy())
"""


@pytest.fixture(scope="module")
def kit_python(tmp_path_factory):
    """The TVM kit's python and site layers unpacked on the host: argv prefix and environment
    that start its aarch64 Python under qemu (``cpu`` is filled in per call)."""
    from harness.errors import UserError
    from harness.kits.tvm_kit import PYTHON, build_kit, load_kit

    try:
        kit = load_kit(build_kit(log=lambda *_: None))
    except UserError as exc:
        pytest.skip(f"no TVM kit for ARM64 here: {exc}")
    root = tmp_path_factory.mktemp("kit")
    for layer in ("python", "site"):
        with tarfile.open(kit["paths"][layer]) as tar:
            tar.extractall(root / layer, filter="tar")
    libs = ":".join(str(root / d) for d in ("python/lib", "site/tvm/lib", "site/tvm_ffi/lib"))
    argv = [str(root / "python/lib/ld-linux-aarch64.so.1"), "--library-path", libs]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONHOME": str(root / "python"),
        "PYTHONPATH": str(root / "site"),
        "TVM_USE_RUNTIME_LIB": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return [*argv, str(root / "python/bin" / PYTHON)], env


def build_cases(folder) -> dict[str, np.ndarray]:
    """lib.so with one kernel per case (i8mm ISA) and each case's inputs; numpy's answers."""
    import tvm
    from tvm.support import cc

    from harness.engines.tvm.kernels.matmul_int8 import q4_matmul_a8
    from harness.engines.tvm.targets import resolve

    funcs, expected = {}, {}
    for n, k, m, rows in CASES:
        name = f"{rows}_{n}_{k}_{m}"
        func = q4_matmul_a8(n, k, "float16", rows, "neon-i8mm")
        funcs[name] = func.with_attr("global_symbol", name)
        rng = np.random.default_rng(n + k + m)
        w = rng.standard_normal((n, k)).astype(np.float32)
        x = (rng.standard_normal((m, k)) * rng.uniform(0.1, 10, (m, 1))).astype(np.float32)
        x[0, :GROUP] = 0  # an all-zero group: scale 0
        bias = rng.standard_normal(n).astype(np.float32)
        q, s = quantize_q4(w, "float16")
        wq, sc = pack_q4_a8(q, s)
        np.savez(folder / f"{name}.npz", x=x, wq=wq, sc=sc, b=bias)
        expected[name] = numpy_a8_matmul(x, q, s, bias)
    lib = tvm.tirx.build(tvm.IRModule(funcs), target=resolve("arm64-linux-i8mm"))
    lib.export_library(str(folder / "lib.so"), fcompile=cc.cross_compiler(CROSS_GCC))
    return expected


def run_on_arm(kit_python, cpu: str, folder, names) -> subprocess.CompletedProcess:
    python, env = kit_python
    (folder / "calls.py").write_text(CALLS)
    return subprocess.run(
        [QEMU, "-cpu", cpu, *python, str(folder / "calls.py"), str(folder), *names],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_i8mm_kernels_match_numpy_as_arm64_code_and_need_an_i8mm_cpu(kit_python, tmp_path):
    from harness.kits.userland import QEMU_CPU, QEMU_CPU_I8MM

    expected = build_cases(tmp_path)
    done = run_on_arm(kit_python, QEMU_CPU_I8MM, tmp_path, list(expected))
    assert done.returncode == 0, done.stderr[-2000:]
    for name, ref in expected.items():
        ours = np.load(tmp_path / f"{name}.out.npy")
        assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max(), name
    # neoverse-n1 (the emulated phone without i8mm): smmla is an illegal instruction there
    gemm = next(name for name in expected if name.startswith("many"))
    died = run_on_arm(kit_python, QEMU_CPU, tmp_path, [gemm])
    assert died.returncode != 0 and "Illegal instruction" in died.stderr, died.stderr[-2000:]
