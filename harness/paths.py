"""Where the repository's data lives, found relative to the package (harness/..).

slm-bench runs from a checkout: the corpus, the built prompt suite and the reports are
repository files, not package data, so they are located from this file rather than from
the current directory (a command run from a subfolder still finds them).
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def prompts_dir() -> Path:
    """``<repo>/prompts``: templates, corpus and the built suite."""
    return REPO_ROOT / "prompts"


def corpus_dir() -> Path:
    """``<repo>/prompts/corpus``: the DocAssist-style source documents."""
    return prompts_dir() / "corpus"


def templates_path() -> Path:
    """``<repo>/prompts/templates.yaml``: the three task templates."""
    return prompts_dir() / "templates.yaml"


def reports_dir() -> Path:
    """``<repo>/reports``: default parent folder of rendered reports."""
    return REPO_ROOT / "reports"


def results_dir() -> Path:
    """``<repo>/results``: default parent folder of run directories."""
    return REPO_ROOT / "results"
