"""Compile a model into a bundle: model library + weight shards + config + tokenizer + manifest.

Bundles live in a content-addressed cache: the key hashes the weights' fingerprint, the config,
the preset, the target, TVM's version and the engine's own code (by its syntax: comments and
formatting do not count), so compiling the same inputs again is a cache hit and any change to a
kernel invalidates old bundles.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

from harness.cache import build_atomically, exclusive, mark_used
from harness.engines import engine_code_hash, host_cores
from harness.engines.bundle import (
    base_manifest,
    cache_folder,
    verify_files,
    write_manifest,
    write_model_files,
)
from harness.errors import UserError
from harness.models.sources.base import LoadedModel
from harness.quantization import QuantPreset

from . import targets
from .fork_join import link_args

BUNDLE_FORMAT = 1
LIB_NAMES = {
    "llvm": "model.so",
    "llvm-avx2": "model.so",
    "cuda": "model.so",
    "arm64-linux": "model.so",
    "arm64-linux-i8mm": "model.so",
    "android-cpu": "model.tar",
    "opencl": "model.tar",
}
# Generated device code written next to the library for GPU targets, by device module kind.
DEVICE_SOURCE_NAMES = {"cuda": "model.cu", "opencl": "model.cl", "metal": "model.metal"}


def engine_source_hash() -> str:
    """Fingerprint of the code that shapes a bundle (engine, bundle layout, quantization, model
    config; ``harness.engines.ENGINE_CODE``) by its syntax, so a comment, docstring or reformat
    keeps every bundle. Bundles record it as ``engine_hash``."""
    return engine_code_hash("tvm")


def bundle_key(model: LoadedModel, preset: QuantPreset, target: str) -> str:
    import tvm

    payload = {
        "format": BUNDLE_FORMAT,
        "weights": model.fingerprint,
        "config": model.config.model_dump(mode="json"),
        "preset": preset.name,
        "target": target,
        # the resolved target: its CPU (mcpu, features) decides which kernels are compiled in
        "target_detail": str(targets.resolve(target)),
        "host_cores": host_cores() if target in targets.HOST_CPU_TARGETS else None,
        "tvm": tvm.__version__,
        "engine": engine_source_hash(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def bundle_path(model: LoadedModel, preset: QuantPreset, target: str) -> Path:
    return cache_folder(model, preset, target, bundle_key(model, preset, target))


def compile_model(
    model: LoadedModel, preset: QuantPreset, target: str = "llvm", *, force: bool = False, log=print
) -> Path:
    """Compile (or find in the cache) the bundle for model x preset x target; returns its folder."""
    out = bundle_path(model, preset, target)
    if (out / "manifest.json").is_file() and not force:
        log(f"bundle cache hit: {out}")
        mark_used(out)
        return out
    # One compile at a time in this process (a grid's devices run in threads; an 8B compile peaks
    # near 4 GB), and one builder per bundle across processes and hosts sharing the cache: a
    # waiter finds the bundle built.
    with _ONE_COMPILE, exclusive(out.with_name(out.name + ".lock")):
        if (out / "manifest.json").is_file() and not force:
            log(f"bundle built meanwhile by another run: {out}")
            mark_used(out)
            return out
        return build_atomically(out, lambda work: _build_into(work, model, preset, target, log))


_ONE_COMPILE = threading.Lock()


def _check_gpu_support(model: LoadedModel, target, target_name: str) -> None:
    from .attention import needs_cpu_kernels

    feature = needs_cpu_kernels(model.config) if target.kind.name != "llvm" else None
    if feature:
        raise UserError(
            f"{model.name} needs {feature}, which only the engine's CPU attention kernels"
            " implement; compile it for a CPU target (llvm, arm64-linux, android-cpu), not"
            f" {target_name}"
        )


def _build_into(work: Path, model: LoadedModel, preset: QuantPreset, target_name: str, log) -> None:
    import tvm

    from harness.progress import meter

    from .model import DecoderLM
    from .weights import convert, write_shards

    target = targets.resolve(target_name)
    _check_gpu_support(model, target, target_name)
    preset = _preset_for(preset, target, target_name, log)
    kernels = targets.matmul_kernels(target, preset)
    t0 = time.perf_counter()
    module = DecoderLM(model.config, preset, target)
    mod, named_params = module.export_tvm(spec=module.get_default_spec())
    t_export = time.perf_counter() - t0
    log(
        f"exported {model.name} ({len(named_params)} weight tensors) in {t_export:.1f}s; compiling"
        f" for {target_name}"
    )

    t0 = time.perf_counter()
    with target:
        executable = tvm.compile(mod, target=target, relax_pipeline=_relax_pipeline(target))
    lib_name = LIB_NAMES[target_name]
    _export_library(executable, work / lib_name, target_name, log)
    if targets.is_gpu(target):
        _write_device_sources(executable, work, target, log)
    t_compile = time.perf_counter() - t0
    log(f"compiled in {t_compile:.1f}s; packing weights ({preset.name})")

    t0 = time.perf_counter()
    expected = {name: (tuple(int(d) for d in p.shape), p.dtype) for name, p in named_params}
    with meter(_packed_bytes(expected), f"packing weights ({preset.name})", min_total=8e6) as done:
        meta = write_shards(convert(model, preset), expected, work / "params", done)
    t_pack = time.perf_counter() - t0
    (work / "params" / "order.json").write_text(json.dumps([name for name, _ in named_params]))

    write_model_files(work, model)

    manifest = {
        "format": BUNDLE_FORMAT,
        **base_manifest("tvm", tvm.__version__, model, preset, preset.description, target_name),
        "compute_dtype": "float32",
        "kernels": kernels,
        "kernels_detail": targets.KERNEL_DESCRIPTIONS[kernels],
        "target_detail": str(target),
        "library": lib_name,
        "weight_bytes": meta["total_bytes"],
        "tvm_version": tvm.__version__,  # run.json files of earlier runs name it so
        "engine_hash": engine_source_hash(),
        "timings_s": {
            "export": round(t_export, 3),
            "compile": round(t_compile, 3),
            "pack": round(t_pack, 3),
        },
    }
    write_manifest(work, manifest)
    log(f"bundle written: {meta['total_bytes'] / 1e6:.1f} MB of weights, packed in {t_pack:.1f}s")


def _packed_bytes(expected: dict[str, tuple[tuple[int, ...], str]]) -> int:
    """The bytes the weight shards will hold: every declared parameter, shape x dtype."""
    import numpy as np

    return sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in expected.values())


def _preset_for(preset: QuantPreset, target, target_name: str, log) -> QuantPreset:
    """The preset that really compiles: an int8-activation preset on a target without integer
    dot products becomes its float twin (same weights), said here and in the manifest."""
    from harness.quantization import float_twin

    from .kernels.matmul_int8 import ISAS

    if preset.activations != "int8" or targets.matmul_kernels(target, preset) in ISAS:
        return preset
    twin = float_twin(preset)
    log(
        f"{target_name} has no integer dot-product instructions the engine uses (x86 AVX2, ARM"
        f" +dotprod): {preset.name} compiles as {twin.name} (same weights, float activations)"
    )
    return twin


def _relax_pipeline(target):
    """The relax pipeline: TVM's default for CPU targets; for GPU targets the same stages with
    dlight's default GPU schedules applied to every kernel not already scheduled.

    Our matmuls (kernels.matmul_gpu) and the KV cache's attention kernels arrive scheduled
    (``tirx.is_scheduled``) and are left alone; everything the legalizer produces (norms,
    activations, gathers, reshapes, the fused elementwise ops) must be bound to threads before
    lowering or GPU codegen rejects it. TVM's CUDA / generic-GPU pipelines already include such
    a pass; its Adreno pipeline schedules only reductions and fallbacks, so the pass below runs
    after legalization and fusion for every GPU target (a no-op on what is already scheduled).
    """
    import tvm

    if not targets.is_gpu(target):
        return _cpu_pipeline(target)
    from tvm.relax.backend import adreno, cuda, gpu_generic
    from tvm.s_tir import dlight as dl

    # The per-backend stage lists relax.get_default_pipeline dispatches to (taken from the
    # backends' pipeline modules: 0.27's relax.backend.cuda does not re-export all of them).
    if target.kind.name == "cuda":
        stages = cuda.pipeline
    elif target.kind.name == "opencl" and "adreno" in target.keys:
        stages = adreno.pipeline
    else:
        stages = gpu_generic.pipeline

    @tvm.transform.module_pass(opt_level=0, name="slm_bench_gpu_pipeline")
    def _pipeline(mod, _ctx):
        with target:
            passes = (
                stages.library_dispatch_passes(target)
                + stages.legalize_passes(target)
                + [
                    dl.ApplyDefaultSchedule(
                        dl.gpu.Matmul(),
                        dl.gpu.GEMV(),
                        dl.gpu.Reduction(),
                        dl.gpu.GeneralReduction(),
                        dl.gpu.Fallback(),
                    )
                ]
                + stages.dataflow_lower_passes(target)
                + stages.finalize_passes(target)
            )
            return tvm.transform.Sequential(passes)(mod)

    return _pipeline


def _cpu_pipeline(target):
    """TVM's default CPU pipeline with the reshapes made views before fusion, not after.

    TVM rewrites a kernel that only reshapes into a view (no copy, no call) once fusion is done;
    by then neighbouring reshapes have been fused into one kernel, which the rewrite does not
    recognise, so each stayed a copy kernel: 122 calls of a SmolLM2 decode step, about 1 us
    each plus the VM's work around them."""
    import tvm
    from tvm import relax
    from tvm.relax.backend.cpu_generic import pipeline as cpu

    legalize = cpu.legalize_passes(target)
    at = next(i for i, p in enumerate(legalize) if p.info.name == "LegalizeOps") + 1

    @tvm.transform.module_pass(opt_level=0, name="slm_bench_cpu_pipeline")
    def _pipeline(mod, _ctx):
        with target:
            passes = (
                cpu.library_dispatch_passes(target)
                + legalize[:at]
                + [relax.transform.RewriteDataflowReshape()]
                + legalize[at:]
                + cpu.dataflow_lower_passes(target)
                + cpu.finalize_passes(target)
            )
            return tvm.transform.Sequential(passes)(mod)

    return _pipeline


