"""SlimLM size presets.

Depth and heads are the published ones (SlimLM, arXiv 2411.09944, Table "model sizes"; see
``shared/reference/slimlm-configs.md``). The paper's rendered "model dimension" is 2048 for
every size, which is the context length, not the hidden size (12 layers at d=2048 would be far
above 125M parameters). So the hidden sizes below are OUR CHOICE: for each size, the hidden
size (a multiple of the head count with an even head dimension, for RoPE) and MLP width
(MPT's expansion ratio 4, except 4.5 for 270M) that bring the parameter count closest to the
named figure with the published depth and heads:

=======  ======  =====  ======  =====  ============  =================
preset   layers  heads  hidden  MLP    head_dim      params (computed)
=======  ======  =====  ======  =====  ============  =================
125m     12      12     768     3072   64            123.8M
270m     16      64     1024    4608   16            270.0M
350m     24      16     1024    4096   64            354.0M
450m     20      64     1280    5120   20            458.1M
760m     24      12     1536    6144   128           757.4M
1b       24      16     1792    7168   112           1015.8M
=======  ======  =====  ======  =====  ============  =================

The vocabulary of the sized presets is 50432, MPT's (``mosaicml/mpt-7b`` config.json), since
the paper does not state SlimLM's; the tiny presets take the vocabulary of the BPE tokenizer
trained on the corpus (``tokenizer.py``). Parameters count tied embeddings once.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import UserError

MPT_VOCAB = 50432


@dataclass(frozen=True)
class Preset:
    name: str
    num_layers: int
    num_heads: int
    hidden_size: int
    intermediate_size: int
    nominal_params: int | None  # the size the paper names; None for test presets
    vocab_size: int = MPT_VOCAB
    context_window: int = 2048  # the paper's 2048 "model dimension", read as the context length
    lr_pretrain: float = 3e-4  # the paper's learning rate for this size (Lion)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("125m", 12, 12, 768, 3072, 125_000_000, lr_pretrain=3e-4),
        Preset("270m", 16, 64, 1024, 4608, 270_000_000, lr_pretrain=4e-4),
        Preset("350m", 24, 16, 1024, 4096, 350_000_000, lr_pretrain=3e-4),
        Preset("450m", 20, 64, 1280, 5120, 450_000_000, lr_pretrain=3e-4),
        Preset("760m", 24, 12, 1536, 6144, 760_000_000, lr_pretrain=3e-4),
        Preset("1b", 24, 16, 1792, 7168, 1_000_000_000, lr_pretrain=2e-4),
        # Test sizes: trained in seconds to minutes on a laptop CPU; vocab set by the tokenizer.
        Preset("tiny", 2, 4, 64, 256, None, vocab_size=2048, context_window=2048, lr_pretrain=3e-3),
        Preset("micro", 1, 2, 32, 128, None, vocab_size=512, context_window=2048, lr_pretrain=3e-3),
    )
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise UserError(f"unknown SlimLM preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
