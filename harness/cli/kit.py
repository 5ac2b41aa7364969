"""``slm-bench kit``: build ahead of time the programs the harness otherwise builds on first use."""

from __future__ import annotations

import click


@click.group("kit", epilog="""\b
Examples:
  slm-bench kit llama.cpp --arch aarch64     # static llama-bench/llama-completion for phones
  slm-bench kit llama.cpp --arch x86_64      # for this host, plus libllama.so for llama-cpp-python
Kits are cached under $SLM_BENCH_CACHE/kits (default ~/.cache/slm-bench/kits), keyed by their
source, flags, compiler and build code; a second call prints the cached path at once.""")
def kit():
    """Build the programs the harness runs on devices, once, into the cache.

    A run builds what it needs on first use; this prepares it ahead (CI, before going offline,
    before plugging in a phone). The last line printed is the kit's folder.
    """


@kit.command("llama.cpp", short_help="llama-bench + llama-completion for aarch64 (static) or x86_64.", epilog="""\b
Examples:
  slm-bench kit llama.cpp --arch aarch64
  export SLM_BENCH_LLAMA_BIN_DIR=$(slm-bench kit llama.cpp --arch x86_64 | tail -n 1)
  CMAKE_ARGS="-DLLAMA_BUILD=OFF" pip install llama-cpp-python==0.3.36   # binding, no C++ build
  export LLAMA_CPP_LIB_PATH=$SLM_BENCH_LLAMA_BIN_DIR                    # ... using these libraries
\b
Needs cmake and a C/C++ compiler; for aarch64 Debian's cross compiler
(apt-get install -y cmake gcc-aarch64-linux-gnu g++-aarch64-linux-gnu). Takes minutes on 2 cores.""")
@click.option("--arch", type=click.Choice(["aarch64", "x86_64"]), required=True,
              help="aarch64: fully static, -march=armv8.2-a+dotprod+fp16, runs on any arm64 phone since "
                   "2019 (no NDK). x86_64: shared build tuned to this CPU, with libllama.so and libggml*.so.")
def llamacpp(arch):
    """llama.cpp's llama-bench and llama-completion, from the pinned llama-cpp-python 0.3.36 sdist.

    The source is the llama.cpp vendored in the sdist the project pins (downloaded with pip,
    sha256-checked), so the phone runs the same llama.cpp as the host's --engine llama.cpp. The
    llama-bench and llama-cli runners use this kit when no --runner-bin or
    SLM_BENCH_LLAMA_BIN_DIR names a binary.
    """
    from harness.kits.llamacpp import build_llamacpp

    click.echo(build_llamacpp(arch, log=lambda msg: click.echo(msg, err=True)))
