"""Pre-train SlimLM (next-token, Lion) and fine-tune it on DocAssist (AdamW, loss on answers).

    out/tokenizer.json            trained once, reused on resume
    out/checkpoints/{pretrain,sft}.pt   model + optimizer + step + losses, written atomically
    out/slimlm-<preset>/          the exported model directory (``export.py``)
    out/slimlm-<preset>-base/     the pre-trained model before fine-tuning (``export_base``)

Rerunning the same command resumes: a finished phase is skipped, an unfinished one continues
from its checkpoint, and because batches are functions of the step (``batches.py``) the result
is the same as an uninterrupted run's. Under ``torchrun`` each process trains a DDP replica
(PyTorch's own DistributedDataParallel; ``gloo`` on CPU, ``nccl`` with CUDA) on its own batches;
rank 0 alone writes files.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.errors import UserError

Log = Callable[[str], None]


class TrainSettings(BaseModel):
    """Everything a training run depends on; the stage's config dict is validated into this."""

    model_config = ConfigDict(extra="forbid")

    preset: str = "tiny"
    corpus: list[str] = ["prompts/corpus"]
    docassist: str | None = None  # a DocAssist folder (train.jsonl ...); None skips fine-tuning
    tokenizer_vocab: int | None = None  # default: the preset's vocabulary
    seq_len: int = 256
    batch_size: int = 8
    pretrain_steps: int = 200
    lr_pretrain: float | None = None  # default: the preset's (the paper's for the named sizes)
    weight_decay_pretrain: float = 0.1
    sft_steps: int = 100
    sft_batch_size: int = 4
    lr_sft: float = 1e-3
    weight_decay_sft: float = 0.0
    warmup_frac: float = 0.1
    seed: int = 0
    ckpt_every: int = 50
    log_every: int = 10
    # steps to do in this invocation, then checkpoint and stop (rerun to continue)
    stop_after: int | None = None
    # also export the pre-trained model before fine-tuning (OUT/slimlm-<preset>-base), a baseline
    # for evaluation
    export_base: bool = False

    def fingerprint(self, phase: str) -> str:
        """What a checkpoint must agree on to be resumed
        (step counts may grow, the rest may not)."""
        keep = (
            {"preset", "corpus", "tokenizer_vocab", "seed", "seq_len", "batch_size", "lr_pretrain"}
            if phase == "pretrain"
            else {"docassist", "sft_batch_size", "lr_sft", "seed"}
        )
        return hashlib.sha256(
            json.dumps(self.model_dump(include=keep), sort_keys=True).encode()
        ).hexdigest()[:16]


def parse_settings(config: dict) -> TrainSettings:
    try:
        return TrainSettings.model_validate(config)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(map(str, err["loc"]))
        raise UserError(
            f"training setting {where!r}: {err['msg']}; see the keys of examples/slimlm-tiny.yaml"
        ) from None


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    backend: str | None = None
    device: str = "cpu"

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Dist:
    """Join the process group torchrun set up (WORLD_SIZE > 1), else a single process."""
    import torch
    import torch.distributed as tdist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(device="cuda" if torch.cuda.is_available() else "cpu")
    cuda = torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
    else:  # CPU replicas share the cores: one thread each keeps them from oversubscribing
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    if not tdist.is_initialized():
        tdist.init_process_group(backend=backend)
    return Dist(
        rank=tdist.get_rank(),
        world=world,
        backend=backend,
        device=f"cuda:{local}" if cuda else "cpu",
    )


def _barrier(dist: Dist) -> None:
    if dist.world > 1:
        import torch.distributed as tdist

        tdist.barrier()


