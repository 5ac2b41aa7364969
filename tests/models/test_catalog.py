"""The model catalog: configs are data, parameter counts are computed and checked."""

from __future__ import annotations

import json

import pytest

from harness.errors import UserError
from harness.models.catalog import describe, load_catalog, packed_bytes
from harness.models.resolve import resolve_model

STUDY_MODELS = {
    "smollm-135m-instruct",
    "smollm-360m-instruct",
    "smollm2-135m-instruct",
    "smollm2-360m-instruct",
    "qwen2-0.5b-instruct",
    "qwen2-1.5b-instruct",
    "llama-3.2-1b-instruct",
    "llama-3.2-3b-instruct",
    "gemma-2-2b-it",
    "phi-3-mini-4k-instruct",
    "phi-3.5-mini-instruct",
    "mistral-7b-instruct-v0.3",
    "llama-3.1-8b-instruct",
}


def test_catalog_holds_the_study_models_with_sources():
    catalog = load_catalog()
    assert STUDY_MODELS <= set(catalog)
    assert all(e.source and e.hf_id for e in catalog.values())


@pytest.mark.parametrize("name", sorted(STUDY_MODELS))
def test_parameter_count_computed_from_the_config_matches_published(name):
    entry = load_catalog()[name]
    assert entry.config.param_count() == entry.published_params


def test_nominal_sizes_are_checked_within_tolerance():
    """SlimLM's paper names sizes, not counts: the chosen hidden sizes must land within 3%."""
    from harness.models.catalog import describe

    slimlm = [e for e in load_catalog().values() if e.config.arch == "slimlm"]
    assert len(slimlm) == 6 and all(not e.published_exact for e in slimlm)
    assert all(describe(e)["params_match"] for e in slimlm)
    assert all(e.published_exact for e in load_catalog().values() if e.config.arch != "slimlm")


@pytest.mark.parametrize("arch", ["llama", "qwen2", "slimlm", "gemma2", "phi3"])
@pytest.mark.parametrize("preset_name", ["q4f16_1", "q0f32"])
def test_packed_bytes_equal_the_real_bundle(arch, preset_name):
    from harness.engines.tvm.compile import compile_model
    from harness.quantization import get_preset

    model = resolve_model(f"dummy:tiny-{arch}", log=lambda *_: None)
    preset = get_preset(preset_name)
    bundle = compile_model(model, preset, "llvm", log=lambda *_: None)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert packed_bytes(model.config, preset) == manifest["weight_bytes"]


def test_every_study_model_is_supported():
    assert all(describe(load_catalog()[name])["supported"] for name in STUDY_MODELS)


def test_unsupported_architecture_fails_clearly(monkeypatch):
    from harness.models import registry

    monkeypatch.delitem(registry.ARCHITECTURES, "phi3")  # as if the engine had no Phi-3 module
    assert describe(load_catalog()["phi-3.5-mini-instruct"])["supported"] is False
    with pytest.raises(
        UserError,
        match=r"phi-3.5-mini-instruct: architecture 'phi3' is not supported by the engine yet",
    ):
        resolve_model("phi-3.5-mini-instruct", log=lambda *_: None)


def test_models_json_lists_the_contract_fields():
    from click.testing import CliRunner

    from harness.cli import cli

    result = CliRunner().invoke(cli, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    smol = rows["smollm2-135m-instruct"]
    assert {"name", "params", "arch", "supported", "weights", "bytes"} <= set(smol)
    assert smol["weights"] == "real" and rows["qwen2-0.5b-instruct"]["weights"] == "dummy"
    assert abs(smol["bytes"]["q4f16_1"] - 75_800_000) < 100_000  # the SmolLM2 bundle's 75.8 MB


@pytest.mark.slow
def test_catalog_model_without_weights_runs_labelled_dummy(tmp_path):
    from harness.benchmark import run_benchmark
    from harness.results.journal import load
    from harness.results.schema import RunSpec

    spec = RunSpec(
        model="smollm-135m-instruct",
        quantization="q4f16_1",
        tasks=["qs"],
        lengths=[200],
        repeats=1,
        warmup=0,
        max_new_tokens=4,
        docs=1,
    )
    out = run_benchmark(spec, tmp_path / "run", log=lambda *_: None, write_reports=False)
    (record,), _ = load(out.out_dir)
    assert (
        record.weights == "dummy"
        and record.input_tokenizer == "cl100k"
        and record.params == 134_515_008
    )
    assert record.output_text is None  # dummy weights say nothing worth reading
