"""The runner: the program that runs where the model runs (desktop now, a phone with Python later).

    python -m harness.runner BUNDLE PROMPTS.jsonl [--template T.json] [--repeats 5] [--warmup 1]
                             [--max-new-tokens 128] [--mode speed|quality] [--threads N] [--serve]

Contract (a native runner can obey the same one):
- stdout carries only JSON lines. Each measurement is one line that validates as
  ``harness.results.schema.Record`` (fields from ``--template`` plus the measured ones, the
  generated text in ``output_text``); the last line is ``{"summary": {...}}``.
- Per request: the prompt is rendered with the model's chat template and tokenized *before* the
  clock starts. Then: ``t_start`` -> prefill call -> ``t_prefill_end`` -> sample first token
  (greedy) -> ``t_first`` -> decode until ``max_new_tokens`` tokens exist -> ``t_last``. In speed
  mode EOS is ignored so every request decodes the same number of tokens; quality mode stops at EOS.
- ``--serve``: instead of running everything, read one JSON command per stdin line —
  ``{"op": "run", "prompt_id": ..., "repeat": r, "warmup": false}`` -> one record line;
  ``{"op": "follow", "prompt_id": ..., "tokens": [...]}`` -> ``{"choices": [...]}`` (teacher
  forcing, for correctness checks across devices; not timed);
  ``{"op": "describe"}`` -> ``{"pid": ..., "threads": ...}`` (this process and the engine's worker
  threads, which the host checks against what it asked: harness.devices.placement);
  ``{"op": "profile", "prompt_ids": [...], "decode_steps": N, "rounds": R, "calibration": PATH}``
  -> ``{"profile": {"phases": [...], "threads": ...}}``: ``slm-bench profile`` where this runner
  runs (harness.profiling.collect.profile_session at each prompt's L; each phase validates as
  ``harness.profiling.schema.PhaseProfile``, its rates left to the host, which knows the
  device's ceilings). PATH is the hook-cost calibration library the host compiled for this
  device (harness.profiling.calibrate.calibration_library; a relative PATH is in BUNDLE's folder):
  the runner has TVM's runtime only.
  The runner must have been started with ``--max-new-tokens`` at least 2 N + 2 (the profile's
  decode steps, plain and profiled, after a warm-up of two), which sizes its KV cache;
  ``{"op": "quit"}`` -> the summary line. The host uses this to sample device state and cool down
  between requests.
- A command the runner cannot serve (bad JSON, an unknown op, a profile it cannot run) is
  answered ``{"error": "..."}`` (one line naming the problem), and the runner reads on.
- Errors are reported as a record with ``status: "failed"`` and ``error``; a fatal start-up error is
  ``{"fatal": "..."}`` and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

from harness.engines import engine_of
from harness.results.schema import Record, Stamps, metrics_from_stamps

KV_HEADROOM = 16  # tokens of KV cache beyond the longest prompt + output (one page)


def peak_rss_bytes() -> int:
    """The peak resident memory of this process so far.

    Linux and Android: ``VmHWM`` of /proc/self/status, the high-water mark of this program's own
    address space. Not ``ru_maxrss``: Linux carries that over exec from the process that spawned
    us (with vfork, the parent's whole address space), so a runner started by a harness that had
    loaded a 1.5 GB evaluation model would report 1.5 GB for a 200 MB run.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # KiB on Linux, bytes on macOS


class Runner:
    def __init__(
        self,
        bundle: Path,
        prompts: dict[str, dict],
        template: dict,
        max_new_tokens: int,
        mode: str,
        threads: int | None = None,
    ):
        from harness.engines import get_engine
        from harness.models.tokenizer import tokenizer_for_bundle

        self.prompts, self.template, self.bundle = prompts, template, Path(bundle)
        self.max_new_tokens, self.mode = max_new_tokens, mode
        config = json.loads((Path(bundle) / "config.json").read_text())
        self.tokenizer = tokenizer_for_bundle(bundle, config["vocab_size"])
        self._encoded: dict[str, list[int]] = {}
        # Size the KV cache for what these prompts need, not the model's whole window (131k
        # tokens of cache for a Llama-3.2 would be gigabytes the run never touches).
        longest = max((len(self.encode(pid)) for pid in prompts), default=0)
        needed = longest + max_new_tokens + KV_HEADROOM
        engine = get_engine(engine_of(json.loads((Path(bundle) / "manifest.json").read_text())))
        self.session = engine.open_session(
            Path(bundle), max_seq_len=min(needed, int(config["context_window"])), threads=threads
        )
        self.threads = self.session.num_threads()
        self.eos = set(self.session.config.get("eos_token_ids") or [])
        self.overhead_ns: list[tuple[int, int]] = []  # (outside timed region, timed region)

    def encode(self, prompt_id: str) -> list[int]:
        if prompt_id not in self._encoded:
            self._encoded[prompt_id] = self.tokenizer.encode_chat(self.prompts[prompt_id]["text"])
        return self._encoded[prompt_id]

    def measure(self, prompt_id: str, repeat: int, warmup: bool) -> Record:
        import numpy as np

        t_enter = time.perf_counter_ns()
        prompt = self.prompts[prompt_id]
        base = {
            **self.template,
            "prompt_id": prompt_id,
            "task": prompt["task"],
            "L": prompt["L"],
            "repeat": repeat,
            "warmup": warmup,
        }
        try:
            ids = np.asarray(self.encode(prompt_id), dtype=np.int32)
            if len(ids) + self.max_new_tokens > self.session.max_seq_len:
                raise ValueError(
                    f"{len(ids)} input + {self.max_new_tokens} output tokens exceed the model's"
                    f" window of {self.session.max_seq_len}"
                )
            session, argmax = self.session, self.session.greedy
            out: list[int] = []
            # ---- timed region: only engine calls and sampling ----
            t_start = time.perf_counter_ns()
            logits = session.prefill(ids)
            t_prefill_end = time.perf_counter_ns()
            token = argmax(logits)
            t_first = time.perf_counter_ns()
            out.append(token)
            while len(out) < self.max_new_tokens and not (
                self.mode == "quality" and token in self.eos
            ):
                token = argmax(session.decode(token))
                out.append(token)
            t_last = time.perf_counter_ns()
            # ---- end of timed region ----
            stamps = Stamps(
                t_start=t_start, t_prefill_end=t_prefill_end, t_first=t_first, t_last=t_last
            )
            record = Record(
                **base,
                input_tokens=len(ids),
                output_tokens=len(out),
                **metrics_from_stamps(stamps, len(ids), len(out)),
                stamps_ns=stamps,
                peak_mem_bytes=peak_rss_bytes(),
                output_text=self.tokenizer.decode(out),
                output_ids=out,
                input_tokenizer=self.tokenizer.name,
                threads=self.threads,
                launcher=getattr(self.session, "launcher", ""),
                status="ok",
            )
            t_exit = time.perf_counter_ns()
            self.overhead_ns.append(((t_start - t_enter) + (t_exit - t_last), t_last - t_start))
            return record
        except Exception as exc:  # a failed request is a record, not a crash of the whole run
            return Record(**base, status="failed", error=f"{type(exc).__name__}: {exc}")

    def follow(self, prompt_id: str, tokens: list[int]) -> dict:
        """Teacher forcing: the prompt, then ``tokens`` fed one at a time; returns the greedy
        choice before each. Compared with another device's or build's greedy ``tokens`` it gives
        their next-token agreement without one early difference derailing the rest."""
        import numpy as np

        session = self.session
        choices = [
            session.greedy(session.prefill(np.asarray(self.encode(prompt_id), dtype=np.int32)))
        ]
        for token in tokens[:-1]:
            choices.append(session.greedy(session.decode(int(token))))
        return {"prompt_id": prompt_id, "choices": choices}

    def profile(self, cmd: dict) -> dict:
        """The ``profile`` op: every check first (one error line each), then the profile."""
        from harness.profiling.collect import WARMUP_DECODE_STEPS

        ids = cmd.get("prompt_ids")
        if not isinstance(ids, list) or not ids:
            return {"error": "profile needs prompt_ids: a list of the prompts' ids"}
        unknown = [pid for pid in ids if pid not in self.prompts]
        if unknown:
            return {"error": f"profile: unknown prompt ids {unknown[:3]}; pass ids of PROMPTS"}
        steps, rounds = cmd.get("decode_steps"), cmd.get("rounds", 1)
        if not all(isinstance(v, int) and v >= 1 for v in (steps, rounds)):
            return {"error": "profile needs decode_steps and rounds: whole numbers from 1"}
        calibration = cmd.get("calibration")
        # relative: beside the bundle (a phone's paths in a command line may be rewritten on the
        # way, as the emulated x86_64 phone's are; paths inside a command never are)
        if calibration and not Path(calibration).is_file():
            calibration = str(self.bundle / calibration)
        if not calibration or not Path(calibration).is_file():
            return {
                "error": f"profile: no calibration library at {calibration!r}; pass the path of"
                " harness.profiling.calibrate.calibration_library's output for this device"
            }
        prompts = {int(self.prompts[pid]["L"]): self.encode(pid) for pid in ids}
        if len(prompts) != len(ids):
            return {"error": "profile takes one prompt per L; pass prompt_ids of distinct L"}
        needed = max(len(v) for v in prompts.values()) + 2 * steps + WARMUP_DECODE_STEPS
        if needed > self.session.max_seq_len:
            return {
                "error": f"profile needs {needed} tokens of KV cache, this runner holds"
                f" {self.session.max_seq_len}; start it with --max-new-tokens"
                f" {2 * steps + WARMUP_DECODE_STEPS} or more"
            }
        from harness.profiling.calibrate import load_calibration_vm
        from harness.profiling.collect import profile_session
        from harness.profiling.schema import Ceilings

        vm = load_calibration_vm(calibration)
        log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731 (stdout is JSON)
        # no ceilings here: the host applies the device's (or none, for an emulated phone)
        phases = profile_session(self.session, prompts, steps, Ceilings(), log, rounds, vm)
        return {
            "profile": {
                "phases": [p.model_dump(mode="json") for p in phases],
                "threads": self.session.num_threads(),
            }
        }

    def summary(self) -> dict:
        outside = sum(o for o, _ in self.overhead_ns)
        inside = sum(i for _, i in self.overhead_ns)
        return {
            "requests": len(self.overhead_ns),
            "timed_s": inside / 1e9,
            "overhead_s": outside / 1e9,
            "overhead_ratio": outside / inside if inside else None,
            "peak_mem_bytes": peak_rss_bytes(),
        }


def _emit(obj) -> None:
    line = obj.model_dump_json() if isinstance(obj, Record) else json.dumps(obj)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m harness.runner", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("bundle", type=Path)
    ap.add_argument("prompts", type=Path, help="prompt records (JSONL) to measure")
    ap.add_argument(
        "--template",
        type=Path,
        help="JSON object of record fields the host fills (model, device, run_id, ...)",
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--mode", choices=["speed", "quality"], default="speed")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="engine worker threads (default: one per core this process may use)",
    )
    ap.add_argument(
        "--serve",
        action="store_true",
        help="read JSON commands (run, profile, quit, ...) from stdin",
    )
    args = ap.parse_args(argv)

    try:
        prompts = {}
        with open(args.prompts) as f:
            for line in f:
                if line.strip():
                    p = json.loads(line)
                    prompts[p["id"]] = p
        template = json.loads(args.template.read_text()) if args.template else {}
        manifest = json.loads((args.bundle / "manifest.json").read_text())
        template.setdefault("model", manifest["model"])
        template.setdefault("quantization", manifest["quantization"])
        template.setdefault("format", manifest["format"])
        template.setdefault("activations", manifest["activations"])
        template.setdefault("kernels", manifest.get("kernels", ""))
        template.setdefault("engine", engine_of(manifest))
        runner = Runner(
            args.bundle, prompts, template, args.max_new_tokens, args.mode, args.threads
        )
    except Exception as exc:
        _emit({"fatal": f"{type(exc).__name__}: {exc}"})
        return 2

    if args.serve:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                cmd = json.loads(line)
            except ValueError:
                _emit({"error": f"not a JSON command: {line.strip()[:80]!r}"})
                continue
            if not isinstance(cmd, dict):
                _emit({"error": f"a command is a JSON object, not {line.strip()[:80]!r}"})
                continue
            if cmd.get("op") == "quit":
                break
            if cmd.get("op") == "run":
                _emit(
                    runner.measure(
                        cmd["prompt_id"], int(cmd.get("repeat", 0)), bool(cmd.get("warmup", False))
                    )
                )
            elif cmd.get("op") == "describe":
                _emit({"pid": os.getpid(), "threads": runner.session.num_threads()})
            elif cmd.get("op") == "follow":
                _emit(runner.follow(cmd["prompt_id"], list(cmd["tokens"])))
            elif cmd.get("op") == "profile":
                try:
                    _emit(runner.profile(cmd))
                except Exception as exc:  # the runner stays up: the host reads one line
                    _emit({"error": f"profile failed: {type(exc).__name__}: {exc}"})
            else:
                ops = "run, follow, describe, profile, quit"
                _emit({"error": f"unknown op {cmd.get('op')!r}; the ops are {ops}"})
    else:
        for prompt_id in prompts:
            for w in range(args.warmup):
                _emit(runner.measure(prompt_id, w, True))
            for r in range(args.repeats):
                _emit(runner.measure(prompt_id, r, False))
    _emit({"summary": runner.summary()})
    return 0


if __name__ == "__main__":
    # This program only loads compiled bundles: TVM's runtime library is all it needs (as in the
    # phone's kit). The full package loads the compiler too, 170 MB of RSS that the record's
    # peak_mem_bytes would count against the model (SmolLM2 at L=200: 367 -> 190 MiB).
    os.environ.setdefault("TVM_USE_RUNTIME_LIB", "1")
    sys.exit(main())
