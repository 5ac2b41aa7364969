"""What every model source yields: a normalized config, float weights in HF naming, a tokenizer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from harness.models.config import ModelConfig


@dataclass
class TokenizerSpec:
    """Enough to rebuild the model's tokenizer offline:
    a tokenizer.json text and a chat template."""

    tokenizer_json: str | None
    chat_template: str | None
    bos_token: str | None = None
    eos_token: str | None = None
    add_bos: bool = False


@dataclass
class LoadedModel:
    name: str
    config: ModelConfig
    # HF-style tensor name -> loader returning a float32 array. Lazy, so a 1B model does not
    # sit in memory twice while it is being packed.
    tensors: dict[str, Callable[[], np.ndarray]]
    tokenizer: TokenizerSpec | None
    weights: Literal["real", "dummy"] = "real"
    source: str = ""  # a human-readable origin (file path, wheel + sha256, "dummy seed=0")
    fingerprint: str = ""  # identifies the weights' content for the bundle cache key
    extra: dict = field(default_factory=dict)

    def iter_tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        for name, load in self.tensors.items():
            yield name, load()