def _export_library(executable, path: Path, target_name: str, log=print) -> None:
    """The model library, with the fork-join launcher (fork_join.cc) linked into every loadable
    one."""
    if targets.is_host_runnable(target_name):
        # cuda included: the .so holds host code plus the CUDA source, which a CUDA-enabled TVM
        # runtime compiles when it loads the library (this wheel's runtime has no CUDA).
        executable.export_library(str(path), **link_args())
        return
    if target_name in targets.CROSS_COMPILERS:
        _export_cross(executable, path, targets.CROSS_COMPILERS[target_name])
        return
    # Phone targets: keep the generated objects (and packed device code) in a tar; linking
    # a loadable .so needs the Android NDK's compiler (TVM_NDK_CC).
    from tvm.support import tar as tar_util

    ndk_cc = os.environ.get("TVM_NDK_CC")
    if ndk_cc:
        from tvm.support import ndk

        executable.export_library(
            str(path.with_suffix(".so")), fcompile=ndk.create_shared, **link_args()
        )
    else:
        log(
            f"TVM_NDK_CC is not set: {path.name} holds the ARM64 objects but no loadable model.so;"
            " to link one, set TVM_NDK_CC to the NDK's clang (e.g."
            " $NDK/toolchains/llvm/prebuilt/linux-x86_64/bin/aarch64-linux-android34-clang) and"
            " compile with --force"
        )
    executable.export_library(str(path), fcompile=tar_util.tar)


