"""llama.cpp as a reference runtime on the phone: ``llama-bench -o jsonl`` and ``llama-completion``.

``llama-bench`` times a prompt of N tokens (test ``n_prompt=N, n_gen=0``) and M single-token
decode steps after a context of N tokens (``n_prompt=0, n_gen=M, n_depth=N``); its prompt tokens
are random ids, so the request's text does not reach the model, only its length in the model's
tokenizer. TTFT is not printed: estimated as prefill + one decode step (``ttft_estimated``).
Each invocation runs llama-bench's own untimed warm-up first, so every measurement is warm.

``llama-completion`` (``llama-cli`` before llama.cpp split the chat UI off) runs the real prompt
text, rendered with the model's chat template on the host, and prints ``llama_perf_context_print``
lines on stderr (``common_perf_print`` in 2025+ builds): prompt eval time over the prompt's
tokens, eval time over the decode runs. The first output token is sampled from the prompt's logits,
so there are runs + 1 output tokens and TTFT is the prompt eval time (sampling not included:
labelled estimated).

The binary: ``--runner-bin``, the runner's variable or ``SLM_BENCH_LLAMA_BIN_DIR``; where none
names one, the llama.cpp the harness builds itself (``harness.kits.llamacpp``): static aarch64 for
an ARM64 phone, the host build (after PATH) for an x86_64 device.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import shutil
from pathlib import Path

from harness.errors import UserError
from harness.kits.llamacpp import ARCHES
from harness.runners.base import (
    ELF_MACHINES,
    NativeRunner,
    Phases,
    RunnerFailed,
    binary_provenance,
    check_abi,
    find_binary,
    libraries_beside,
    phases_from_steps,
)

BENCH_KEYS = ("n_prompt", "n_gen", "n_depth", "avg_ns", "stddev_ns", "samples_ns")
BUILD_FIX = (
    "build llama.cpp for the phone (docs/phones.md: Other runners) and pass --runner-bin or"
    " SLM_BENCH_LLAMA_BIN_DIR"
)


# ---------------------------------------------------------------------------------------------
# parsers
# ---------------------------------------------------------------------------------------------
def parse_llama_bench_jsonl(text: str) -> list[dict]:
    """The test results of ``llama-bench -o jsonl``: one JSON object per line, read by key."""
    results = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue  # llama-bench writes its logs to stderr, but a wrapper may interleave them
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RunnerFailed(
                f"llama-bench printed a line that is not JSON ({exc.msg}): {line[:80]}; run it by"
                " hand with -o jsonl to see why"
            ) from None
        missing = [k for k in BENCH_KEYS if k not in obj]
        if missing:
            raise RunnerFailed(
                f"llama-bench result lacks {', '.join(missing)}; this llama.cpp is too old for -o"
                " jsonl with -d, use a build from 2025 or later"
            )
        results.append(obj)
    return results


def bench_test(results: list[dict], n_prompt: int, n_gen: int, n_depth: int) -> dict:
    for r in results:
        if (r["n_prompt"], r["n_gen"], r["n_depth"]) == (n_prompt, n_gen, n_depth):
            return r
    have = ", ".join(f"pp{r['n_prompt']}/tg{r['n_gen']}@d{r['n_depth']}" for r in results) or "none"
    raise RunnerFailed(
        f"llama-bench did not report the test pp{n_prompt}/tg{n_gen}@d{n_depth} (it reported:"
        f" {have}); check its stderr in runner.log"
    )


def llama_bench_phases(results: list[dict], input_tokens: int, output_tokens: int) -> Phases:
    """Prefill from the ``pp{input_tokens}`` test, decode from ``tg{output_tokens}`` at depth
    ``input_tokens``; averages over llama-bench's repetitions (``avg_ns``)."""
    pp = bench_test(results, input_tokens, 0, 0)
    tg = bench_test(results, 0, output_tokens, input_tokens)
    extra = {
        "engine_version": f"{tg.get('build_number', '?')} ({tg.get('build_commit', '?')})",
        "runner_stats": {
            "prefill_samples_ns": pp["samples_ns"],
            "prefill_stddev_ns": pp["stddev_ns"],
            "decode_samples_ns": tg["samples_ns"],
            "decode_stddev_ns": tg["stddev_ns"],
            "model_type": tg.get("model_type"),
            "n_threads": tg.get("n_threads"),
            "backends": tg.get("backends"),
            "cpu_mask": tg.get("cpu_mask"),
            "cpu_strict": tg.get("cpu_strict"),
        },
    }
    return phases_from_steps(
        pp["avg_ns"] * 1e-9,
        tg["avg_ns"] * 1e-9,
        output_tokens,
        input_tokens=pp["n_prompt"],
        extra=extra,
    )


