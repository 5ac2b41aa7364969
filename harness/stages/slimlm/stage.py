"""The SlimLM stage: the project's first plugin (entry point ``slimlm`` in ``slm_bench.stages``)."""

from __future__ import annotations

from pathlib import Path

from harness.stages import Stage


class SlimLMStage(Stage):
    name = "slimlm"
    summary = (
        "SlimLM (MPT-style, biases, RoPE): BPE tokenizer, Lion pre-training, DocAssist SFT (AdamW),"
        " export"
    )

    def run(self, config: dict, out_dir: Path, log=print) -> Path:
        """``config`` keys are those of ``TrainSettings`` (preset, corpus, docassist, steps ...).
        Returns ``out_dir/slimlm-<preset>``; raises a UserError when ``stop_after`` left training
        unfinished."""
        from harness.errors import UserError

        _require_train_extra()
        from harness.stages.slimlm.train import parse_settings, train_slimlm

        model_dir = train_slimlm(parse_settings(config), Path(out_dir), log)
        if model_dir is None:
            raise UserError(
                f"training stopped after stop_after={config.get('stop_after')} steps with a"
                f" checkpoint in {out_dir}/checkpoints; rerun the same command to continue"
            )
        return model_dir


def _require_train_extra() -> None:
    """One line instead of an import traceback when the training dependencies are missing."""
    import importlib.util

    from harness.errors import UserError

    missing = [
        name
        for name in ("torch", "lion_pytorch", "safetensors", "zstandard")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise UserError(
            f"the slimlm stage needs {', '.join(missing)}; install the training extra with `pip"
            ' install -e ".[train]"`'
        )
