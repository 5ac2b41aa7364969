"""Training batches as pure functions of (seed, step, rank).

Nothing about the data order lives in process state, so a run resumed from a checkpoint at step
k draws exactly the batches the uninterrupted run would have drawn, and each DDP rank draws its
own slice without a sampler.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE = -100  # cross_entropy's ignore_index: positions that carry no loss


def _generator(seed: int, step: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1009 + rank)


def token_stream(docs, tokenizer, eos_id: int) -> torch.Tensor:
    """All documents' tokens, each followed by the end-of-text id, as one 1-D tensor."""
    ids: list[int] = []
    for text in docs:
        ids += tokenizer.encode(text)
        ids.append(eos_id)
    return torch.tensor(ids, dtype=torch.long)


def pretrain_batch(
    stream: torch.Tensor, seed: int, step: int, rank: int, batch: int, seq_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` random windows of the stream: inputs and next-token targets."""
    starts = torch.randint(
        0, len(stream) - seq_len - 1, (batch,), generator=_generator(seed, step, rank)
    )
    windows = torch.stack([stream[s : s + seq_len + 1] for s in starts.tolist()])
    return windows[:, :-1], windows[:, 1:]


@dataclass
class SFTExample:
    ids: list[int]  # prompt (chat-templated) + answer + end-of-answer
    answer_start: int  # first index of the answer tokens


def sft_example(chat, prompt: str, target: str, end_token: str) -> SFTExample:
    """The prompt exactly as the engine serves it (the project's ChatTokenizer and template),
    then the answer and the end-of-answer token, which is what the loss is taken on."""
    prompt_ids = chat.encode_chat(prompt)
    answer_ids = chat.encode(target) + [chat.token_id(end_token)]
    return SFTExample(prompt_ids + answer_ids, len(prompt_ids))


def sft_batch(
    examples: list[SFTExample], seed: int, step: int, rank: int, batch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded inputs and targets with the loss on answer tokens only. Right padding needs
    no attention mask: with causal attention no real token attends to the padding after it."""
    picks = torch.randint(
        0, len(examples), (batch,), generator=_generator(seed, step, rank)
    ).tolist()
    chosen = [examples[i] for i in picks]
    width = max(len(e.ids) for e in chosen) - 1
    x = torch.zeros(batch, width, dtype=torch.long)
    y = torch.full((batch, width), IGNORE, dtype=torch.long)
    for row, ex in enumerate(chosen):
        ids = torch.tensor(ex.ids, dtype=torch.long)
        n = len(ids) - 1
        x[row, :n] = ids[:-1]
        targets = ids[1:].clone()
        # position t predicts token t+1: answers start at answer_start-1
        targets[: ex.answer_start - 1] = IGNORE
        y[row, :n] = targets
    return x, y
