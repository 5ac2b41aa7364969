"""Trim the repetition loops that greedy decoding falls into, before an answer becomes a target.

Small local annotators (SmolLM2-135M) often answer well for a sentence or two and then repeat
themselves until the token cap: "..., the type of pallets, the number of pallets, the type of
pallets, ...". Kept as-is, those loops would become fine-tuning targets and references. The
cleanup is deliberately conservative and changes nothing in a well-formed answer:

1. cut where a four-word phrase comes round a third time (at its second occurrence, so the
   phrase is kept once; the cut sentence is closed at its last comma or dropped);
2. cut at the first sentence (or line) that repeats an earlier one, ignoring case and
   punctuation (a repeat cut short by the token cap counts);
3. if the answer then ends mid-sentence (the token cap), drop the unfinished tail when at
   least one whole sentence remains.
"""

from __future__ import annotations

import re

_SPAN = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")
_END = re.compile(r"""[.!?]["')\]]?\s*$""")
# a sentence end followed by more text; "Dr." and friends are not one
_SENTENCE_END = re.compile(
    r"""(?<!\bDr)(?<!\bMr)(?<!\bMs)(?<!\bSt)(?<!\bNo)(?<!\bvs)[.!?]["')\]]?(?=\s)"""
)


def trim_repetition(text: str) -> str:
    """``text`` without a repetition loop or an unfinished last sentence (see module docstring)."""
    text = _cut_phrase_loop(text.strip())
    text = _cut_repeated_sentences(text)
    return _drop_unfinished_tail(text)


def _key(span: str) -> str:
    return re.sub(r"\W+", " ", span.lower()).strip()


def _cut_repeated_sentences(text: str) -> str:
    seen: list[str] = []
    for match in _SPAN.finditer(text):
        key = _key(match.group())
        if not key:
            continue
        # a repeat cut short by the token cap is a prefix of the sentence it repeats
        if any(key == k or (len(key.split()) >= 3 and k.startswith(key)) for k in seen):
            return text[: match.start()].rstrip()
        seen.append(key)
    return text


def _cut_phrase_loop(text: str, n: int = 4) -> str:
    words = [(m.start(), m.group().lower().strip(".,;:!?\"'()")) for m in re.finditer(r"\S+", text)]
    where: dict[tuple[str, ...], list[int]] = {}
    for i in range(len(words) - n + 1):
        gram = tuple(w for _, w in words[i : i + n])
        starts = where.setdefault(gram, [])
        starts.append(words[i][0])
        if len(starts) == 3:
            return _close_sentence(text[: starts[1]])
    return text


def _close_sentence(head: str) -> str:
    """End a text cut mid-sentence: at the sentence's last comma, else after the previous
    whole sentence, else with a full stop where it was cut."""
    head = head.rstrip(" ,;:-\u2013\u2014\n\t")
    if not head or _END.search(head):
        return head
    last_end = max((m.end() for m in _SENTENCE_END.finditer(head)), default=0)
    comma = head.rfind(",", last_end)
    if comma > last_end:
        return head[:comma].rstrip() + "."
    if last_end:
        return head[:last_end].rstrip()
    return head + "."


def _drop_unfinished_tail(text: str) -> str:
    if (
        not text
        or _END.search(text)
        or text.rstrip().endswith(("?", ":"))
        or "\n" in text.strip()[-2:]
    ):
        return text
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[: ends[-1]].rstrip() if ends else text