# llama_perf_context_print (src/llama-context.cpp) in
# older builds; common_perf_print (common/) in newer ones
_PERF = re.compile(
    r"(?:llama_perf_context_print|common_perf_print):\s+"
    r"(?P<what>load|prompt eval|eval|total) time =\s+(?P<ms>[\d.]+) ms"
    r"(?: /\s+(?P<n>\d+) (?:tokens|runs))?"
)


def parse_llama_perf(text: str) -> dict[str, tuple[float, int | None]]:
    """``llama_perf_context_print`` lines -> {"prompt eval": (ms, tokens), "eval": (ms, runs), ...}.
    The last block wins: a program that prints it twice (warm-up, then the run) reports the run."""
    out: dict[str, tuple[float, int | None]] = {}
    for m in _PERF.finditer(text):
        out[m["what"]] = (float(m["ms"]), int(m["n"]) if m["n"] else None)
    return out


def llama_perf_phases(text: str) -> Phases:
    perf = parse_llama_perf(text)
    if "prompt eval" not in perf or "eval" not in perf:
        raise RunnerFailed(
            "no llama_perf_context_print lines (prompt eval time / eval time) in the runner's"
            " output; is it llama-completion (or an older llama-cli)?"
        )
    prompt_ms, prompt_tokens = perf["prompt eval"]
    eval_ms, runs = perf["eval"]
    return Phases(
        prefill_s=prompt_ms / 1000,
        ttft_s=prompt_ms / 1000,
        decode_s=eval_ms / 1000,
        output_tokens=(runs or 0) + 1,
        ttft_estimated=True,
        input_tokens=prompt_tokens,
    )


# ---------------------------------------------------------------------------------------------
# adapters
# ---------------------------------------------------------------------------------------------
def gguf_path(model, bundle: Path | None = None) -> Path:
    """The GGUF file llama.cpp runs: the llama.cpp engine's bundle (``--engine llama.cpp``: GGUF
    Q4_0 made by llama.cpp's quantizer from any model), else the model's own GGUF file."""
    if bundle is not None and (Path(bundle) / "manifest.json").is_file():
        library = json.loads((Path(bundle) / "manifest.json").read_text()).get("library", "")
        if library.endswith(".gguf") and (Path(bundle) / library).is_file():
            return Path(bundle) / library
    source = Path(getattr(model, "source", "") or "")
    if source.suffix == ".gguf" and source.is_file():
        return source
    name = getattr(model, "name", "the model")
    raise UserError(
        f"the llama.cpp runners need a GGUF file and {name} did not come from one; add --engine"
        " llama.cpp (GGUF Q4_0 from any model) or pass --model path/to/model.gguf"
    )


def uses_openmp(files: list[Path]) -> bool:
    """Whether a llama.cpp build threads with OpenMP (its -C mask is then ignored): the binary or
    a library beside it imports libgomp's entry points (``GOMP_parallel``), static or dynamic."""
    return any(b"GOMP_parallel" in Path(f).read_bytes() for f in files if Path(f).is_file())


