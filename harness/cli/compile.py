"""``slm-bench compile``: build (or find in the cache) a model bundle for a target."""

from __future__ import annotations

import json

import click

EPILOG = """\b
Examples:
  slm-bench compile --model smollm2-135m-instruct                      # host CPU, q4f16_1
  # ARM64 library: phone kit, ARM64 boards
  slm-bench compile --model smollm2-135m-instruct --target arm64-linux
  slm-bench compile --model smollm2-135m-instruct --target android-cpu # ARM64 objects for a phone
  slm-bench compile --model smollm2-135m-instruct --target opencl      # Adreno OpenCL kernels
  slm-bench compile --model dummy:tiny-qwen2 --quantization q0f32 --force

A bundle holds the model library, weight shards, config, tokenizer and manifest.json (sha256 of
every file). Bundles are cached under $SLM_BENCH_CACHE (default ~/.cache/slm-bench)/bundles, keyed
by weights, preset, target, TVM version and engine source: the same inputs compile once."""


@click.command("compile", epilog=EPILOG)
@click.option(
    "--model",
    "-m",
    required=True,
    help="Built-in name, .gguf file, HF model directory, or dummy:tiny-<arch>.",
)
@click.option(
    "--quantization",
    "-q",
    default="q4f16_1",
    show_default=True,
    help="q4f16_1, q4f16_1a8 (int8 activations), q4f32_1 or q0f32.",
)
@click.option(
    "--target",
    "-t",
    default="llvm",
    show_default=True,
    help="llvm, llvm-avx2, cuda, arm64-linux, arm64-linux-i8mm, android-cpu or opencl.",
)
@click.option("--force", is_flag=True, help="Recompile even if the bundle is cached.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def compile_cmd(model, quantization, target, force, as_json):
    """Compile MODEL to a bundle for TARGET with the given quantization preset."""
    from harness.engines.tvm.compile import compile_model
    from harness.models.resolve import resolve_model
    from harness.quantization import get_preset

    log = (lambda msg: click.echo(msg, err=True)) if as_json else click.echo
    preset = get_preset(quantization)
    loaded = resolve_model(model, log=log)
    bundle = compile_model(loaded, preset, target, force=force, log=log)
    manifest = json.loads((bundle / "manifest.json").read_text())
    if as_json:
        click.echo(json.dumps({"bundle": str(bundle), **manifest}, indent=1))
    else:
        click.echo(
            f"{bundle}\n  {manifest['params'] / 1e6:.1f}M parameters,"
            f" {manifest['weight_bytes'] / 1e6:.1f} MB of weights, library {manifest['library']}"
        )