@dataclass
class PhaseResult:
    steps: int
    losses: list[float] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    finished: bool = True

    def summary(self, optimizer: str, lr: float) -> dict:
        head, tail = self.losses[:10], self.losses[-10:]
        every = max(1, len(self.losses) // 50)
        return {
            "steps": self.steps,
            "optimizer": optimizer,
            "lr": lr,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 2),
            "loss_first": self.losses[0] if self.losses else None,
            "loss_last": self.losses[-1] if self.losses else None,
            "loss_first10_mean": sum(head) / len(head) if head else None,
            "loss_last10_mean": sum(tail) / len(tail) if tail else None,
            "loss_curve": self.losses[::every],
        }


def lr_at(step: int, steps: int, peak: float, warmup_frac: float) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    warm = max(1, int(steps * warmup_frac))
    if step < warm:
        return peak * (step + 1) / warm
    t = (step - warm) / max(1, steps - warm)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def _save(path: Path, payload: dict) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # a crash mid-write leaves the previous checkpoint intact


def run_phase(
    name: str,
    model,
    optimizer,
    batch_fn,
    steps: int,
    peak_lr: float,
    s: TrainSettings,
    ckpt: Path,
    dist: Dist,
    log: Log,
    budget: list[int | None],
) -> PhaseResult:
    """Train ``model`` for ``steps`` steps of ``batch_fn(step) -> (x, y)``, resuming from ``ckpt``.
    ``budget[0]``: steps this invocation may still take (None: no limit); decremented here."""
    import torch

    from harness.progress import progress
    from harness.stages.slimlm.model import loss_fn

    fingerprint = s.fingerprint(name)
    result = PhaseResult(steps=steps)
    start = 0
    if ckpt.is_file():
        state = torch.load(ckpt, map_location=dist.device, weights_only=False)
        if state["fingerprint"] != fingerprint:
            raise UserError(
                f"{ckpt} is a checkpoint of different {name} settings; use a new --out, or delete"
                " it to start over"
            )
        _unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, result.losses, result.tokens, result.seconds = (
            state["step"],
            state["losses"],
            state["tokens"],
            state["seconds"],
        )
        if start < steps and dist.main:
            log(f"{name}: resuming at step {start} of {steps} from {ckpt}")
    if start >= steps:
        return result
    stop = steps if budget[0] is None else min(steps, start + budget[0])
    if budget[0] is not None:
        budget[0] -= stop - start

    def save(step: int) -> None:
        if dist.main:
            _save(
                ckpt,
                {
                    "phase": name,
                    "step": step,
                    "fingerprint": fingerprint,
                    "model": _unwrap(model).state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "losses": result.losses,
                    "tokens": result.tokens,
                    "seconds": result.seconds,
                },
            )
        _barrier(dist)

    model.train()
    window_tokens, window_start, reported = 0, time.perf_counter(), start
    with progress(steps - start, name) if dist.main else _null_progress() as bar:
        for step in range(start, stop):
            t0 = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, steps, peak_lr, s.warmup_frac)
            x, y = batch_fn(step)
            x, y = x.to(dist.device), y.to(dist.device)
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            value, loss_tokens, positions = _across_ranks(
                [float(loss.detach()), int((y != -100).sum()), x.numel()], dist
            )
            result.losses.append(value / dist.world)  # the mean of the ranks' losses
            result.tokens += int(loss_tokens)  # tokens that carried loss, all ranks
            result.seconds += time.perf_counter() - t0
            # throughput counts every position run through the model
            window_tokens += int(positions)
            value /= dist.world
            done = step + 1
            if done % s.log_every == 0 or done == stop:
                rate = window_tokens / max(1e-9, time.perf_counter() - window_start)
                bar.advance(
                    f"step {done}/{steps} loss {value:.3f} {rate:,.0f} tok/s", steps=done - reported
                )
                window_tokens, window_start, reported = 0, time.perf_counter(), done
            if done % s.ckpt_every == 0 or done == stop:
                save(done)
    result.finished = stop == steps
    return result


class _null_progress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def advance(self, *a, **k):
        pass

    def log(self, *a, **k):
        pass


