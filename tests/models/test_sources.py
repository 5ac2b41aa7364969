"""Model sources: bad input gets one line naming the file and the tensor; configs count right."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.errors import UserError
from harness.models.registry import config_from_hf, tiny_configs
from harness.models.resolve import resolve_model
from harness.models.sources.dummy import hf_shapes, load_dummy
from harness.models.sources.hf_dir import load_hf_dir, save_hf_dir

# Public configs (Hugging Face model cards' config.json) with their published parameter counts.
SMOLLM2_135M = {
    "model_type": "llama",
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "vocab_size": 49152,
    "max_position_embeddings": 8192,
    "rope_theta": 100000.0,
    "tie_word_embeddings": True,
}
QWEN2_05B = {
    "model_type": "qwen2",
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": True,
}
LLAMA32_1B = {
    "model_type": "llama",
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "rope_theta": 500000.0,
    "tie_word_embeddings": True,
    "rope_scaling": {
        "factor": 32.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
}


@pytest.mark.parametrize(
    "hf, published",
    [(SMOLLM2_135M, 134_515_008), (QWEN2_05B, 494_032_768), (LLAMA32_1B, 1_235_814_400)],
)
def test_parameter_count_from_config_matches_published(hf, published):
    assert config_from_hf(hf).param_count() == published


def test_unknown_architecture_is_named(tmp_path):
    with pytest.raises(
        UserError, match=r"model_type 'gpt_neox' is not supported; supported: .*llama"
    ):
        config_from_hf({"model_type": "gpt_neox"}, tmp_path / "config.json")


def test_unknown_model_name_lists_what_exists():
    with pytest.raises(
        UserError,
        match=r"model 'no-such-model' not found: not a built-in name \(smollm2-135m-instruct",
    ):
        resolve_model("no-such-model")


def test_missing_and_garbage_gguf(tmp_path):
    with pytest.raises(UserError, match="GGUF file not found"):
        resolve_model(str(tmp_path / "absent.gguf"))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all" * 10)
    with pytest.raises(UserError, match=r"bad.gguf: not a readable GGUF file"):
        resolve_model(str(bad))


def _tiny_hf_dir(tmp_path, arch="llama"):
    cfg = tiny_configs()[f"tiny-{arch}"]
    model = load_dummy("t", cfg)
    hf = {
        "model_type": arch,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "vocab_size": cfg.vocab_size,
        "tie_word_embeddings": True,
    }
    save_hf_dir(tmp_path / "m", hf, dict(model.iter_tensors()))
    return tmp_path / "m"


def test_hf_dir_round_trip(tmp_path):
    path = _tiny_hf_dir(tmp_path)
    loaded = load_hf_dir(path)
    dummy = load_dummy("t", tiny_configs()["tiny-llama"])
    assert set(loaded.tensors) == set(hf_shapes(dummy.config))
    name = "model.layers.1.mlp.down_proj.weight"
    np.testing.assert_array_equal(loaded.tensors[name](), dummy.tensors[name]())


def test_truncated_safetensors_names_file_and_tensor(tmp_path):
    path = _tiny_hf_dir(tmp_path)
    st = path / "model.safetensors"
    st.write_bytes(st.read_bytes()[:-100])
    with pytest.raises(
        UserError,
        match=r"model.safetensors: tensor \S+ runs past the end of the file \(truncated\)",
    ):
        load_hf_dir(path)


def test_nan_weights_name_the_tensor(tmp_path):
    path = _tiny_hf_dir(tmp_path)
    st = path / "model.safetensors"
    raw = bytearray(st.read_bytes())
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_len])
    start = 8 + header_len + header["model.norm.weight"]["data_offsets"][0]
    raw[start : start + 4] = np.float32(np.nan).tobytes()
    st.write_bytes(bytes(raw))
    with pytest.raises(UserError, match=r"tensor model.norm.weight holds NaN/Inf values"):
        load_hf_dir(path).tensors["model.norm.weight"]()


def test_wrong_shape_names_the_tensor(tmp_path):
    from harness.engines.tvm.weights import convert
    from harness.quantization import get_preset

    model = load_dummy("t", tiny_configs()["tiny-llama"])
    model.tensors["model.layers.0.self_attn.o_proj.weight"] = lambda: np.zeros((3, 3), np.float32)
    with pytest.raises(
        UserError,
        match=(
            r"tensor model.layers.0.self_attn.o_proj.weight has shape \(3, 3\), "
            r"expected \(64, 64\)"
        ),
    ):
        list(convert(model, get_preset("q4f16_1")))


def test_missing_config_json(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        resolve_model(str(tmp_path / "empty"))
