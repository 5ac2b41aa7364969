"""Every architecture compiles for every target that can be code-generated on this host.

- llvm, llvm-avx2: the bundle loads and runs one prefill + one decode step (finite logits of
  [vocab]).
- arm64-linux, arm64-linux-i8mm: model.so is an AArch64 shared library (Debian's cross gcc).
- android-cpu: the bundle's model.tar holds AArch64 ELF objects (linking needs the NDK).
- opencl: the bundle holds the generated OpenCL C (``__kernel``), our GPU matmuls included,
  next to a model.tar of AArch64 host objects with the kernels packed in.
- cuda: model.so (host code + CUDA source) and model.cu; model.ptx too when nvcc is installed.

Gemma 2 and Phi-3 (soft-capping, windows, LongRoPE: features of our CPU attention kernels only)
are refused for GPU targets with a one-line error instead.

The matrix is tiny models x q4f16_1. One compile per target (architectures rotated so each is
compiled once) runs by default; the rest of the matrix is marked slow. The GPU matmul kernels'
arithmetic is checked on the CPU by running them with their thread loops made serial.
"""

from __future__ import annotations

import json
import re
import tarfile

import numpy as np
import pytest

from harness.engines.tvm.targets import TARGETS
from harness.models.registry import ARCHITECTURES, tiny_configs

ARCHS = tuple(ARCHITECTURES)
GPU_TARGETS = ("opencl", "cuda")
CPU_ONLY_ARCHS = ("gemma2", "phi3")
EM_AARCH64 = 183
# The default (not slow) selection: each target once, each architecture at least once.
FAST = {(target, ARCHS[i % len(ARCHS)]) for i, target in enumerate(TARGETS)}


def _matrix():
    for target in TARGETS:
        for arch in ARCHS:
            if target in GPU_TARGETS and arch in CPU_ONLY_ARCHS:
                continue  # test_gpu_targets_refuse_cpu_only_architectures
            marks = () if (target, arch) in FAST else (pytest.mark.slow,)
            yield pytest.param(target, arch, id=f"{target}-{arch}", marks=marks)


def _compile(tmp_path, monkeypatch, arch: str, target: str, preset: str = "q4f16_1"):
    from harness.engines.tvm.compile import compile_model, verify_bundle
    from harness.models.sources.dummy import load_dummy
    from harness.quantization import get_preset

    monkeypatch.setenv("SLM_BENCH_CACHE", str(tmp_path / "cache"))
    name = f"tiny-{arch}"
    lines: list[str] = []
    bundle = compile_model(
        load_dummy(name, tiny_configs()[name]),
        get_preset(preset),
        target,
        force=True,
        log=lines.append,
    )
    manifest = verify_bundle(bundle)
    assert manifest["target"] == target and manifest["architecture"] == arch
    assert bundle.is_relative_to(tmp_path)
    return bundle, manifest, lines


def _run_one_step(bundle, vocab: int, device: str = "cpu") -> None:
    from harness.engines.tvm.runtime import TVMSession

    session = TVMSession(bundle, max_seq_len=64, device=device)
    # the library's own launcher runs its parallel loops (harness/engines/tvm/fork_join.cc)
    assert session.launcher == ("fork-join" if device == "cpu" else "tvm")
    ids = np.arange(1, 6, dtype=np.int32)
    for logits in (session.prefill(ids), session.decode(7)):
        flat = logits.numpy().reshape(-1)
        assert flat.shape == (vocab,)
        assert np.isfinite(flat).all()
        # CPU builds compute the greedy token in the library (kernels.sampling); GPU ones not
        assert (logits.token is not None) == (device == "cpu")
        assert session.greedy(logits) == int(np.argmax(flat))


def _elf_machine(header: bytes) -> int:
    assert header[:4] == b"\x7fELF", "not an ELF object"
    order = "little" if header[5] == 1 else "big"
    return int.from_bytes(header[18:20], order)


def _tar_objects(path) -> dict[str, bytes]:
    with tarfile.open(path, "r:*") as tar:  # tvm.support.tar writes it gzip-compressed
        return {
            m.name: tar.extractfile(m).read()
            for m in tar.getmembers()
            if m.isfile() and m.name.endswith(".o")
        }