class _LlamaCppRunner(NativeRunner):
    engine = "llama.cpp"
    binaries: tuple[str, ...] = ()
    env_var = ""

    def setup(self) -> dict:
        device_arch = self.target.arch()
        binary, source = self._find(device_arch)
        check_abi(
            binary,
            device_arch,
            self.target.name,
            "build llama.cpp for that CPU (docs/phones.md: Other runners) and pass it with"
            f" --runner-bin or {self.env_var}",
        )
        libs = libraries_beside(binary)
        # a harness-built kit is named by its content key, so two kits never share a folder there
        label = (
            binary.parent.parent.name if source.startswith("harness-built") else binary.parent.name
        )
        self.folder, sent = self.target.place({binary.name: binary, **libs}, f"llama.cpp-{label}")
        model = gguf_path(self.ctx.model, self.ctx.bundle)
        # named by content: every llama.cpp bundle calls its file model.gguf
        remote_name = (
            model.name if model.name != "model.gguf" else f"{Path(self.ctx.bundle).name}.gguf"
        )
        self.model_folder, sent_model = self.target.place({remote_name: model}, "models")
        self.exe = posixpath.join(self.folder, binary.name)
        self.model_path = posixpath.join(self.model_folder, remote_name)
        provenance = binary_provenance(binary, libs, source)
        provenance.update(
            runner=self.name,
            model_file=str(model),
            bytes_pushed=sent + sent_model,
            openmp=uses_openmp([binary, *libs.values()]),
        )
        if provenance["openmp"]:
            self.ctx.log(
                f"note: {binary.name} is built with OpenMP, which ignores llama.cpp's -C mask; the"
                " taskset around it still pins the process to the chosen cores (build with"
                " -DGGML_OPENMP=OFF for llama.cpp's own affinity)"
            )
        return provenance

    def _find(self, device_arch: str) -> tuple[Path, str]:
        """(binary, where it came from): --runner-bin, the runner's variable or
        SLM_BENCH_LLAMA_BIN_DIR; else, for an ARM64 phone, the harness-built static kit; else PATH,
        then the harness-built host kit (x86_64)."""
        arm64 = device_arch in ELF_MACHINES[0xB7][1]
        configured = (
            self.ctx.runner_bin
            or os.environ.get(self.env_var)
            or os.environ.get("SLM_BENCH_LLAMA_BIN_DIR")
        )
        # a llama.cpp on this host's PATH is built for this host, not for an ARM64 phone
        if configured or (not arm64 and any(shutil.which(n) for n in self.binaries)):
            errors = []
            for name in self.binaries:
                try:
                    return find_binary(
                        name,
                        self.ctx.runner_bin,
                        self.env_var,
                        "SLM_BENCH_LLAMA_BIN_DIR",
                        BUILD_FIX,
                    ), "--runner-bin / env / PATH"
                except UserError as exc:
                    errors.append(exc)
            raise errors[0]
        kit_arch = "aarch64" if arm64 else device_arch
        looked = f"--runner-bin, {self.env_var}, SLM_BENCH_LLAMA_BIN_DIR{'' if arm64 else ', PATH'}"
        if kit_arch not in ARCHES:
            raise UserError(
                f"runner binary {self.binaries[0]} not found (looked at {looked}); {BUILD_FIX}"
            )
        return self._kit_binary(kit_arch, looked)

    def _kit_binary(self, arch: str, looked: str) -> tuple[Path, str]:
        from harness.kits import llamacpp

        # one lookup of the kit's path (a compiler run and a hash): build_llamacpp returns the
        # cached kit, or says why it builds and builds it
        announce = (
            f"no llama.cpp binary configured ({looked}): building llama.cpp for {arch} once "
            f"(minutes; cached after; `slm-bench kit llama.cpp --arch {arch}` prepares it ahead)"
        )
        try:
            bin_dir = llamacpp.build_llamacpp(arch, log=self.ctx.log or print, announce=announce)
        except UserError as exc:
            raise UserError(
                f"runner binary {self.binaries[0]} not found (looked at {looked}) and the harness"
                f" could not build it: {exc}"
            ) from None
        kind = "static" if arch == "aarch64" else "shared"
        return bin_dir / self.binaries[
            0
        ], f"harness-built llama.cpp {llamacpp.VERSION} {kind} {arch}"

    def _threads(self) -> str:
        """``-t N -C MASK``: the placement's threads, and its cores as llama.cpp's own affinity too
        (non-strict: every thread may use every core of the set). The harness-built llama.cpp has
        no OpenMP, so the mask takes effect; an OpenMP build ignores -C (the taskset around it
        still pins the process)."""
        if os.environ.get("SLM_BENCH_LLAMA_THREADS"):
            raise UserError(
                "SLM_BENCH_LLAMA_THREADS is replaced by `slm-bench run --threads N` (and --cores),"
                " which every runner obeys; unset it"
            )
        if self.placement is None:
            return ""
        return f" -t {self.placement.threads} -C 0x{self.placement.mask} --cpu-strict 0"

    def _env(self) -> str:
        q = shlex.quote
        return f"cd {q(self.folder)} && LD_LIBRARY_PATH={q(self.folder)} "


