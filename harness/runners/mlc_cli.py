"""MLC-LLM's native chat CLI (``mlc_cli_chat``, mlc-ai/mlc-llm PR #3114; prebuilt arm64 builds in
Qualcomm's CodeLinaro fork) with a model library compiled for ``android:adreno-so``.

After each generation it prints one stats line::

    decode : 14.2 tok/sec (127 tokens in 8.9 sec), prefill : 310.5 tok/sec (251 tokens in 0.81 sec)

TTFT is not printed: it is estimated as prefill + one decode step and labelled so
(``ttft_estimated``). The tool runs its own warm-up generation before the measured one.
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
from pathlib import Path

from harness.runners.base import (
    NativeRunner,
    Phases,
    RunnerFailed,
    binary_provenance,
    check_abi,
    find_binary,
    path_from_env,
    phases_from_steps,
)

FIX = (
    "download Qualcomm's mlc_llm-utils-linux-arm64 (docs/phones.md: Other runners) and set"
    " SLM_BENCH_MLC_CLI to its bin/mlc_cli_chat"
)
_STATS = re.compile(
    r"decode\s*:\s*(?P<d_rate>[\d.]+)\s*tok/sec\s*"
    r"\((?P<d_n>\d+)\s*tokens in\s*(?P<d_s>[\d.]+)\s*sec\)\s*,\s*"
    r"prefill\s*:\s*(?P<p_rate>[\d.]+)\s*tok/sec\s*"
    r"\((?P<p_n>\d+)\s*tokens in\s*(?P<p_s>[\d.]+)\s*sec\)"
)


def parse_mlc_stats(text: str) -> dict:
    """The last stats line of the output: decode/prefill token counts, seconds and rates."""
    found = list(_STATS.finditer(text))
    if not found:
        raise RunnerFailed(
            "no `decode : X tok/sec (N tokens in T sec), prefill : ...` line in mlc_cli_chat's"
            " output; is it a build with PR #3114's stats?"
        )
    m = found[-1]
    return {
        "decode_tokens": int(m["d_n"]),
        "decode_s": float(m["d_s"]),
        "decode_tok_s": float(m["d_rate"]),
        "prefill_tokens": int(m["p_n"]),
        "prefill_s": float(m["p_s"]),
        "prefill_tok_s": float(m["p_rate"]),
    }


def mlc_phases(text: str) -> Phases:
    s = parse_mlc_stats(text)
    return phases_from_steps(
        s["prefill_s"],
        s["decode_s"],
        s["decode_tokens"],
        input_tokens=s["prefill_tokens"],
        extra={"runner_stats": s},
    )


class MlcCli(NativeRunner):
    name = "mlc-cli"
    engine = "mlc-llm"

    def setup(self) -> dict:
        binary = find_binary("mlc_cli_chat", self.ctx.runner_bin, "SLM_BENCH_MLC_CLI", None, FIX)
        check_abi(binary, self.target.arch(), self.target.name, FIX)
        # the utils layout: bin/ and lib/
        libs = {p.name: p for p in sorted((binary.parent.parent / "lib").glob("*.so"))}
        model_dir = path_from_env(
            self.name,
            "SLM_BENCH_MLC_MODEL",
            "the MLC model folder (weights + mlc-chat-config.json)",
        )
        model_lib = path_from_env(
            self.name, "SLM_BENCH_MLC_MODEL_LIB", "the model library compiled for android:adreno-so"
        )
        self.bin_dir, sent = self.target.place({binary.name: binary}, "mlc/bin")
        self.lib_dir, sent_libs = self.target.place(libs, "mlc/lib") if libs else (self.bin_dir, 0)
        weights = {
            p.relative_to(model_dir).as_posix(): p
            for p in sorted(model_dir.rglob("*"))
            if p.is_file()
        }
        self.model_dir, sent_model = self.target.place(weights, f"mlc/models/{model_dir.name}")
        lib_dir, sent_lib = self.target.place({model_lib.name: model_lib}, "mlc/model-libs")
        self.model_lib = posixpath.join(lib_dir, model_lib.name)
        self.device_kind = os.environ.get("SLM_BENCH_MLC_DEVICE", "opencl")
        self.prompt_dir = self._place_prompts()
        provenance = binary_provenance(binary, libs, "SLM_BENCH_MLC_CLI / --runner-bin")
        provenance.update(
            runner=self.name,
            model_dir=str(model_dir),
            model_lib=str(model_lib),
            bytes_pushed=sent + sent_libs + sent_model + sent_lib,
        )
        return provenance

    def _place_prompts(self) -> str:
        # mlc_cli_chat applies the model's conversation
        # template itself: the raw user message goes in.
        folder = Path(self.ctx.log_path).parent / "runner-prompts"
        folder.mkdir(parents=True, exist_ok=True)
        files = {}
        for pid, p in self.ctx.prompts.items():
            files[f"{pid}.txt"] = folder / f"{pid}.txt"
            files[f"{pid}.txt"].write_text(p["text"], encoding="utf-8")
        return self.target.place(files, "prompts")[0]

    def measure(self, prompt_id: str, prompt: dict, input_tokens: int) -> Phases:
        q = shlex.quote
        cmd = (
            f"cd {q(self.bin_dir)} && LD_LIBRARY_PATH={q(self.lib_dir)} ./mlc_cli_chat"
            f" --model {q(self.model_dir)} --model-lib {q(self.model_lib)}"
            f" --device {q(self.device_kind)} --max-tokens {self.ctx.max_new_tokens}"
            f" --with-prompt-file {q(posixpath.join(self.prompt_dir, prompt_id + '.txt'))}"
            " </dev/null"
        )
        # it has no thread option: its TVM pool follows the pinned cores
        out = self.shell(self.pinned(cmd), "mlc_cli_chat", FIX)
        self.note_affinity(out)
        return mlc_phases(out)
