"""Plugin stages: a third-party package adds a stage through the slm_bench.stages entry point,
without touching the project, and `slm-bench stages` lists and runs it.

The package is built and installed by pip for real (``pip install --target``, so the shared
virtual environment is left alone); the CLI runs in a subprocess that has that folder on its path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.errors import UserError

PLUGIN_MODULE = '''
"""A third-party stage: writes a seeded tiny Llama model directory."""
import numpy as np

from harness.models.sources.hf_dir import save_hf_dir
from harness.stages import Stage


class DemoStage(Stage):
    summary = "demo: a seeded tiny Llama model directory"

    def run(self, config, out_dir, log=print):
        h, inter, layers, vocab = 32, 64, int(config.get("layers", 1)), 128
        rng = np.random.default_rng(int(config.get("seed", 0)))
        w = lambda *shape: rng.standard_normal(shape).astype(np.float32) * 0.02
        tensors = {
            "model.embed_tokens.weight": w(vocab, h),
            "model.norm.weight": np.ones(h, np.float32),
        }
        for i in range(layers):
            p = f"model.layers.{i}."
            tensors.update(
                {
                    p + "input_layernorm.weight": np.ones(h, np.float32),
                    p + "post_attention_layernorm.weight": np.ones(h, np.float32),
                }
            )
            tensors.update({p + f"self_attn.{x}_proj.weight": w(h, h) for x in "qkvo"})
            tensors.update(
                {
                    p + "mlp.gate_proj.weight": w(inter, h),
                    p + "mlp.up_proj.weight": w(inter, h),
                    p + "mlp.down_proj.weight": w(h, inter),
                }
            )
        cfg = {
            "model_type": "llama",
            "hidden_size": h,
            "intermediate_size": inter,
            "num_hidden_layers": layers,
            "num_attention_heads": 4,
            "vocab_size": vocab,
            "tie_word_embeddings": True,
        }
        model_dir = out_dir / "model"
        save_hf_dir(model_dir, cfg, tensors)
        (model_dir / "provenance.json").write_text('{"stage": "demo"}')
        log(f"demo: wrote {model_dir}")
        return model_dir
'''

PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "slmb-demo-stage"
version = "0.3.0"

[tool.setuptools]
py-modules = ["slmb_demo_stage", "slmb_broken_stage"]

[project.entry-points."slm_bench.stages"]
demo = "slmb_demo_stage:DemoStage"
broken = "slmb_broken_stage:Stage"
"""


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The demo package, built and installed by pip into its own folder."""
    src = tmp_path_factory.mktemp("plugin-src")
    (src / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (src / "slmb_demo_stage.py").write_text(PLUGIN_MODULE)
    (src / "slmb_broken_stage.py").write_text(
        "import slmb_no_such_dependency  # a plugin whose dependency is missing\n"
    )
    site = tmp_path_factory.mktemp("plugin-site")
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "--target",
            str(site),
            str(src),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stderr
    assert (site / "slmb_demo_stage-0.3.0.dist-info" / "entry_points.txt").is_file()
    return site


def _cli(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
    }
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_installed_plugin_is_listed_beside_the_builtin_slimlm(plugin_site):
    result = _cli(plugin_site, "stages", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["slimlm"]["package"].startswith("slm-bench ") and rows["slimlm"]["error"] is None
    assert rows["demo"] == {
        "name": "demo",
        "target": "slmb_demo_stage:DemoStage",
        "package": "slmb-demo-stage 0.3.0",
        "summary": "demo: a seeded tiny Llama model directory",
        "error": None,
    }
    assert (
        "failed to import: ModuleNotFoundError: No module named 'slmb_no_such_dependency'"
        in rows["broken"]["error"]
    )
    table = _cli(plugin_site, "stages").stdout
    assert "demo: a seeded tiny Llama model directory" in table and "BROKEN" in table


def test_installed_plugin_runs_and_its_model_dir_is_readable(plugin_site, tmp_path):
    from harness.models.sources.hf_dir import load_hf_dir

    result = _cli(plugin_site, "stages", "run", "demo", "--set", "layers=2", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    model_dir = Path(result.stdout.strip().splitlines()[-1])
    assert model_dir == tmp_path / "model" and "demo: wrote" in result.stderr
    loaded = load_hf_dir(model_dir)
    assert loaded.config.num_layers == 2 and loaded.config.arch == "llama"
    assert json.loads((model_dir / "provenance.json").read_text()) == {"stage": "demo"}


def test_broken_and_unknown_stages_fail_with_one_line(plugin_site, tmp_path):
    broken = _cli(plugin_site, "stages", "run", "broken", "--out", str(tmp_path))
    assert broken.returncode == 2
    assert broken.stderr.startswith(
        "error: stage 'broken' (slmb_broken_stage:Stage, "
        "from slmb-demo-stage 0.3.0) failed to import"
    )
    assert len(broken.stderr.strip().splitlines()) == 1
    unknown = _cli(plugin_site, "stages", "run", "nope", "--out", str(tmp_path))
    assert (
        unknown.returncode == 2
        and "unknown stage 'nope' (installed: broken, demo, slimlm)" in unknown.stderr
    )


def test_without_the_plugin_only_slimlm_is_installed():
    from harness.stages import list_stages, load_stage

    names = [s.name for s in list_stages()]
    assert "slimlm" in names and "demo" not in names
    assert load_stage("slimlm").name == "slimlm"
    with pytest.raises(UserError, match="unknown stage 'demo'"):
        load_stage("demo")


def test_stage_settings_parse_as_yaml_scalars():
    from harness.cli.stages import parse_sets

    assert parse_sets(("steps=20", "lr=1e-3", "name=x", "corpus=[a, b]")) == {
        "steps": 20,
        "lr": 1e-3,
        "name": "x",
        "corpus": ["a", "b"],
    }
    with pytest.raises(UserError, match="not key=value"):
        parse_sets(("steps",))


def test_slimlm_stage_without_the_train_extra_says_what_to_install(monkeypatch, tmp_path):
    import importlib.util

    from harness.stages.slimlm.stage import SlimLMStage

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "lion_pytorch" else real(name, *a),
    )
    with pytest.raises(
        UserError, match=r"the slimlm stage needs lion_pytorch; install the training extra"
    ):
        SlimLMStage().run({}, tmp_path)


def test_builtin_slimlm_stage_runs_through_stages_run(tmp_path):
    """The generic `stages run` path with the built-in stage: settings from a YAML file and
    --set."""
    pytest.importorskip("lion_pytorch")
    from click.testing import CliRunner

    from harness.cli import cli

    config = tmp_path / "stage.yaml"
    config.write_text("preset: micro\nseq_len: 64\npretrain_steps: 50\n")
    result = CliRunner().invoke(
        cli,
        [
            "stages",
            "run",
            "slimlm",
            "--config",
            str(config),
            "--set",
            "pretrain_steps=4",
            "--set",
            "tokenizer_vocab=300",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    model_dir = tmp_path / "out" / "slimlm-micro"
    prov = json.loads((model_dir / "provenance.json").read_text())
    assert (
        prov["steps"] == {"pretrain": 4}
        and prov["settings"]["seq_len"] == 64
        and "sft" not in prov["phases"]
    )