class LlamaBench(_LlamaCppRunner):
    name = "llama-bench"
    binaries = ("llama-bench",)
    env_var = "SLM_BENCH_LLAMA_BENCH"

    def setup(self) -> dict:
        if self.ctx.mode == "quality":
            raise UserError(
                "llama-bench measures speed on random prompt tokens and keeps no answers; use"
                " --runner llama-cli for --mode quality"
            )
        return super().setup()

    def command(self, input_tokens: int) -> str:
        q = shlex.quote
        run = f"{self._env()}{q(self.exe)} -m {q(self.model_path)} -r 1 -o jsonl{self._threads()}"
        # two invocations, because n_depth applies to every test of one invocation
        return (
            f"{run} -p {input_tokens} -n 0 && "
            f"{run} -p 0 -n {self.ctx.max_new_tokens} -d {input_tokens}"
        )

    def measure(self, prompt_id: str, prompt: dict, input_tokens: int) -> Phases:
        out = self.shell(
            self.pinned(self.command(input_tokens)), "llama-bench", f"see runner.log; {BUILD_FIX}"
        )
        self.note_affinity(out)
        phases = llama_bench_phases(
            parse_llama_bench_jsonl(out), input_tokens, self.ctx.max_new_tokens
        )
        self.threads_seen = phases.extra["runner_stats"].get("n_threads")
        return phases


class LlamaCli(_LlamaCppRunner):
    name = "llama-cli"
    binaries = ("llama-completion", "llama-cli")
    env_var = "SLM_BENCH_LLAMA_CLI"

    def setup(self) -> dict:
        provenance = super().setup()
        from harness.models.tokenizer import ChatTokenizer

        # The prompt as the model sees it: chat template
        # applied here, so llama.cpp gets the same text.
        tok = ChatTokenizer.from_bundle(self.ctx.bundle)
        folder = Path(self.ctx.log_path).parent / "runner-prompts"
        folder.mkdir(parents=True, exist_ok=True)
        files = {}
        for pid, p in self.ctx.prompts.items():
            files[f"{pid}.txt"] = folder / f"{pid}.txt"
            files[f"{pid}.txt"].write_text(tok.render(p["text"]), encoding="utf-8")
        self.prompt_folder, _ = self.target.place(files, "prompts")
        return provenance

    def measure(self, prompt_id: str, prompt: dict, input_tokens: int) -> Phases:
        q = shlex.quote
        # headroom: llama.cpp may add a BOS the template already has
        n_ctx = input_tokens + self.ctx.max_new_tokens + 64
        cmd = (
            f"{self._env()}{q(self.exe)} -m {q(self.model_path)}"
            f" -f {q(posixpath.join(self.prompt_folder, prompt_id + '.txt'))}"
            f" -n {self.ctx.max_new_tokens} -c {n_ctx}{self._threads()} --temp 0 -no-cnv"
            " --no-display-prompt --simple-io"
            f" {'--ignore-eos ' if self.ctx.mode == 'speed' else ''}</dev/null 2>&1"
        )
        out = self.shell(self.pinned(cmd), "llama-completion", f"see runner.log; {BUILD_FIX}")
        self.note_affinity(out)
        threads = re.search(r"system_info: n_threads = (\d+)", out)
        self.threads_seen = int(threads[1]) if threads else None
        return llama_perf_phases(out)
