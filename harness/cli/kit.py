"""``slm-bench kit``: build ahead of time the programs the harness otherwise builds on first use."""

from __future__ import annotations

import click


@click.group(
    "kit",
    epilog="""\b
Examples:
  slm-bench kit prepare                      # all of the below (CI runs this before the tests)
  slm-bench kit userland                     # ARM64 userland + qemu-user via binfmt_misc (root)
  slm-bench kit tvm                          # the TVM kit a stock ARM64 phone runs our bundles with
  slm-bench kit llama.cpp --arch aarch64     # static llama-bench/llama-completion for phones
  slm-bench kit llama.cpp --arch x86_64      # for this host, plus libllama.so for llama-cpp-python
Kits are cached under $SLM_BENCH_CACHE/kits (default ~/.cache/slm-bench/kits), keyed by their
source, flags, compiler and build code; a second call prints the cached path at once.""",
)
def kit():
    """Build the programs the harness runs on devices, once, into the cache.

    A run builds what it needs on first use; this prepares it ahead (CI, before going offline,
    before plugging in a phone). The last line printed is the kit's folder.
    """


@kit.command(
    "llama.cpp",
    short_help="llama-bench + llama-completion for aarch64 (static) or x86_64.",
    epilog="""\b
Examples:
  slm-bench kit llama.cpp --arch aarch64
  export SLM_BENCH_LLAMA_BIN_DIR=$(slm-bench kit llama.cpp --arch x86_64 | tail -n 1)
  CMAKE_ARGS="-DLLAMA_BUILD=OFF" pip install llama-cpp-python==0.3.36   # binding, no C++ build
  export LLAMA_CPP_LIB_PATH=$SLM_BENCH_LLAMA_BIN_DIR                    # ... using these libraries
\b
Needs cmake and a C/C++ compiler; for aarch64 Debian's cross compiler
(apt-get install -y cmake gcc-aarch64-linux-gnu g++-aarch64-linux-gnu).
Takes minutes on 2 cores.""",
)
@click.option(
    "--arch",
    type=click.Choice(["aarch64", "x86_64"]),
    required=True,
    help=(
        "aarch64: fully static, -march=armv8.2-a+dotprod+fp16, runs on any arm64 phone since "
        "2019 (no NDK). x86_64: shared build tuned to this CPU, with libllama.so and libggml*.so."
    ),
)
def llamacpp(arch):
    """llama.cpp's llama-bench and llama-completion, from the pinned llama-cpp-python 0.3.36 sdist.

    The source is the llama.cpp vendored in the sdist the project pins (downloaded with pip,
    sha256-checked), so the phone runs the same llama.cpp as the host's --engine llama.cpp. The
    llama-bench and llama-cli runners use this kit when no --runner-bin or
    SLM_BENCH_LLAMA_BIN_DIR names a binary.
    """
    from harness.kits.llamacpp import build_llamacpp

    click.echo(build_llamacpp(arch, log=lambda msg: click.echo(msg, err=True)))


def _log(msg: str) -> None:
    click.echo(msg, err=True)


@kit.command("userland", short_help="ARM64 userland and qemu-user registration (root).")
def userland():
    """Make the ARM64 userland (Debian 12 arm64 packages unpacked with mmdebstrap, ~10 s, nothing
    emulated) and register qemu-user with binfmt_misc so that this host runs aarch64 programs:
    what `slm-bench devices emulate --arch arm64` and the TVM kit are made from.

    Needs root and `apt-get install -y qemu-user-static binfmt-support mmdebstrap`; without them it
    says which is missing, in one line.
    """
    from harness.errors import UserError
    from harness.kits.userland import arm64_blocker, prepare_userland

    reason = arm64_blocker()
    if reason:
        raise UserError(reason)
    click.echo(prepare_userland(_log))


@kit.command("tvm", short_help="The TVM kit: CPython + TVM runtime for stock ARM64 phones.")
def tvm_kit():
    """Build the TVM kit a stock ARM64 phone runs this harness's bundles with: glibc's loader and
    CPython 3.11 from Debian's arm64 packages, TVM's runtime and the runner's other wheels for
    aarch64 at this host's versions, and the harness package (about 190 MB, pushed once).
    """
    from harness.kits.tvm_kit import build_kit

    click.echo(build_kit(_log))


@kit.command(
    "prepare", short_help="All kits: ARM64 userland, TVM kit, llama.cpp for both CPUs (CI)."
)
def prepare():
    """The ARM64 userland, the TVM kit and llama.cpp for aarch64 and this host, each built once
    and cached: what the test suite and a stock phone need. Re-running it costs seconds."""
    import time

    from harness.kits.llamacpp import build_llamacpp
    from harness.kits.tvm_kit import build_kit
    from harness.kits.userland import arm64_blocker

    start = time.monotonic()
    reason = arm64_blocker()
    if reason:
        _log(f"skipping the ARM64 userland and TVM kit: {reason}")
    else:
        _log(f"TVM kit: {build_kit(_log)}")
    for arch in ("x86_64", "aarch64"):
        _log(f"llama.cpp {arch}: {build_llamacpp(arch, log=_log)}")
    click.echo(f"kits ready in {time.monotonic() - start:.0f} s")
