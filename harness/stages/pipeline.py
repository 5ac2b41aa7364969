"""``slm-bench pipeline FILE.yaml``: a stage's model, from training to a benchmarked, evaluated run.

    stage (train, export)  ->  OUT/train/<model dir>
    compile + benchmark    ->  OUT/runs/<model>-<quant>/
                               (the same ``run_benchmark`` as `slm-bench run`)
    evaluate (DocAssist)   ->  quality.jsonl in that run folder, so reports join speed and quality
    summary                ->  OUT/pipeline.json (losses, run folder, quality; the baseline's too)

Every step resumes: training from its checkpoints, the benchmark from its journal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from harness.errors import UserError

Log = Callable[[str], None]


class BenchmarkStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quantization: str = "q4f16_1"
    target: str = "llvm"
    device: str = "local"
    tasks: list[str] = ["summ", "qs", "qa"]
    lengths: list[int] = [200]
    repeats: int = 1
    warmup: int = 1
    max_new_tokens: int = 32
    docs: int | None = 1


class EvaluateStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    docassist: str | None = None  # default: the stage's own ``docassist`` setting
    split: str = "test"
    max_new_tokens: int = 64
    limit: int | None = None
    # also evaluate the pre-trained model before fine-tuning (needs a stage that exports it)
    baseline: bool = True


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: str = "slimlm"
    out: str | None = None  # default output folder; --out overrides
    train: dict = Field(default_factory=dict)  # the stage's settings
    benchmark: BenchmarkStep = Field(default_factory=BenchmarkStep)
    evaluate: EvaluateStep | None = Field(default_factory=EvaluateStep)  # null skips evaluation


def load_pipeline(path: Path) -> PipelineSpec:
    from harness.yamlfile import load_validated

    return load_validated(
        Path(path),
        PipelineSpec,
        "fix the pipeline file (see examples/slimlm-tiny.yaml)",
        "fix the pipeline file (see examples/slimlm-tiny.yaml)",
    )


def _rel(path: str | None) -> str | None:
    """Paths in the YAML are relative to the repository
    root (where the example lives), else as given."""
    from harness.paths import REPO_ROOT

    if path is None or Path(path).is_absolute() or Path(path).exists():
        return path
    return str(REPO_ROOT / path) if (REPO_ROOT / path).exists() else path


def run_pipeline(spec: PipelineSpec, out: Path, log: Log = print) -> dict:
    from harness.stages import load_stage

    out = Path(out)
    train_cfg = dict(spec.train)
    if "corpus" in train_cfg:
        train_cfg["corpus"] = [_rel(c) for c in train_cfg["corpus"]]
    if train_cfg.get("docassist"):
        train_cfg["docassist"] = _rel(train_cfg["docassist"])
    if spec.evaluate is not None and spec.evaluate.baseline and spec.stage == "slimlm":
        train_cfg.setdefault("export_base", True)
    stage = load_stage(spec.stage)
    log(f"pipeline: stage {spec.stage} -> {out / 'train'}")
    model_dir = Path(stage.run(train_cfg, out / "train", log))
    summary: dict = {
        "stage": spec.stage,
        "model_dir": str(model_dir),
        "training": _provenance(model_dir),
    }

    run_dir = benchmark(model_dir, spec.benchmark, out / "runs", log)
    summary["run_dir"] = str(run_dir)
    if spec.evaluate is not None:
        dataset = _rel(spec.evaluate.docassist or train_cfg.get("docassist"))
        if not dataset:
            raise UserError(
                "the pipeline's evaluate step needs a DocAssist folder; set evaluate.docassist or"
                " train.docassist, or set evaluate: null"
            )
        summary["quality"] = evaluate(
            str(model_dir), spec.benchmark.quantization, Path(dataset), spec.evaluate, run_dir, log
        )
        base = model_dir.with_name(model_dir.name + "-base")
        if spec.evaluate.baseline and base.is_dir():
            summary["baseline_quality"] = evaluate(
                str(base),
                spec.benchmark.quantization,
                Path(dataset),
                spec.evaluate,
                out / "eval-base",
                log,
            )
    (out / "pipeline.json").write_text(json.dumps(summary, indent=1))
    log(f"pipeline: summary in {out / 'pipeline.json'}")
    return summary


def _provenance(model_dir: Path) -> dict:
    path = model_dir / "provenance.json"
    if not path.is_file():
        return {}
    prov = json.loads(path.read_text())
    keep = (
        "loss_first",
        "loss_last",
        "loss_first10_mean",
        "loss_last10_mean",
        "steps",
        "tokens",
        "seconds",
        "optimizer",
    )
    return {
        "steps": prov.get("steps"),
        "phases": {
            name: {k: ph.get(k) for k in keep} for name, ph in prov.get("phases", {}).items()
        },
    }


def benchmark(model_dir: Path, step: BenchmarkStep, runs: Path, log: Log) -> Path:
    """Compile to the step's preset and measure through the same path as `slm-bench run`."""
    from harness.benchmark import run_benchmark
    from harness.results.schema import RunSpec

    spec = RunSpec(
        model=str(model_dir),
        quantization=step.quantization,
        target=step.target,
        device=step.device,
        tasks=step.tasks,
        lengths=step.lengths,
        repeats=step.repeats,
        warmup=step.warmup,
        max_new_tokens=step.max_new_tokens,
        docs=step.docs,
    )
    run_dir = runs / f"{model_dir.name}-{step.quantization}"
    outcome = run_benchmark(spec, run_dir, log=log)
    if outcome.failed:
        raise UserError(f"{outcome.failed} benchmark requests failed; see {run_dir / 'runner.log'}")
    return run_dir


def evaluate(
    model: str, quantization: str, dataset: Path, step: EvaluateStep, out_dir: Path, log: Log
) -> dict:
    """Quality on the DocAssist split with H3's evaluator (``harness.eval``), written beside the
    speed records; returns intent accuracy and average score per task."""
    from harness.engines.tvm.compile import compile_model
    from harness.eval.evaluate import evaluate as score
    from harness.eval.evaluate import examples_for, write_results
    from harness.eval.generate import BundleGenerator
    from harness.models.resolve import resolve_model
    from harness.quantization import get_preset
    from harness.results.journal import read_run_info

    examples = examples_for(dataset, step.split, step.limit)
    bundle = compile_model(resolve_model(model, log=log), get_preset(quantization), "llvm", log=log)
    generator = BundleGenerator(bundle, max_new_tokens=step.max_new_tokens)
    info = read_run_info(out_dir)
    records, rows = score(
        generator.generate,
        examples,
        model=model,
        quantization=quantization,
        dataset=dataset,
        split=step.split,
        run_id=info.run_id if info is not None else "",
    )
    write_results(out_dir, records, rows)
    result = {
        r.task: {"n": r.n, "intent_accuracy": r.intent_accuracy, "avg_score": r.avg_score}
        for r in records
    }
    result["all"] = {
        "n": len(rows),
        "intent_accuracy": sum(r["intent_ok"] for r in rows) / len(rows) if rows else None,
    }
    log(
        f"quality of {Path(model).name} on {dataset.name}/{step.split}: intent accuracy"
        f" {result['all']['intent_accuracy']:.2f} over {len(rows)} examples"
    )
    return result
