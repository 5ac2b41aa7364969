"""SlimLM's tokenizer: a byte-level BPE trained on the pre-training corpus, with a chat template.

Trained with Hugging Face ``tokenizers`` (byte-level, so any text encodes, nothing is unknown).
The chat template is ChatML-style; it is saved in ``tokenizer_config.json`` and rendered by the
project's own ``harness.models.tokenizer.ChatTokenizer``, the same code that encodes prompts for
the benchmark, so a fine-tuned model sees at training time exactly the tokens it is served.
"""

from __future__ import annotations

from collections.abc import Iterable

EOS = "<|endoftext|>"  # separates pre-training documents
IM_START, IM_END = "<|im_start|>", "<|im_end|>"  # chat turns; IM_END ends an answer
SPECIAL_TOKENS = [EOS, IM_START, IM_END]

# Whitespace control (trim_blocks/lstrip_blocks) is on in ChatTokenizer; this template has no
# newline outside expressions, so it renders the same either way.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> str:
    """Train a byte-level BPE of ``vocab_size`` entries
    (specials included); returns tokenizer.json text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok.to_str()


def vocab_size_of(tokenizer_json: str) -> int:
    """Entries of the trained tokenizer (a small corpus may give fewer than asked for)."""
    from tokenizers import Tokenizer

    return Tokenizer.from_str(tokenizer_json).get_vocab_size(with_added_tokens=True)


def padded_vocab(n: int, multiple: int = 64) -> int:
    """The model's embedding rows: the tokenizer's size rounded up, as MPT pads 50277 to 50432.
    The engine's matmul kernels need a multiple of 16 rows; the padding ids are never produced."""
    return -(-n // multiple) * multiple


def tokenizer_config() -> dict:
    """tokenizer_config.json: the chat template and the end-of-answer token."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": CHAT_TEMPLATE,
        "bos_token": None,
        "eos_token": IM_END,
        "add_bos": False,
        "add_bos_token": False,
    }


def chat_tokenizer(tokenizer_json: str):
    """The project's ChatTokenizer over this tokenizer and template."""
    from harness.models.tokenizer import ChatTokenizer

    cfg = tokenizer_config()
    return ChatTokenizer(tokenizer_json, cfg["chat_template"], None, cfg["eos_token"], False)