def _across_ranks(values: list[float], dist: Dist) -> list[float]:
    """Sums of per-step numbers over the DDP ranks (for logging; gradients are DDP's business)."""
    if dist.world == 1:
        return values
    import torch
    import torch.distributed as tdist

    t = torch.tensor(values, dtype=torch.float64, device=dist.device)
    tdist.all_reduce(t)
    return t.tolist()


def _unwrap(model):
    return getattr(model, "module", model)


def _tokenizer(
    s: TrainSettings, files: list[Path], out: Path, vocab: int, dist: Dist, log: Log
) -> str:
    """Train the BPE on the corpus once (rank 0); a rerun reuses the saved one."""
    from harness.stages.slimlm.data import read_file
    from harness.stages.slimlm.tokenizer import train_tokenizer

    path = out / "tokenizer.json"
    if dist.main and not path.is_file():
        log(f"tokenizer: training a {vocab}-entry byte-level BPE on {len(files)} corpus files")
        text = train_tokenizer((doc for f in files for doc in read_file(f)), vocab)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    _barrier(dist)
    return path.read_text()


def sft_examples(folder: str, chat, max_len: int, log: Log) -> tuple[list, dict]:
    """DocAssist train split -> tokenized (prompt, answer) examples that fit the window."""
    from harness.docassist.format import load_examples, split_path
    from harness.stages.slimlm.batches import sft_example
    from harness.stages.slimlm.data import file_hashes
    from harness.stages.slimlm.tokenizer import IM_END

    examples = [
        sft_example(chat, ex.prompt, ex.target, IM_END) for ex in load_examples(folder, "train")
    ]
    fitting = [e for e in examples if len(e.ids) <= max_len]
    if len(fitting) < len(examples):
        log(
            f"sft: {len(examples) - len(fitting)} of {len(examples)} examples exceed the"
            f" {max_len}-token window and are left out"
        )
    if not fitting:
        raise UserError(
            f"{folder}: no DocAssist training example fits the model's {max_len}-token window; use"
            " a preset with a longer context"
        )
    return fitting, {
        "dir": str(folder),
        "train_sha256": file_hashes([split_path(folder, "train")]).popitem()[1],
        "examples": len(fitting),
    }


def train_slimlm(s: TrainSettings, out: Path, log: Log = print) -> Path | None:
    """Pre-train, fine-tune and export; returns the model directory (None when ``stop_after``
    ended this invocation early: rerun to continue)."""
    dist = setup_distributed()
    try:
        return _train(s, Path(out), dist, log)
    finally:
        if dist.world > 1:
            import torch.distributed as tdist

            tdist.destroy_process_group()