def _export_cross(executable, path: Path, compiler: str) -> None:
    """A loadable library for another CPU, linked by a cross compiler on this host."""
    from tvm.support import cc

    if not shutil.which(compiler):
        raise UserError(
            f"{compiler} is missing, so the ARM64 model library cannot be linked; install it:"
            " apt-get install -y gcc-aarch64-linux-gnu"
        )
    executable.export_library(str(path), fcompile=cc.cross_compiler(compiler), **link_args())


def _device_modules(module):
    """Every non-host module imported (transitively) by a compiled executable."""
    found, stack = [], list(module.imports)
    while stack:
        m = stack.pop()
        if m.kind in DEVICE_SOURCE_NAMES:
            found.append(m)
        stack.extend(m.imports)
    return found


def _write_device_sources(executable, work: Path, target, log) -> None:
    """Write the generated GPU kernels (model.cu / model.cl ...) into the bundle for inspection;
    for CUDA, also compile them to PTX with nvcc when it is installed (a check that the code
    builds, and PTX a driver can load)."""
    for dev in _device_modules(executable.mod):
        source = dev.inspect_source()
        if not source:
            continue
        path = work / DEVICE_SOURCE_NAMES[dev.kind]
        path.write_text(source)
        log(f"{dev.kind} kernels: {path.name} ({len(source) / 1e3:.0f} kB of generated source)")
        if dev.kind == "cuda":
            _cuda_to_ptx(path, target, log)


def _find_nvcc() -> str | None:
    nvcc = shutil.which("nvcc")
    if nvcc:
        return nvcc
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    candidate = Path(home) / "bin" / "nvcc"
    return str(candidate) if candidate.is_file() else None


def _cuda_to_ptx(source: Path, target, log) -> None:
    nvcc = _find_nvcc()
    arch = str(target.attrs.get("arch", "sm_80"))
    if nvcc is None:
        log(
            "nvcc not found (PATH, CUDA_HOME): the cuda bundle holds model.so with the CUDA source,"
            " which a CUDA-enabled TVM runtime compiles when loading; no PTX written"
        )
        return
    out = source.with_suffix(".ptx")
    proc = subprocess.run(
        [nvcc, "--ptx", f"-arch={arch}", "-w", "-o", str(out), str(source)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        first = next(
            (line for line in proc.stderr.splitlines() if "error" in line),
            proc.stderr.strip()[:200],
        )
        raise UserError(
            f"nvcc could not compile the generated CUDA for {arch} ({first.strip()}); set"
            " SLM_BENCH_CUDA_ARCH to an arch your CUDA toolkit supports"
        )
    log(
        f"cuda kernels compiled to {out.name} with {nvcc} for {arch} (codegen check; this TVM build"
        " has no CUDA runtime, so model.so runs only where TVM was built with CUDA)"
    )


def verify_bundle(bundle: Path) -> dict:
    """Check every file against the manifest; a damaged bundle is an error naming the file."""
    return verify_files(bundle, "recompile with `slm-bench compile --force`")
