"""Compile targets by name. Targets are dicts (TVM 0.27's form), resolved lazily."""

from __future__ import annotations

import os

from harness.engines import host_cores
from harness.errors import UserError

# name -> (description, whether a runnable library can be linked on this host)
TARGETS = {
    "llvm": "the host CPU, features detected (the desktop reference)",
    "llvm-avx2": (
        "the host x86 CPU held to AVX2 + FMA (x86-64-v3: no AVX-512, no VNNI): the kernels of an"
        " AVX2-only machine (Zen 3, Intel client cores before Alder Lake), run on this one"
    ),
    "cuda": (
        "NVIDIA GPU, SLM_BENCH_CUDA_ARCH (default sm_80); running needs a CUDA driver and a TVM"
        " built with CUDA (the pip wheel generates code only)"
    ),
    "android-cpu": (
        "llvm -mtriple=aarch64-linux-android: the phone's ARM64 cores (linking needs the NDK:"
        " TVM_NDK_CC)"
    ),
    "arm64-linux": (
        "llvm -mtriple=aarch64-linux-gnu: ARM64 cores running glibc programs, linked with Debian's"
        " aarch64-linux-gnu-gcc: a stock phone through the harness's TVM kit, or an ARM64 Linux"
        " board (Raspberry Pi 5, Jetson's CPU, Graviton)"
    ),
    "arm64-linux-i8mm": (
        "arm64-linux with +i8mm (Armv8.6-A int8 matrix multiply: Cortex-A510/A710/X2 and later,"
        " the Galaxy S24's cores): prefill's int8 matmuls on smmla; picked for a phone whose"
        " /proc/cpuinfo lists i8mm"
    ),
    "opencl": (
        "OpenCL for Adreno, MLC's choice on Android (source generation here; running needs the"
        " phone)"
    ),
}


ARM64_LINUX_MATTR = {
    "arm64-linux": ("+neon", "+fullfp16", "+dotprod"),
    "arm64-linux-i8mm": ("+neon", "+fullfp16", "+dotprod", "+i8mm"),
}
# The /proc/cpuinfo feature (Features line) each arm64-linux variant needs beyond the base one.
ARM64_LINUX_FEATURE = {"arm64-linux-i8mm": "i8mm"}


def arm64_linux_for(features) -> str:
    """The arm64-linux variant for cores with these /proc/cpuinfo features: the i8mm build when
    every core lists i8mm, else the plain (sdot) one."""
    have = set(features)
    for name, feature in ARM64_LINUX_FEATURE.items():
        if feature in have:
            return name
    return "arm64-linux"


def resolve(name: str):
    """Target name -> tvm.target.Target."""
    import tvm
    from tvm.target import codegen

    if name == "llvm":
        return tvm.target.Target(
            {"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu(), "num-cores": host_cores()}
        )
    if name == "llvm-avx2":
        check_x86_host(name)
        # x86-64-v3 (the psABI level of AVX2, FMA, F16C, BMI2) rather than a named CPU: generic
        # tuning, and no instruction beyond what every AVX2 machine has.
        return tvm.target.Target({"kind": "llvm", "mcpu": "x86-64-v3", "num-cores": host_cores()})
    if name == "cuda":
        return tvm.target.Target(
            {"kind": "cuda", "arch": os.environ.get("SLM_BENCH_CUDA_ARCH", "sm_80")},
            host={"kind": "llvm"},
        )
    if name == "android-cpu":
        return tvm.target.Target(
            {
                "kind": "llvm",
                "mtriple": "aarch64-linux-android",
                "mattr": ["+neon", "+fullfp16", "+dotprod"],
                "num-cores": 8,
            }
        )
    if name in ARM64_LINUX_MATTR:
        # arm64-linux: Armv8.2-A with dotprod and fp16, every arm64 phone core since Cortex-A76
        # (2019) and qemu's neoverse-n1 that emulates such a phone here. arm64-linux-i8mm adds
        # the int8 matrix multiply of Armv8.6-A (the Galaxy S24's X4/A720/A520).
        return tvm.target.Target(
            {
                "kind": "llvm",
                "mtriple": "aarch64-linux-gnu",
                "mattr": list(ARM64_LINUX_MATTR[name]),
                "num-cores": 8,
            }
        )
    if name == "opencl":
        return tvm.target.Target(
            {"kind": "opencl", "device": "adreno"},
            host={"kind": "llvm", "mtriple": "aarch64-linux-android"},
        )
    raise UserError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}")


# Targets whose bundles run on this host's CPU (whole, or held to AVX2), and with CUDA those
# whose bundles run in this process.
HOST_CPU_TARGETS = ("llvm", "llvm-avx2")
HOST_TARGETS = (*HOST_CPU_TARGETS, "cuda")


def is_host_runnable(name: str) -> bool:
    return name in HOST_TARGETS


def check_x86_host(name: str) -> None:
    """Raise a one-line error when an x86 target is asked of a host that cannot run it."""
    import platform

    if platform.machine() not in ("x86_64", "AMD64"):
        raise UserError(
            f"target {name} is x86 code and this host is {platform.machine()}; use --target llvm"
        )
    flags = _cpu_flags()
    missing = [f for f in ("avx2", "fma", "f16c") if f not in flags]
    if flags and missing:
        raise UserError(
            f"target {name} needs {', '.join(missing)}, which this CPU lacks; use --target llvm"
        )


def _cpu_flags() -> set[str]:
    """The flags every host core lists in /proc/cpuinfo; empty where there is none (not Linux)."""
    from harness.devices.topology import common_features

    try:
        with open("/proc/cpuinfo") as info:
            return common_features(info.read())
    except OSError:
        return set()


# Targets whose model library links with a cross compiler from the host's package manager.
CROSS_COMPILERS = {name: "aarch64-linux-gnu-gcc" for name in ARM64_LINUX_MATTR}


GPU_KINDS = ("cuda", "opencl", "vulkan", "metal")


def is_gpu(target) -> bool:
    """Whether a resolved target runs kernels on a GPU (thread-bound kernels, dlight schedules)."""
    return target.kind.name in GPU_KINDS


# What each choice of matmul kernels runs on, for manifests and reports.
KERNEL_DESCRIPTIONS = {
    "float": "fp32 FMA (weights dequantized in registers)",
    "gpu": "thread-bound GPU kernels",
    "avx512-vnni": "int8 x int4 on AVX-512 VNNI vpdpbusd (512-bit, 16 columns a register)",
    "avx-vnni": "int8 x int4 on AVX-VNNI vpdpbusd (256-bit)",
    "avx2": "int8 x int4 on AVX2 vpmaddubsw/vpmaddwd",
    "neon-dot": "int8 x int4 on Armv8.2 sdot (+dotprod)",
    "neon-i8mm": "int8 x int4 on Armv8.6 smmla (+i8mm) for prefill, sdot for decode",
}


def matmul_kernels(target, preset) -> str:
    """The linear layers' kernels for a target and preset: "gpu", "float", or the ISA of the
    integer dot-product kernels when the preset quantizes activations and the target has one.
    ``compile`` swaps an int8 preset for its float twin before a target without them gets here."""
    from .kernels import matmul_int8

    if is_gpu(target):
        return "gpu"
    if preset.activations == "int8":
        return matmul_int8.isa_for(target) or "float"
    return "float"
