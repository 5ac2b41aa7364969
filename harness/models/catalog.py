"""The model catalog: the SlimLM study's models as data (``harness/models/catalog/*.yaml``).

Each entry holds a public architecture config (source named), the published parameter count it
is checked against, the tokenizer family and which weights are at hand. A catalog model without
weights runs with seeded dummy weights of the right shapes (speed only, labelled ``dummy``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from harness.models.config import ModelConfig
from harness.quantization import PRESETS, QuantPreset
from harness.yamlfile import load_named_folder

CATALOG_DIR = Path(__file__).resolve().parent / "catalog"
NOMINAL_TOLERANCE = 0.03


class CatalogEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    display: str
    hf_id: str
    source: str
    published_params: int
    # False where the source names a size ("125M") rather than a count: then the computed count
    # must fall within NOMINAL_TOLERANCE of it.
    published_exact: bool = True
    tokenizer_family: str
    weights: Literal["builtin", "none"]
    notes: str | None = None
    config: ModelConfig

    @property
    def supported(self) -> bool:
        from harness.models.registry import ARCHITECTURES

        return self.config.arch in ARCHITECTURES


@lru_cache(maxsize=1)
def load_catalog(folder: Path = CATALOG_DIR) -> dict[str, CatalogEntry]:
    return load_named_folder(folder, CatalogEntry, "fix the catalog file", "fix the catalog file")


def packed_bytes(cfg: ModelConfig, preset: QuantPreset) -> int:
    """Bytes of weights in a bundle for this config and preset, as the engine packs them:
    linears (and the embedding table) at the preset's width, norms and biases in fp32."""
    per_weight = preset.bytes_per_weight()
    linears = sum(n * k for n, k in cfg.linear_shapes().values()) * cfg.num_layers
    linears += cfg.vocab_size * cfg.hidden_size * (1 if cfg.tie_word_embeddings else 2)
    h, d = cfg.hidden_size, cfg.head_dim
    fp32 = (
        cfg.hidden_size
        * (2 if cfg.norm == "layer" else 1)
        * (cfg.norms_per_layer * cfg.num_layers + 1)
    )
    if cfg.qkv_bias:
        fp32 += (cfg.num_heads + 2 * cfg.num_kv_heads) * d * cfg.num_layers
    if cfg.linear_bias:
        fp32 += (h + cfg.linear_shapes()["up_proj"][0] + h) * cfg.num_layers
    return int(linears * per_weight) + 4 * fp32


def describe(entry: CatalogEntry) -> dict:
    """One row of ``slm-bench models``."""
    params = entry.config.param_count()
    return {
        "name": entry.name,
        "display": entry.display,
        "params": params,
        "published_params": entry.published_params,
        "params_match": params == entry.published_params
        if entry.published_exact
        else abs(params / entry.published_params - 1) <= NOMINAL_TOLERANCE,
        "published_exact": entry.published_exact,
        "arch": entry.config.arch,
        "supported": entry.supported,
        "weights": "real" if entry.weights == "builtin" else "dummy",
        "context_window": entry.config.context_window,
        "tokenizer_family": entry.tokenizer_family,
        "bytes": {name: packed_bytes(entry.config, preset) for name, preset in PRESETS.items()},
        "source": entry.source,
        "notes": entry.notes,
    }