def _train(s: TrainSettings, out: Path, dist: Dist, log: Log) -> Path | None:
    from importlib.metadata import version

    import lion_pytorch
    import torch

    from harness.stages.slimlm.batches import pretrain_batch, sft_batch, token_stream
    from harness.stages.slimlm.data import (
        corpus_files,
        corpus_hash,
        file_hashes,
        iter_documents,
    )
    from harness.stages.slimlm.export import export_model
    from harness.stages.slimlm.model import SlimLM, SlimLMConfig
    from harness.stages.slimlm.presets import get_preset
    from harness.stages.slimlm.tokenizer import (
        EOS,
        IM_END,
        chat_tokenizer,
        padded_vocab,
        vocab_size_of,
    )

    preset = get_preset(s.preset)
    files = corpus_files(s.corpus)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    tok_json = _tokenizer(s, files, out, s.tokenizer_vocab or preset.vocab_size, dist, log)
    chat = chat_tokenizer(tok_json)
    cfg = SlimLMConfig(
        vocab_size=padded_vocab(vocab_size_of(tok_json)),
        hidden_size=preset.hidden_size,
        intermediate_size=preset.intermediate_size,
        num_layers=preset.num_layers,
        num_heads=preset.num_heads,
        context_window=preset.context_window,
        eos_token_id=chat.token_id(IM_END),
    )
    if s.seq_len > cfg.context_window:
        raise UserError(
            f"seq_len {s.seq_len} exceeds preset {preset.name}'s context window of"
            f" {cfg.context_window}; use a smaller seq_len"
        )
    model = SlimLM(cfg, seed=s.seed).to(dist.device)
    wrapped = torch.nn.parallel.DistributedDataParallel(model) if dist.world > 1 else model
    if dist.main:
        log(
            f"slimlm-{preset.name}: {model.num_params():,} parameters, vocab {cfg.vocab_size},"
            f" world size {dist.world}" + (f" ({dist.backend})" if dist.backend else "")
        )

    stream = token_stream(iter_documents(files), chat, chat.token_id(EOS))
    if len(stream) <= s.seq_len + 1:
        raise UserError(
            f"the corpus has {len(stream)} tokens, fewer than one seq_len={s.seq_len} window; add"
            " text or lower seq_len"
        )
    lr_pre = s.lr_pretrain or preset.lr_pretrain
    lion = lion_pytorch.Lion(model.parameters(), lr=lr_pre, weight_decay=s.weight_decay_pretrain)
    budget = [s.stop_after]
    pre = run_phase(
        "pretrain",
        wrapped,
        lion,
        lambda step: pretrain_batch(stream, s.seed, step, dist.rank, s.batch_size, s.seq_len),
        s.pretrain_steps,
        lr_pre,
        s,
        out / "checkpoints" / "pretrain.pt",
        dist,
        log,
        budget,
    )
    phases = {"pretrain": pre.summary(f"Lion (lion-pytorch {version('lion-pytorch')})", lr_pre)}
    if not pre.finished:
        return None
    hashes = file_hashes(files)
    data = {
        "corpus": {
            "files": {Path(k).name: v for k, v in hashes.items()},
            "sha256": corpus_hash(hashes),
            "tokens": len(stream),
        }
    }
    common = {
        "preset": preset.name,
        "settings": s.model_dump(),
        "tokenizer": {
            "vocab": vocab_size_of(tok_json),
            "sha256": hashlib.sha256(tok_json.encode()).hexdigest(),
        },
        "distributed": {"world_size": dist.world, "backend": dist.backend},
        "torch": torch.__version__,
    }
    if s.export_base and dist.main:
        base_dir = export_model(
            model,
            tok_json,
            out / f"slimlm-{preset.name}-base",
            {
                **common,
                "data": {"corpus": data["corpus"]},
                "steps": {"pretrain": pre.steps},
                "phases": dict(phases),
            },
        )
        log(f"exported the pre-trained model (no fine-tuning) to {base_dir}")
    if s.docassist and s.sft_steps > 0:
        examples, data["docassist"] = sft_examples(
            s.docassist, chat, cfg.context_window, log if dist.main else lambda _: None
        )
        adamw = torch.optim.AdamW(model.parameters(), lr=s.lr_sft, weight_decay=s.weight_decay_sft)
        sft = run_phase(
            "sft",
            wrapped,
            adamw,
            lambda step: sft_batch(examples, s.seed, step, dist.rank, s.sft_batch_size),
            s.sft_steps,
            s.lr_sft,
            s,
            out / "checkpoints" / "sft.pt",
            dist,
            log,
            budget,
        )
        phases["sft"] = sft.summary("AdamW", s.lr_sft)
        if not sft.finished:
            return None
    # Named after the model, not "model": the directory
    # name is the model's name in bundles and reports.
    model_dir = out / f"slimlm-{preset.name}"
    if dist.main:
        export_model(
            model,
            tok_json,
            model_dir,
            {
                **common,
                "data": data,
                "steps": {k: v["steps"] for k, v in phases.items()},
                "phases": phases,
            },
        )
        log(f"exported {model_dir}")
    _barrier(dist)
    return model_dir