@pytest.mark.parametrize("target,arch", list(_matrix()))
def test_compiles(tmp_path, monkeypatch, target, arch):
    bundle, manifest, log = _compile(tmp_path, monkeypatch, arch, target)
    lib = bundle / manifest["library"]
    assert lib.is_file() and lib.stat().st_size > 0
    vocab = json.loads((bundle / "config.json").read_text())["vocab_size"]

    if target in ("llvm", "llvm-avx2"):
        _run_one_step(bundle, vocab)

    if target.startswith("arm64-linux"):  # a loadable library for the phone kit (tests/devices)
        # ET_DYN
        assert _elf_machine(lib.read_bytes()[:20]) == EM_AARCH64 and lib.read_bytes()[16] == 3
        assert b"slm_fork_join_install" in lib.read_bytes()  # the launcher, linked in

    if target in ("android-cpu", "opencl"):
        objects = _tar_objects(lib)
        assert objects, f"no objects in {lib.name}"
        assert {name: _elf_machine(data) for name, data in objects.items()} == {
            name: EM_AARCH64 for name in objects
        }

    if target == "opencl":
        source = (bundle / "model.cl").read_text()
        assert "__kernel" in source
        # our thread-bound matmuls
        assert re.search(r"__kernel void gemv_q4_\d+x\d+_kernel", source)
        assert re.search(r"__kernel void gemm_q4_\d+x\d+_kernel", source)
        # packed into the tar
        assert any(b"__kernel" in data for data in _tar_objects(lib).values())

    if target == "cuda":
        source = (bundle / "model.cu").read_text()
        assert "__global__" in source and re.search(r"gemv_q4_\d+x\d+_kernel", source)
        from harness.engines.tvm.compile import _find_nvcc

        if _find_nvcc():
            assert ".entry" in (bundle / "model.ptx").read_text()
        import tvm

        if tvm.runtime.enabled("cuda") and tvm.cuda(0).exist:
            _run_one_step(bundle, vocab, device="cuda")


@pytest.mark.parametrize("target", GPU_TARGETS)
@pytest.mark.parametrize("arch", CPU_ONLY_ARCHS)
def test_gpu_targets_refuse_cpu_only_architectures(tmp_path, monkeypatch, target, arch):
    from harness.errors import UserError

    with pytest.raises(
        UserError,
        match=(
            r"only the engine's CPU attention kernels implement; "
            rf"compile it for a CPU target .* not {target}"
        ),
    ):
        _compile(tmp_path, monkeypatch, arch, target)


@pytest.mark.slow
@pytest.mark.parametrize("target", GPU_TARGETS)
def test_unquantized_gpu_bundle(tmp_path, monkeypatch, target):
    bundle, _, _ = _compile(tmp_path, monkeypatch, ARCHS[0], target, preset="q0f32")
    source = (bundle / ("model.cl" if target == "opencl" else "model.cu")).read_text()
    assert re.search(r"gemv_f32_\d+x\d+_kernel", source) and re.search(
        r"gemm_f32_\d+x\d+_kernel", source
    )


def test_unknown_target_is_a_user_error(tmp_path, monkeypatch):
    from harness.engines.tvm.compile import compile_model
    from harness.errors import UserError
    from harness.models.sources.dummy import load_dummy
    from harness.quantization import get_preset

    monkeypatch.setenv("SLM_BENCH_CACHE", str(tmp_path))
    with pytest.raises(UserError, match="unknown target"):
        compile_model(
            load_dummy("tiny-llama", tiny_configs()["tiny-llama"]),
            get_preset("q4f16_1"),
            "vulkan-phone",
            force=True,
            log=lambda *_: None,
        )


def _serial(func):
    """The same PrimFunc with its thread-bound loops made serial, so it runs on the CPU.

    Valid for kernels whose threads only communicate between separate thread loops (a barrier
    in between), which is how kernels.matmul_gpu is written.
    """
    import tvm

    text = func.script().replace("T.thread_binding(", "T.serial(")
    text = re.sub(r', thread="[A-Za-z.]+"\)', ")", text)
    return tvm.script.from_source(text)


@pytest.mark.parametrize("rows,m", [("one", 1), ("one", 3), ("many", 1), ("many", 70)])
@pytest.mark.parametrize("preset", ["q4f16_1", "q4f32_1", "q0f32"])
def test_gpu_matmul_kernels_compute_the_product(rows, m, preset):
    """The GPU kernels (K not a multiple of the K-split, M not a multiple of the row block)."""
    import tvm

    from harness.engines.tvm.kernels import matmul_gpu
    from harness.quantization import dequantize_q4, get_preset, pack_linear, quantize_q4

    p = get_preset(preset)
    n, k = 48, 160
    rng = np.random.default_rng(1)
    w = rng.standard_normal((n, k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    x = rng.standard_normal((m, k)).astype(np.float32)
    packed = pack_linear(w, p)
    if p.quantized:
        func = matmul_gpu.q4_matmul_gpu(n, k, p.scale_dtype, rows)
        weights = [packed["qweight"], packed["qscale"]]
        expected = x @ dequantize_q4(*quantize_q4(w, p.scale_dtype)).T + b
    else:
        func = matmul_gpu.f32_matmul_gpu(n, k, rows)
        weights = [packed["weight"]]
        expected = x @ w.T + b
    assert func.attrs["tirx.is_scheduled"]
    lib = tvm.tirx.build(
        tvm.IRModule({"main": _serial(func).with_attr("global_symbol", "main")}), target="llvm"
    )
    dev = tvm.cpu()
    y = tvm.runtime.tensor(np.full((m, n), np.nan, np.float32), dev)
    lib["main"](*[tvm.runtime.tensor(a, dev) for a in (x, *weights, b)], y)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-4, atol=1e-4)
