"""SlimLM presets: published depth and heads, chosen hidden sizes near the named size, and the
model catalog's slimlm-* entries built from the same numbers."""

from __future__ import annotations

import pytest

# SlimLM, arXiv 2411.09944 (shared/reference/slimlm-configs.md): size -> (layers, heads).
PUBLISHED = {
    "125m": (12, 12),
    "270m": (16, 64),
    "350m": (24, 16),
    "450m": (20, 64),
    "760m": (24, 12),
    "1b": (24, 16),
}


def _engine_config(preset):
    from harness.models.arch.slimlm import config_from_hf
    from harness.stages.slimlm.model import SlimLMConfig

    cfg = SlimLMConfig(
        preset.vocab_size,
        preset.hidden_size,
        preset.intermediate_size,
        preset.num_layers,
        preset.num_heads,
        preset.context_window,
    )
    return config_from_hf(cfg.to_hf())


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_preset_has_published_shape_and_named_size(name):
    from harness.stages.slimlm.presets import get_preset

    p = get_preset(name)
    assert (p.num_layers, p.num_heads) == PUBLISHED[name]
    assert abs(_engine_config(p).param_count() / p.nominal_params - 1) < 0.02


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_catalog_entry_matches_the_preset(name):
    from harness.models.catalog import load_catalog
    from harness.stages.slimlm.presets import get_preset

    entry = load_catalog()[f"slimlm-{name}"]
    preset = get_preset(name)
    expected = _engine_config(preset).model_copy(update={"eos_token_ids": (), "bos_token_id": None})
    assert entry.config == expected
    assert entry.published_params == preset.nominal_params and entry.supported


def test_pytorch_parameter_count_equals_the_engine_count():
    from harness.stages.slimlm.model import SlimLM, SlimLMConfig
    from harness.stages.slimlm.presets import get_preset

    p = get_preset("tiny")
    model = SlimLM(
        SlimLMConfig(
            p.vocab_size,
            p.hidden_size,
            p.intermediate_size,
            p.num_layers,
            p.num_heads,
            p.context_window,
        )
    )
    assert model.num_params() == _engine_config(p).param_count()
