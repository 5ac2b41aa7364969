"""The llama.cpp engine: GGUF export, logits against TVM, and a run through the common runner.

The export round trip needs only the ``gguf`` package; the rest needs llama-cpp-python (the
optional ``llamacpp`` extra, with its own library or the harness-built host kit's) and is skipped
without it.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from harness.engines import get_engine
from harness.engines.llamacpp.gguf_export import write_fp16_gguf
from harness.errors import UserError
from harness.models.resolve import resolve_model
from harness.models.sources.gguf_file import load_gguf
from harness.quantization import get_preset


def why_no_llama_cpp() -> str | None:
    """Why llama-cpp-python cannot run here (not installed; installed without its library and no
    harness-built host kit to lend it one), or None."""
    if importlib.util.find_spec("llama_cpp") is None:
        return 'llama-cpp-python is not installed (pip install -e ".[llamacpp]")'
    from harness.engines.llamacpp.engine import llama_cpp

    try:
        llama_cpp()
    except UserError as exc:
        return str(exc)
    return None


WHY_NOT = why_no_llama_cpp()
needs_llama_cpp = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")
QUIET = {"log": lambda *_: None}


@pytest.mark.parametrize("name", ["dummy:tiny-llama", "dummy:tiny-qwen2"])
def test_fp16_gguf_export_reads_back_as_the_same_model(name, tmp_path):
    model = resolve_model(name, **QUIET)
    write_fp16_gguf(model, tmp_path / "m.gguf")
    back = load_gguf(tmp_path / "m.gguf", name="back")
    original = dict(model.iter_tensors())
    assert set(back.tensors) == set(original)
    # q/k rows come back in HF order after the llama permutation
    for (
        tensor,
        values,
    ) in original.items():
        np.testing.assert_allclose(
            back.tensors[tensor](), values, atol=2e-3, rtol=1e-3, err_msg=tensor
        )
    assert back.config.model_dump(
        exclude={"norm_eps", "bos_token_id", "eos_token_ids"}
    ) == model.config.model_dump(exclude={"norm_eps", "bos_token_id", "eos_token_ids"})


def test_an_architecture_llama_cpp_lacks_is_refused(tmp_path):
    with pytest.raises(UserError, match="use --engine tvm"):
        write_fp16_gguf(resolve_model("dummy:tiny-slimlm", **QUIET), tmp_path / "m.gguf")


@needs_llama_cpp
@pytest.mark.parametrize("name", ["dummy:tiny-llama", "dummy:tiny-qwen2"])
def test_llama_cpp_and_tvm_compute_the_same_logits(name):
    """Unquantized on both sides (TVM q0f32, GGUF F32 from an fp16 export): same model, same
    maths."""
    model = resolve_model(name, **QUIET)
    ids = np.arange(5, 45, dtype=np.int32)
    logits = {}
    for engine_name in ("tvm", "llama.cpp"):
        engine = get_engine(engine_name)
        session = engine.open_session(engine.build(model, get_preset("q0f32"), "llvm", **QUIET), 64)
        steps = [session.prefill(ids), session.decode(7), session.decode(11)]
        logits[engine_name] = [
            np.asarray(s.numpy() if hasattr(s, "numpy") else s).reshape(-1).copy() for s in steps
        ]
    for ours, theirs in zip(logits["tvm"], logits["llama.cpp"], strict=True):
        span = ours.max() - ours.min()
        assert np.abs(ours - theirs).max() < 2e-3 * span  # the fp16 export is the only difference
        assert ours.argmax() == theirs.argmax()


@needs_llama_cpp
def test_a_run_on_llama_cpp_records_the_engine(tmp_path):
    from harness.benchmark import run_benchmark
    from harness.results.journal import load
    from harness.results.schema import RunSpec

    spec = RunSpec(
        model="dummy:tiny-llama",
        quantization="q4f16_1",
        engine="llama.cpp",
        tasks=["summ"],
        lengths=[200],
        repeats=2,
        warmup=1,
        max_new_tokens=8,
        docs=1,
    )
    outcome = run_benchmark(spec, tmp_path / "run", write_reports=False, **QUIET)
    records, problems = load(outcome.out_dir)
    assert not problems and outcome.measured == 2
    assert {r.engine for r in records} == {"llama.cpp"} and all(
        r.status == "ok" and r.otps for r in records
    )
    bundle = json.loads((tmp_path / "run" / "run.json").read_text())["bundle"]
    assert bundle["engine"] == "llama.cpp" and "Q4_0" in bundle["quantization_detail"]


@needs_llama_cpp
def test_llama_cpp_refuses_what_it_cannot_build():
    engine = get_engine("llama.cpp")
    model = resolve_model("dummy:tiny-llama", **QUIET)
    with pytest.raises(UserError, match="q4f16_1"):
        engine.build(model, get_preset("q4f32_1"), "llvm", **QUIET)
    with pytest.raises(UserError, match="llama-bench"):
        engine.build(model, get_preset("q4f16_1"), "android-cpu", **QUIET)


@needs_llama_cpp
def test_quality_generation_runs_on_a_llama_cpp_bundle():
    """slm-bench eval and grid quality generate through whichever engine built the bundle."""
    from harness.eval.generate import BundleGenerator

    bundle = get_engine("llama.cpp").build(
        resolve_model("smollm2-135m-instruct", **QUIET), get_preset("q4f16_1"), "llvm", **QUIET
    )
    generator = BundleGenerator(bundle, max_new_tokens=12)
    answer = generator.generate("What is the capital of France? Answer in one word.")
    assert "Paris" in answer and 0 < generator.last_output_tokens <= 12


def test_a_binding_without_its_library_borrows_the_host_kits(tmp_path, monkeypatch):
    """llama-cpp-python installed with LLAMA_BUILD=OFF has no llama_cpp/lib: the engine points
    LLAMA_CPP_LIB_PATH at the harness-built host kit, or says how to build one."""
    import importlib.machinery
    import sys

    from harness.engines.llamacpp import engine
    from harness.kits import llamacpp

    package = tmp_path / "site" / "llama_cpp"
    package.mkdir(parents=True)
    spec = importlib.machinery.ModuleSpec("llama_cpp", None, is_package=True)
    spec.submodule_search_locations = [str(package)]
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: spec if name == "llama_cpp" else None
    )
    monkeypatch.delitem(sys.modules, "llama_cpp", raising=False)
    monkeypatch.delenv("LLAMA_CPP_LIB_PATH", raising=False)
    kit = tmp_path / "kit" / "bin"
    kit.mkdir(parents=True)
    (kit / "libllama.so").write_bytes(b"")
    monkeypatch.setattr(llamacpp, "built_kit", lambda arch: None)
    with pytest.raises(
        UserError,
        match=(
            r"installed without its llama.cpp library .*; "
            r"build it: slm-bench kit llama.cpp --arch"
        ),
    ):
        engine._use_harness_built_library()
    monkeypatch.setattr(llamacpp, "built_kit", lambda arch: kit)
    engine._use_harness_built_library()
    assert engine.os.environ["LLAMA_CPP_LIB_PATH"] == str(kit)
    (package / "lib").mkdir()  # a binding with its own library keeps it
    (package / "lib" / "libllama.so").write_bytes(b"")
    monkeypatch.delenv("LLAMA_CPP_LIB_PATH")
    engine._use_harness_built_library()
    assert "LLAMA_CPP_LIB_PATH" not in engine.os.environ
