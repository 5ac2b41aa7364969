"""Our TVM engine vs llama.cpp on SmolLM2-135M-Instruct: prefill and decode tokens/s, one run.

Both engines get the same token ids, the same thread count and the same protocol, interleaved
(ours, ref, ours, ref, ...) so that drift in the machine's state (thermal, another process) hits
both alike. The memory bandwidth is measured in the same run to give each engine its decode
ceiling (bandwidth / weight bytes read per token). The last stdout line is one JSON object.

    python benchmarks/engine_vs_llamacpp.py [--lengths 200,400] [--repeats 3] [--decode-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

N_CTX = 2048
FIRST_ID = 20  # ids below this are special tokens (<|endoftext|>, <|im_start|>, ...) in SmolLM2
SEED = 1234
SETTLE_S = 0.05  # let the other engine's worker threads stop spinning before timing this one


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", default="200,400,600,800,1000", help="prompt lengths L, comma separated")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per engine and L (median taken)")
    p.add_argument("--decode-tokens", type=int, default=64, help="greedy decode steps after each prefill")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="threads for both engines (default: cores in this process's affinity)")
    p.add_argument("--json-only", action="store_true", help="print only the JSON line (logs go to stderr)")
    args = p.parse_args(argv)
    args.lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
    too_long = [n for n in args.lengths if n + args.decode_tokens > N_CTX]
    if too_long or not args.lengths or args.repeats < 1 or args.decode_tokens < 1 or args.threads < 1:
        p.error(f"need 1+ lengths, repeats, decode tokens and threads, and L + decode tokens <= {N_CTX} (bad: {too_long})")
    return args


def import_llama_cpp():
    """Fail in one line, before any slow step, when the optional reference engine is missing."""
    try:
        import llama_cpp
    except ImportError:
        sys.exit('llama_cpp is not installed: pip install -e ".[bench]" (see benchmarks/README.md)')
    return llama_cpp


def memory_bandwidth_gbps() -> float:
    """Measured now (not the harness's cached host value): the ceiling must describe this run."""
    from harness.devices.local import measure_bandwidth_gbps

    return measure_bandwidth_gbps()


def gguf_tensor_bytes(path) -> int:
    """Sum of the GGUF's tensor sizes (exact, metadata excluded): what llama.cpp reads per token,
    since the token embedding doubles as the LM head (tied) and every other tensor is used once."""
    from gguf import GGUFReader

    return sum(int(t.n_bytes) for t in GGUFReader(path).tensors)


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process), to tell afterwards how
    much CPU other processes took: llama.cpp's OpenMP barriers spin, so contention can slow it
    many times more than it slows TVM, and the interleaving cannot even that out."""
    import psutil

    t, own = psutil.cpu_times(), psutil.Process().cpu_times()
    busy = sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))
    return busy, own.user + own.system


def foreign_cpu_share(start: tuple[float, float], wall_s: float) -> float:
    """Fraction of all CPUs that other processes (or the hypervisor) used since start."""
    (busy0, own0), (busy1, own1) = start, cpu_seconds()
    return max(0.0, (busy1 - busy0) - (own1 - own0)) / (wall_s * (os.cpu_count() or 1))


def token_sequences(lengths: list[int], vocab: int) -> dict[int, np.ndarray]:
    """Fixed random ids per L (seeded, no special tokens): identical input for both engines."""
    rng = np.random.default_rng(SEED)
    return {n: rng.integers(FIRST_ID, vocab, size=n, dtype=np.int32) for n in lengths}


class OurEngine:
    """The bundle on TVMSession; prefill() and decode() return the greedy next token."""

    def __init__(self, bundle, threads: int):
        import tvm

        from harness.engines.tvm.runtime import TVMSession

        # Without TVM_NUM_THREADS, TVM takes hardware_concurrency / 2 on x86 (1 on a 2-core VM).
        if (n := tvm.get_global_func("runtime.NumThreads")()) != threads:
            sys.exit(f"TVM runs {n} threads, not {threads}: tvm was imported before TVM_NUM_THREADS was set")
        self.session = TVMSession(bundle, max_seq_len=N_CTX)
        self.vocab = self.session.vocab_size

    def prefill(self, ids: np.ndarray) -> int:
        return self.session.greedy(self.session.prefill(ids))

    def decode(self, token: int) -> int:
        return self.session.greedy(self.session.decode(token))


class RefEngine:
    """llama.cpp through llama-cpp-python, whole prompt in one ubatch, logits for the last token only.

    Logits are read with llama_get_logits_ith(ctx, -1): with logits_all=False, Llama.eval no longer
    copies them into Llama.scores (that row stays zero, and its argmax would always be token 0).
    """

    def __init__(self, llama_cpp, model_path, threads: int):
        self.lib = llama_cpp
        self.llm = llama_cpp.Llama(model_path=str(model_path), n_ctx=N_CTX, n_threads=threads, n_threads_batch=threads,
                                   n_batch=N_CTX, n_ubatch=N_CTX, logits_all=False, verbose=False)
        self.vocab = self.llm.n_vocab()

    def _greedy(self) -> int:
        logits = np.ctypeslib.as_array(self.lib.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.vocab,))
        return int(np.argmax(logits))

    def prefill(self, ids: np.ndarray) -> int:
        self.llm.reset()  # eval() then drops the KV cells from position 0 on
        self.llm.eval(ids.tolist())
        return self._greedy()

    def decode(self, token: int) -> int:
        self.llm.eval([token])
        return self._greedy()


def run_once(engine, ids: np.ndarray, steps: int) -> tuple[float, float, list[int]]:
    """(prefill seconds, decode seconds, greedy tokens) for one prompt; the greedy argmax is
    inside the timed spans for both engines, as a generation loop would pay for it."""
    t0 = time.perf_counter()
    token = engine.prefill(ids)
    t1 = time.perf_counter()
    tokens = [token]
    for _ in range(steps):
        token = engine.decode(token)
        tokens.append(token)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, tokens


def common_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def measure(engines: dict, seqs: dict[int, np.ndarray], repeats: int, steps: int) -> list[dict]:
    """Warm each engine on the longest prompt, then per L interleave the engines and keep medians."""
    longest = seqs[max(seqs)]
    for engine in engines.values():
        run_once(engine, longest, min(steps, 4))
    results = []
    for n, ids in seqs.items():
        runs = {name: [] for name in engines}
        for _ in range(repeats):
            for name, engine in engines.items():
                time.sleep(SETTLE_S)
                runs[name].append(run_once(engine, ids, steps))
        row = {"L": n}
        for name, rs in runs.items():
            row[f"{name}_prefill_tps"] = round(n / statistics.median(r[0] for r in rs), 1)
            row[f"{name}_decode_tps"] = round(steps / statistics.median(r[1] for r in rs), 1)
        row["agree"] = common_prefix(runs["ours"][0][2], runs["ref"][0][2])  # table only
        results.append(row)
    return results


def print_table(results: list[dict], ceiling: dict, steps: int, out) -> None:
    """Ratios are ours / llama.cpp: above 1 means our engine is faster."""
    head = f"{'L':>5} | {'prefill tok/s ours':>18} {'llama.cpp':>10} {'ratio':>6} | {'decode tok/s ours':>17} {'llama.cpp':>10} {'ratio':>6} | {'ceiling ours/llama.cpp':>22} | {'greedy agree':>12}"
    print(head, file=out)
    print("-" * len(head), file=out)
    ceil = f"{ceiling['ours']:.0f}/{ceiling['ref']:.0f}"
    for r in results:
        print(f"{r['L']:>5} | {r['ours_prefill_tps']:>18.1f} {r['ref_prefill_tps']:>10.1f} {r['ours_prefill_tps'] / r['ref_prefill_tps']:>6.2f}"
              f" | {r['ours_decode_tps']:>17.1f} {r['ref_decode_tps']:>10.1f} {r['ours_decode_tps'] / r['ref_decode_tps']:>6.2f}"
              f" | {ceil:>22} | {r['agree']:>5}/{steps + 1:<6}", file=out)


def main(argv=None) -> None:
    args = parse_args(argv)
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # read when tvm's thread pool starts: set before importing tvm
    llama_cpp = import_llama_cpp()
    out = sys.stderr if args.json_only else sys.stdout
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731 - keeps stdout for the table and JSON

    from harness.engines.tvm.compile import compile_model
    from harness.models.sources.builtin import load_smollm2, smollm2_gguf
    from harness.quantization import get_preset

    gguf_path = smollm2_gguf(log)
    bundle = compile_model(load_smollm2(log), get_preset("q4f16_1"), "llvm", log=log)
    bandwidth = memory_bandwidth_gbps()
    weight_bytes = {"ours": json.loads((bundle / "manifest.json").read_text())["weight_bytes"], "ref": gguf_tensor_bytes(gguf_path)}
    ceiling = {name: round(bandwidth * 1e9 / b, 1) for name, b in weight_bytes.items()}

    engines = {"ours": OurEngine(bundle, args.threads), "ref": RefEngine(llama_cpp, gguf_path, args.threads)}
    if engines["ours"].vocab != engines["ref"].vocab:
        sys.exit(f"vocab sizes differ: ours {engines['ours'].vocab}, llama.cpp {engines['ref'].vocab}; not the same model")
    t0, cpu0 = time.perf_counter(), cpu_seconds()
    results = measure(engines, token_sequences(args.lengths, engines["ours"].vocab), args.repeats, args.decode_tokens)
    foreign = foreign_cpu_share(cpu0, time.perf_counter() - t0)

    print(f"SmolLM2-135M-Instruct, {args.threads} threads, median of {args.repeats}, {args.decode_tokens} decode steps; "
          f"llama-cpp-python {llama_cpp.__version__} on {gguf_path.name}, ours q4f16_1 ({bundle.name})", file=out)
    print(f"bandwidth {bandwidth:.1f} GB/s (numpy copy, 1 thread); weight bytes/token: ours {weight_bytes['ours'] / 1e6:.1f} MB (manifest), "
          f"llama.cpp {weight_bytes['ref'] / 1e6:.1f} MB (GGUF tensor bytes)", file=out)
    print(f"other processes used {foreign:.0%} of the CPUs during the timed runs", file=out)
    if foreign > 0.05:
        log("WARNING: the machine was not idle; these numbers are not comparable, rerun when it is")
    print_table(results, ceiling, args.decode_tokens, out)
    print(json.dumps({
        "results": [{k: r[k] for k in ("L", "ours_prefill_tps", "ref_prefill_tps", "ours_decode_tps", "ref_decode_tps")} for r in results],
        "threads": args.threads,
        "bandwidth_gbps": round(bandwidth, 2),
        "decode_ceiling_tps": ceiling,
        "llama_cpp_version": llama_cpp.__version__,
    }))


if __name__ == "__main__":
    main()
