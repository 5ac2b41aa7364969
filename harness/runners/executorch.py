"""ExecuTorch's ``llama_main`` (examples/models/llama) with a ``.pte`` model and its tokenizer.

After a generation it prints one line ``PyTorchObserver {...}`` (extension/llm/runner/stats.h)
with millisecond wall-clock stamps. Mapping onto the schema's stamps:
``t_start = inference_start_ms``, ``t_prefill_end = prompt_eval_end_ms``,
``t_first = first_token_ms``, ``t_last = inference_end_ms``. ``generated_tokens`` counts the
decode loop's tokens; the reply has one more, the token sampled from the prompt's logits, so
``output_tokens = generated_tokens + 1``. ExecuTorch starts the clock before it tokenizes the
prompt, so its prefill includes tokenization (``prefill_includes_tokenization``). TTFT is timed
by the runner, not estimated.
"""

from __future__ import annotations

import json
import posixpath
import shlex

from harness.runners.base import (
    NativeRunner,
    Phases,
    RunnerFailed,
    binary_provenance,
    check_abi,
    find_binary,
    libraries_beside,
    path_from_env,
)

FIX = (
    "build ExecuTorch's llama_main for android-arm64 (docs/phones.md: Other runners) and set"
    " SLM_BENCH_EXECUTORCH_MAIN"
)
OBSERVER_KEYS = (
    "prompt_tokens",
    "generated_tokens",
    "inference_start_ms",
    "prompt_eval_end_ms",
    "first_token_ms",
    "inference_end_ms",
)


def parse_observer(text: str) -> dict:
    """The last ``PyTorchObserver {...}`` line of the output, as a dict."""
    lines = [
        line.split("PyTorchObserver", 1)[1].strip()
        for line in text.splitlines()
        if "PyTorchObserver" in line
    ]
    if not lines:
        raise RunnerFailed(
            "no `PyTorchObserver {...}` line in llama_main's output; did it fail to load the model?"
            " see runner.log"
        )
    try:
        stats = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise RunnerFailed(
            f"the PyTorchObserver line is not JSON ({exc.msg}); see runner.log"
        ) from None
    missing = [k for k in OBSERVER_KEYS if k not in stats]
    if missing:
        raise RunnerFailed(
            f"the PyTorchObserver line lacks {', '.join(missing)}; use an ExecuTorch release with"
            " extension/llm/runner (0.4 or later)"
        )
    return stats


def observer_phases(text: str) -> Phases:
    s = parse_observer(text)
    unit = 1.0 / float(s.get("SCALING_FACTOR_UNITS_PER_SECOND", 1000))  # stamps are in ms
    t0, t_prefill, t_first, t_last = (
        s[k]
        for k in ("inference_start_ms", "prompt_eval_end_ms", "first_token_ms", "inference_end_ms")
    )
    if not t0 <= t_prefill <= t_last or not t0 <= t_first <= t_last:
        raise RunnerFailed(
            f"PyTorchObserver stamps are out of order (start {t0}, prompt eval end {t_prefill},"
            f" first token {t_first}, end {t_last}); see runner.log"
        )
    return Phases(
        prefill_s=(t_prefill - t0) * unit,
        ttft_s=(t_first - t0) * unit,
        decode_s=(t_last - t_first) * unit,
        output_tokens=int(s["generated_tokens"]) + 1,
        input_tokens=int(s["prompt_tokens"]),
        extra={"prefill_includes_tokenization": True, "runner_stats": s},
    )


class ExecuTorch(NativeRunner):
    name = "executorch"
    engine = "executorch"

    def setup(self) -> dict:
        binary = find_binary(
            "llama_main", self.ctx.runner_bin, "SLM_BENCH_EXECUTORCH_MAIN", None, FIX
        )
        check_abi(binary, self.target.arch(), self.target.name, FIX)
        libs = libraries_beside(binary)
        pte = path_from_env(
            self.name, "SLM_BENCH_EXECUTORCH_PTE", "the exported .pte model", file=True
        )
        tokenizer = path_from_env(
            self.name,
            "SLM_BENCH_EXECUTORCH_TOKENIZER",
            "the model's tokenizer (tokenizer.model or tokenizer.json)",
            file=True,
        )
        self.folder, sent = self.target.place({binary.name: binary, **libs}, "executorch")
        self.model_folder, sent_model = self.target.place(
            {pte.name: pte, tokenizer.name: tokenizer}, f"executorch-models/{pte.stem}"
        )
        self.exe, self.pte, self.tokenizer = (
            posixpath.join(d, n)
            for d, n in (
                (self.folder, binary.name),
                (self.model_folder, pte.name),
                (self.model_folder, tokenizer.name),
            )
        )
        from harness.models.tokenizer import ChatTokenizer

        # llama_main takes the prompt as given: render the chat template here
        tok = ChatTokenizer.from_bundle(self.ctx.bundle)
        self.rendered = {pid: tok.render(p["text"]) for pid, p in self.ctx.prompts.items()}
        provenance = binary_provenance(binary, libs, "SLM_BENCH_EXECUTORCH_MAIN / --runner-bin")
        provenance.update(
            runner=self.name, pte=str(pte), tokenizer=str(tokenizer), bytes_pushed=sent + sent_model
        )
        return provenance

    def measure(self, prompt_id: str, prompt: dict, input_tokens: int) -> Phases:
        q = shlex.quote
        seq_len = input_tokens + self.ctx.max_new_tokens + 16
        threads = f" --cpu_threads {self.placement.threads}" if self.placement else ""
        cmd = (
            f"cd {q(self.folder)} && LD_LIBRARY_PATH={q(self.folder)} {q(self.exe)}"
            f" --model_path {q(self.pte)} --tokenizer_path {q(self.tokenizer)}"
            f" --prompt {q(self.rendered[prompt_id])} --temperature 0 --seq_len {seq_len}"
            f" --max_new_tokens {self.ctx.max_new_tokens}{threads} </dev/null"
        )
        out = self.shell(self.pinned(cmd), "llama_main", FIX)
        self.note_affinity(out)
        # llama_main prints no thread count: as passed
        self.threads_seen = self.placement.threads if self.placement else None
        return observer_phases(out)
