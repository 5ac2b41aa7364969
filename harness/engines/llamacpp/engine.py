"""The llama.cpp engine behind the engine interface (see harness/engines/__init__.py).

``build`` makes a bundle: ``model.gguf`` quantized by llama.cpp itself, the model's config and
tokenizer files, and a manifest with every file's sha256. Bundles are cached under the same
content-addressed scheme as TVM's (weights fingerprint, config, preset, llama.cpp version,
the fingerprint of this package's code).
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

from harness.cache import build_atomically, mark_used
from harness.engines import engine_code_hash, host_cores
from harness.engines.bundle import (
    base_manifest,
    cache_folder,
    verify_files,
    write_manifest,
    write_model_files,
)
from harness.errors import UserError

NAME = "llama.cpp"
BUNDLE_FORMAT = 1
GGUF_NAME = "model.gguf"
# preset -> (llama.cpp file type name, what it is)
FILE_TYPES = {
    "q4f16_1": (
        "MOSTLY_Q4_0",
        "GGUF Q4_0: 4-bit weights, groups of 32, one fp16 scale per group (llama.cpp's quantizer)",
    ),
    "q0f32": ("ALL_F32", "GGUF F32: unquantized"),
}
# What records call the format that ran, and its activations: llama.cpp's CPU backend quantizes
# a Q4_0 matmul's input to Q8_0 (int8, blocks of 32) for its integer dot products.
FORMATS = {"MOSTLY_Q4_0": ("GGUF Q4_0", "int8"), "ALL_F32": ("GGUF F32", "float32")}


def llama_cpp():
    _use_harness_built_library()
    try:
        import llama_cpp as lib
    except ImportError:
        raise UserError(
            'the llama.cpp engine needs llama-cpp-python: pip install -e ".[llamacpp]" (builds'
            " llama.cpp from source, ~20 min on 2 cores), or reuse the harness's build: slm-bench"
            ' kit llama.cpp --arch x86_64 && CMAKE_ARGS="-DLLAMA_BUILD=OFF" pip install -e'
            ' ".[llamacpp]"'
        ) from None
    return lib


def _use_harness_built_library() -> None:
    """llama-cpp-python installed without its C++ build (``CMAKE_ARGS=-DLLAMA_BUILD=OFF``, seconds
    instead of ~20 min) loads ``libllama.so`` from ``LLAMA_CPP_LIB_PATH``: point it at the host kit
    (``slm-bench kit llama.cpp --arch x86_64``), the same llama.cpp source as the binding's."""
    if "llama_cpp" in sys.modules or os.environ.get("LLAMA_CPP_LIB_PATH"):
        return
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or any(
        (Path(p) / "lib" / "libllama.so").exists() for p in spec.submodule_search_locations or ()
    ):
        return  # not installed (said on import), or built with its own library
    from harness.kits.llamacpp import built_kit

    kit = built_kit(os.uname().machine)
    if kit is None or not (kit / "libllama.so").is_file():
        raise UserError(
            "llama-cpp-python is installed without its llama.cpp library (LLAMA_BUILD=OFF); build"
            f" it: slm-bench kit llama.cpp --arch {os.uname().machine} (or set LLAMA_CPP_LIB_PATH)"
        )
    os.environ["LLAMA_CPP_LIB_PATH"] = str(kit)  # read by llama_cpp when it is imported


def version() -> str:
    return llama_cpp().__version__


def build(model, preset, target: str = "llvm", *, log=print) -> Path:
    if target != "llvm":
        raise UserError(
            f"the llama.cpp engine runs on this host's CPU (--target llvm), not {target}; for a"
            " phone use --runner llama-bench"
        )
    if preset.name not in FILE_TYPES:
        raise UserError(
            f"llama.cpp has no form of {preset.name}; use --quantization q4f16_1 (GGUF Q4_0, 4-bit"
            " group 32) or q0f32"
        )
    lib = llama_cpp()
    out = _bundle_path(model, preset, lib.__version__)
    if (out / "manifest.json").is_file():
        log(f"bundle cache hit: {out}")
        mark_used(out)
        return out
    return build_atomically(out, lambda work: _build_into(work, model, preset, lib, log))


def engine_source_hash() -> str:
    """Fingerprint of the code that shapes a bundle (this package and the bundle layout;
    ``harness.engines.ENGINE_CODE``) by its syntax; bundles record it as ``engine_hash``."""
    return engine_code_hash(NAME)


def _bundle_path(model, preset, lib_version: str) -> Path:
    payload = {
        "format": BUNDLE_FORMAT,
        "weights": model.fingerprint,
        "config": model.config.model_dump(mode="json"),
        "preset": preset.name,
        "llama_cpp": lib_version,
        "engine": engine_source_hash(),
    }
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return cache_folder(model, preset, "llamacpp", key)


def _build_into(work: Path, model, preset, lib, log) -> None:
    from .gguf_export import write_fp16_gguf

    t0 = time.perf_counter()
    source = Path(model.source) if "gguf_file_type" in model.extra else None
    if source is None:
        source = work / "source-f16.gguf"
        log(f"writing {model.name} as an fp16 GGUF for llama.cpp's quantizer")
        write_fp16_gguf(model, source)
    file_type, detail = FILE_TYPES[preset.name]
    log(
        f"quantizing {source.name} to {file_type.split('_', 1)[1]} with llama.cpp {lib.__version__}"
    )
    _quantize(lib, source, work / GGUF_NAME, file_type)
    if source.parent == work:
        source.unlink()
    t_quant = time.perf_counter() - t0

    write_model_files(work, model)
    manifest = {
        "format": BUNDLE_FORMAT,
        **base_manifest(
            NAME,
            lib.__version__,
            model,
            preset,
            detail,
            "llvm",
            fmt=FORMATS[file_type][0],
            activations=FORMATS[file_type][1],
        ),
        "library": GGUF_NAME,
        "weight_bytes": gguf_tensor_bytes(work / GGUF_NAME),
        "engine_hash": engine_source_hash(),  # what `slm-bench cache prune` compares
        "timings_s": {"quantize": round(t_quant, 3)},
    }
    write_manifest(work, manifest)
    log(
        f"bundle written: {manifest['weight_bytes'] / 1e6:.1f} MB of GGUF tensors in {t_quant:.1f}s"
    )


def _quantize(lib, source: Path, out: Path, file_type: str) -> None:
    params = lib.llama_model_quantize_default_params()
    params.ftype = getattr(lib, f"LLAMA_FTYPE_{file_type}")
    params.allow_requantize = True  # the source may itself be quantized (SmolLM2 ships as Q4_1)
    params.nthread = host_cores()
    rc = lib.llama_model_quantize(str(source).encode(), str(out).encode(), ctypes.byref(params))
    if rc != 0 or not out.is_file():
        raise UserError(
            f"llama.cpp could not quantize {source.name} (code {rc}); the file may be damaged —"
            " check it with `slm-bench compile` or re-download it"
        )


def gguf_tensor_bytes(path: Path) -> int:
    """Bytes of tensor data in a GGUF (metadata excluded): what decoding reads per token."""
    import gguf

    return int(sum(t.n_bytes for t in gguf.GGUFReader(str(path)).tensors))


def verify(bundle: Path) -> dict:
    return verify_files(bundle, f"delete {bundle} and rerun to rebuild it")


def open_session(bundle: Path, max_seq_len: int, threads: int | None = None):
    from .session import LlamaCppSession

    return LlamaCppSession(bundle, max_seq_len, threads)
