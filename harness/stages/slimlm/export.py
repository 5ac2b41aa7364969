"""Write a trained SlimLM as a model directory the engine compiles like any other.

``DIR/config.json``         ``model_type: "slimlm"`` and the keys
                            ``harness.models.arch.slimlm`` reads
``DIR/model.safetensors``   float32 weights in HF naming
                            (``model.layers.N.self_attn.q_proj.weight`` ...)
``DIR/tokenizer.json``      the byte-level BPE
``DIR/tokenizer_config.json`` and ``DIR/chat_template.jinja``
                            the chat template, end-of-answer token
``DIR/provenance.json``     data hashes, steps, losses, code version: how this model came to be
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.errors import UserError

PROVENANCE = "provenance.json"


def export_model(model, tokenizer_json: str, out: Path, provenance: dict) -> Path:
    from safetensors.torch import save_file

    from harness.stages.slimlm.tokenizer import tokenizer_config
    from harness.versioning import code_version

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    (out / "config.json").write_text(json.dumps(cfg.to_hf(), indent=1))
    state = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "tokenizer.json").write_text(tokenizer_json)
    tc = tokenizer_config()
    (out / "tokenizer_config.json").write_text(json.dumps(tc, indent=1))
    (out / "chat_template.jinja").write_text(tc["chat_template"])
    record = {
        "model_type": "slimlm",
        "params": model.num_params(),
        "config": cfg.as_dict(),
        "code_version": code_version(),
        **provenance,
    }
    (out / PROVENANCE).write_text(json.dumps(record, indent=1))
    return out


def load_exported(path: Path):
    """(SlimLM, tokenizer.json text) back from an exported directory."""
    import torch
    from safetensors.torch import load_file

    from harness.stages.slimlm.model import SlimLM, SlimLMConfig

    path = Path(path)
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise UserError(
            f"{path} is not an exported SlimLM directory (config.json, model.safetensors); export"
            " one with `slm-bench train slimlm ... --out DIR`"
        )
    hf = json.loads((path / "config.json").read_text())
    if hf.get("model_type") != "slimlm":
        raise UserError(
            f"{path}: model_type is {hf.get('model_type')!r}, not 'slimlm'; point at a SlimLM"
            " export"
        )
    model = SlimLM(SlimLMConfig.from_hf(hf))
    with torch.no_grad():
        model.load_state_dict(load_file(str(path / "model.safetensors")))
    return model.eval(), (path / "tokenizer.json").read_text()
