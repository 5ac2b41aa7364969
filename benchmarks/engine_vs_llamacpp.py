"""Our TVM engine vs llama.cpp's best CPU path: prefill and decode tokens/s, one run.

The reference is llama.cpp on GGUF Q4_0 made by llama.cpp's own quantizer from the same source
weights (``--ref q4_0``, the default; its CPU backend repacks Q4_0 for its integer dot-product
kernels), or the GGUF as SmolLM2 ships it (``--ref shipped``: Q4_1 with a Q8_0 head). Ours is
``--ours q4f16_1a8`` by default (int8 activations on integer dot products; ``q4f16_1`` is the
float-activation path MLC defines).

Both engines get the same token ids, the same thread count and the same protocol, interleaved
(ours, ref, ours, ref, ...) so that drift in the machine's state (thermal, another process) hits
both alike. Measured in the same run, by ``harness/profiling/peaks.py`` on the engines' threads:
the read bandwidth, right before and right after every timed decode (after the prefill), for
each engine's decode ceiling (each run's bytes streamed a second, every weight once plus the KV
cache at the step's mean context, over the better of the two readings around it), and the
compute peaks (fp32 FMA and int8-dot loops), for prefill as a share of what the CPU can do.
The last stdout line is one JSON object; per L it has ``ours_decode_ceiling_pct`` (and its
``ref_`` twin; ``*_decode_best_read_pct`` is the same speed over the best reading of the whole
run) and ``ours_prefill_peak_pct``: our linear layers' int8 (or fp32) GOP/s in prefill as a
share of the peak, timed kernel by kernel through the VM's instrument hook
(``harness.profiling``) in one extra prefill per L. ``*_prefill_effective_pct`` counts the same
linear work over the whole prefill time instead (attention included), the only form llama.cpp's
can take.

    python benchmarks/engine_vs_llamacpp.py [--model M] [--lengths 200,400] [--repeats 3]
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
SETTLE_S = 0.05
PROFILED_PREFILLS = 3  # let the other engine's worker threads stop spinning before timing this one


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--lengths", default="200,400,600,800,1000", help="prompt lengths L, comma separated"
    )
    p.add_argument(
        "--repeats", type=int, default=3, help="timed runs per engine and L (median taken)"
    )
    p.add_argument(
        "--decode-tokens", type=int, default=64, help="greedy decode steps after each prefill"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="threads for both engines (default: cores in this process's affinity)",
    )
    p.add_argument(
        "--model",
        default="smollm2-135m-instruct",
        help=(
            "built-in or catalog model (catalog models without "
            "weights run on dummy weights of their shapes)"
        ),
    )
    p.add_argument(
        "--ours",
        default="q4f16_1a8",
        help="our quantization preset (q4f16_1a8: int8 activations; q4f16_1: MLC's float path)",
    )
    p.add_argument(
        "--target",
        # harness.engines.tvm.targets.HOST_CPU_TARGETS, written out: importing it imports TVM,
        # which must wait until main() has set TVM_NUM_THREADS
        choices=("llvm", "llvm-avx2"),
        default="llvm",
        help=(
            "our compile target: the host CPU (default), or llvm-avx2 for the AVX2 kernels on a"
            " newer x86 (peaks then measured with AVX2's instructions; llama.cpp keeps its own)"
        ),
    )
    p.add_argument(
        "--ref",
        choices=("q4_0", "shipped"),
        default="q4_0",
        help="llama.cpp's format: Q4_0 from its own quantizer (default) or the GGUF as shipped",
    )
    p.add_argument(
        "--json-only", action="store_true", help="print only the JSON line (logs go to stderr)"
    )
    args = p.parse_args(argv)
    args.lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
    too_long = [n for n in args.lengths if n + args.decode_tokens > N_CTX]
    if (
        too_long
        or not args.lengths
        or args.repeats < 1
        or args.decode_tokens < 1
        or args.threads < 1
    ):
        p.error(
            "need 1+ lengths, repeats, decode tokens and threads, "
            f"and L + decode tokens <= {N_CTX} (bad: {too_long})"
        )
    return args


def with_huge_pages() -> None:
    """Run as the harness's runner does, with glibc's malloc asking for huge pages (a tunable read
    at start: this re-executes the script once with it set). Both engines allocate in this
    process, so both get them."""
    from harness.engines import with_huge_page_malloc

    env = with_huge_page_malloc(dict(os.environ))
    if env != dict(os.environ):
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


def import_llama_cpp():
    """Fail in one line, before any slow step, when the reference engine is missing; the harness
    points llama-cpp-python at its own llama.cpp build when the binding has none."""
    from harness.engines.llamacpp.engine import llama_cpp
    from harness.errors import UserError

    try:
        return llama_cpp()
    except UserError as exc:
        sys.exit(str(exc))


def memory_bandwidth_gbps() -> float:
    """Measured now (not the harness's cached host value): the ceiling must describe this run."""
    from harness.devices.local import measure_bandwidth_gbps

    return measure_bandwidth_gbps()


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
            sys.exit(
                f"TVM runs {n} threads, not {threads}: tvm "
                "was imported before TVM_NUM_THREADS was set"
            )
        self.session = TVMSession(bundle, max_seq_len=N_CTX)
        self.vocab = self.session.vocab_size

    def prefill(self, ids: np.ndarray) -> int:
        return self.session.greedy(self.session.prefill(ids))

    def decode(self, token: int) -> int:
        return self.session.greedy(self.session.decode(token))


class RefEngine:
    """llama.cpp through llama-cpp-python, whole prompt in one ubatch, logits for the last token
    only.

    Logits are read with llama_get_logits_ith(ctx, -1): with logits_all=False, Llama.eval no longer
    copies them into Llama.scores (that row stays zero, and its argmax would always be token 0).
    """

    def __init__(self, llama_cpp, model_path, threads: int):
        self.lib = llama_cpp
        self.llm = llama_cpp.Llama(
            model_path=str(model_path),
            n_ctx=N_CTX,
            n_threads=threads,
            n_threads_batch=threads,
            n_batch=N_CTX,
            n_ubatch=N_CTX,
            logits_all=False,
            verbose=False,
        )
        self.vocab = self.llm.n_vocab()

    def _greedy(self) -> int:
        logits = np.ctypeslib.as_array(
            self.lib.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.vocab,)
        )
        return int(np.argmax(logits))

    def prefill(self, ids: np.ndarray) -> int:
        self.llm.reset()  # eval() then drops the KV cells from position 0 on
        self.llm.eval(ids.tolist())
        return self._greedy()

    def decode(self, token: int) -> int:
        self.llm.eval([token])
        return self._greedy()


def run_once(engine, ids: np.ndarray, steps: int, probe=None) -> tuple:
    """(prefill seconds, decode seconds, greedy tokens, the bandwidth ``probe()`` read between
    the prefill and the first decode step, or None). The greedy argmax is inside the timed spans
    for both engines, as a generation loop would pay for it."""
    t0 = time.perf_counter()
    token = engine.prefill(ids)
    prefill_s = time.perf_counter() - t0
    reading = probe() if probe else None
    t1 = time.perf_counter()
    tokens = [token]
    for _ in range(steps):
        token = engine.decode(token)
        tokens.append(token)
    return prefill_s, time.perf_counter() - t1, tokens, reading


def common_prefix(a: list[int], b: list[int]) -> int:
    # zip stops at the shorter list on purpose: no mismatch up to there, the prefix is that list.
    mismatches = (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    return next(mismatches, min(len(a), len(b)))


def measure(
    engines: dict, seqs: dict[int, np.ndarray], repeats: int, steps: int, probe
) -> list[dict]:
    """Warm each engine on the longest prompt, then per L interleave the engines and keep
    medians. ``probe()`` reads the memory bandwidth right before and right after every run's
    decode (``row["runs"]``: per engine, its decode seconds and those two readings); a row's
    ``read_gbps`` is the median of that L's readings, ``read_best_gbps`` the best."""
    longest = seqs[max(seqs)]
    for engine in engines.values():
        run_once(engine, longest, min(steps, 4))
    results = []
    for n, ids in seqs.items():
        runs = {name: [] for name in engines}
        paired = {name: [] for name in engines}
        for _ in range(repeats):
            for name, engine in engines.items():
                time.sleep(SETTLE_S)
                prefill_s, decode_s, tokens, before = run_once(engine, ids, steps, probe)
                runs[name].append((prefill_s, decode_s, tokens))
                paired[name].append((decode_s, before, probe()))
        readings = [
            reading
            for pairs in paired.values()
            for _, before, after in pairs
            for reading in (before, after)
        ]
        row = {
            "L": n,
            "read_gbps": round(statistics.median(readings), 2),
            "read_best_gbps": round(max(readings), 2),
            "runs": paired,
        }
        for name, rs in runs.items():
            row[f"{name}_prefill_tps"] = round(n / statistics.median(r[0] for r in rs), 1)
            row[f"{name}_decode_tps"] = round(steps / statistics.median(r[1] for r in rs), 1)
        row["agree"] = common_prefix(runs["ours"][0][2], runs["ref"][0][2])  # table only
        results.append(row)
    return results


def print_table(results: list[dict], steps: int, out) -> None:
    """Ratios are ours / llama.cpp: above 1 means our engine is faster. Decode is also shown as a
    share of each engine's bandwidth ceiling at that L, prefill as a share of the int8-dot peak."""

    head = (
        f"{'L':>5} | {'prefill tok/s ours':>18} {'llama.cpp':>10} {'ratio':>6} "
        f"{'% peak ours/ref (lin)':>21} | {'decode tok/s ours':>17} {'llama.cpp':>10} "
        f"{'ratio':>6} {'% ceiling ours/ref (best)':>25} | {'greedy agree':>12}"
    )
    print(head, file=out)
    print("-" * len(head), file=out)
    for r in results:
        peak = (
            f"{r['ours_prefill_effective_pct']:.0f}/{r['ref_prefill_effective_pct']:.0f}"
            f" ({r['ours_prefill_peak_pct']:.0f})"
            if r.get("ours_prefill_effective_pct") is not None
            else "-"
        )
        ceil = (
            f"{r['ours_decode_ceiling_pct']:.0f}/{r['ref_decode_ceiling_pct']:.0f}"
            f" ({r['ours_decode_best_read_pct']:.0f}/{r['ref_decode_best_read_pct']:.0f})"
        )
        print(
            f"{r['L']:>5} | {r['ours_prefill_tps']:>18.1f} {r['ref_prefill_tps']:>10.1f} "
            f"{r['ours_prefill_tps'] / r['ref_prefill_tps']:>6.2f} {peak:>21} | "
            f"{r['ours_decode_tps']:>17.1f} {r['ref_decode_tps']:>10.1f} "
            f"{r['ours_decode_tps'] / r['ref_decode_tps']:>6.2f} {ceil:>25} | "
            f"{r['agree']:>5}/{steps + 1:<6}",
            file=out,
        )


def linear_macs_per_token(cfg) -> int:
    """Multiply-adds of the linear layers for one prompt token (the LM head runs for the last
    position only, so it is left out): what prefill's share of the peak is counted on."""
    h, d = cfg.hidden_size, cfg.head_dim
    per_layer = h * (cfg.num_heads + 2 * cfg.num_kv_heads) * d + cfg.num_heads * d * h
    per_layer += h * cfg.intermediate_size * (2 if cfg.gated_mlp else 1) + cfg.intermediate_size * h
    return per_layer * cfg.num_layers


def kv_bytes_per_token(cfg, kv_dtype_bytes: int = 2) -> int:
    """Bytes of K and V one cached token holds across the layers: what every decode step reads
    again for each token of its context (both engines keep the cache in fp16 here)."""
    return 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * kv_dtype_bytes


def ceiling_bandwidth(results: list[dict], first_read_gbps: float) -> float:
    """The best read-bandwidth reading of the whole run: the conservative ceiling of
    ``*_decode_best_read_pct``."""
    return max([first_read_gbps] + [r["read_best_gbps"] for r in results])


def add_ceiling_shares(
    results: list[dict], weight_bytes: dict, kv_per_token: int, steps: int, best_gbps: float
) -> None:
    """Decode as % of the bandwidth ceiling at that L, the bytes a step reads being its weights
    and the KV cache at the decode's mean context L + steps / 2.

    ``*_decode_ceiling_pct``: each run's streamed GB/s over the better of the two readings around
    it, the median over the runs. This VM's bandwidth moves 1.5-2x between minutes (24-63 GB/s
    in one evening), so only a reading taken next to a run says what the machine could do during
    it; the better of two keeps a dip inside the run from flattering it.
    ``*_decode_best_read_pct``: the median decode speed over the run's best reading
    (``best_gbps``), which a single fast reading anywhere in the run pulls down for every L."""
    for r in results:
        kv = kv_per_token * (r["L"] + steps / 2)
        for name, weights in weight_bytes.items():
            step_bytes = weights + kv
            shares = [
                100 * step_bytes * steps / seconds / 1e9 / max(before, after)
                for seconds, before, after in r["runs"][name]
            ]
            r[f"{name}_decode_ceiling_pct"] = round(statistics.median(shares), 1)
            best_tps = best_gbps * 1e9 / step_bytes
            r[f"{name}_decode_best_read_pct"] = round(100 * r[f"{name}_decode_tps"] / best_tps, 1)


def cpu_description() -> str:
    """The CPU's model name and the vector / dot-product features that decide the kernels."""
    import platform

    fields, flags = {}, set()
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = (part.strip() for part in line.partition(":"))
            fields.setdefault(key, value)
            if key in ("flags", "Features"):
                flags = set(value.split())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    # A VM often reports only "AMD EPYC": family/model/stepping tell the generation (25/1 = Zen 3).
    ident = ", ".join(
        f"{k} {fields[k]}" for k in ("cpu family", "model", "stepping") if k in fields
    )
    wanted = (
        "avx2",
        "fma",
        "f16c",
        "avx512f",
        "avx512_vnni",
        "avx_vnni",
        "amx_int8",
        "asimd",
        "asimddp",
        "i8mm",
        "fphp",
    )
    features = " ".join(f for f in wanted if f in flags) or "no vector features listed"
    return f"{name}{f' ({ident})' if ident else ''}, {os.cpu_count()} CPUs; features: {features}"


def gguf_format(path) -> str:
    """The GGUF's tensor types by share of bytes, e.g. "Q4_0 (94%), Q6_K (5%), F32 (1%)"."""
    from collections import Counter

    from gguf import GGUFReader

    by_type = Counter()
    for t in GGUFReader(path).tensors:
        by_type[t.tensor_type.name] += int(t.n_bytes)
    total = sum(by_type.values())
    return ", ".join(f"{name} ({100 * n / total:.0f}%)" for name, n in by_type.most_common())


def reference_gguf(args, model, log):
    """The llama.cpp model file: Q4_0 quantized by llama.cpp from the same source weights, or the
    GGUF as shipped (SmolLM2's Q4_1)."""
    from harness.engines.llamacpp import engine as llamacpp_engine
    from harness.quantization import get_preset

    if args.ref == "shipped":
        if args.model != "smollm2-135m-instruct":
            sys.exit(
                "--ref shipped needs a model that ships as "
                f"GGUF (smollm2-135m-instruct), not {args.model}"
            )
        from harness.models.sources.builtin import smollm2_gguf

        return smollm2_gguf(log)
    return llamacpp_engine.build(model, get_preset("q4f16_1"), log=log) / llamacpp_engine.GGUF_NAME


def add_linear_peak_shares(
    results: list[dict], session, seqs: dict[int, np.ndarray], peaks: dict, read_gbps: float
) -> None:
    """``ours_prefill_peak_pct``: our linear layers' achieved GOP/s in prefill (their own kernel
    time, from the VM's instrument hook, the hook's cost taken off) as % of the peak of their
    arithmetic. The median of PROFILED_PREFILLS hooked prefills per L, after the timed runs."""
    from harness.profiling.calibrate import measure_hook_cost
    from harness.profiling.collect import PhaseTimes, Recorder, profile_prefill, summarize
    from harness.profiling.schema import Ceilings

    ceilings = Ceilings(
        bandwidth_gbps=read_gbps, fp32_gflops=peaks["fp32_gflops"], int8_gops=peaks["int8_gops"]
    )
    hook, recorder = measure_hook_cost(Recorder), Recorder()
    for r in results:
        ids = seqs[r["L"]]
        shares = []
        for _ in range(PROFILED_PREFILLS):
            times = PhaseTimes()
            profile_prefill(session, ids, recorder, times)
            phase = summarize(
                L=r["L"],
                phase="prefill",
                input_tokens=len(ids),
                steps=1,
                wall_ns=times.plain_ns[0],
                profiled_ns=times.hooked_ns[0],
                stats=times.stats[0],
                calls=times.calls[0],
                vocab_size=session.vocab_size,
                ceilings=ceilings,
                hook=hook,
            )
            linear = next(g for g in phase.groups if g.group == "linear")
            shares.append(linear.compute_pct)
        r["ours_prefill_peak_pct"] = round(statistics.median(shares), 1)


def add_peak_shares(results: list[dict], macs: int, peaks: dict, ours_activations: str) -> None:
    """Prefill's linear-layer throughput as % of the peak of the arithmetic each engine runs:
    the int8-dot peak for llama.cpp's Q4_0 and our int8 activations, the fp32 FMA peak for our
    float path (and for both where the CPU has no int8 kernels of ours)."""
    int8 = peaks["int8_gops"] or peaks["fp32_gflops"]
    peak = {"ours": int8 if ours_activations == "int8" else peaks["fp32_gflops"], "ref": int8}
    for r in results:
        for name in ("ours", "ref"):
            r[f"{name}_prefill_effective_pct"] = round(
                100 * r[f"{name}_prefill_tps"] * 2 * macs / 1e9 / peak[name], 1
            )


def main(argv=None) -> None:
    args = parse_args(argv)
    if argv is None:  # run as a script, not called: re-executing would replace the caller
        with_huge_pages()
    # read when tvm's thread pool starts: set before importing tvm
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    llama_cpp = import_llama_cpp()
    out = sys.stderr if args.json_only else sys.stdout
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731 - keeps stdout for the table and JSON

    from harness.engines.llamacpp.engine import gguf_tensor_bytes
    from harness.engines.tvm.compile import compile_model
    from harness.engines.tvm.targets import resolve
    from harness.models.resolve import resolve_model
    from harness.profiling.peaks import measure_peaks, read_probe
    from harness.quantization import get_preset

    model = resolve_model(args.model, log)
    gguf_path = reference_gguf(args, model, log)
    bundle = compile_model(model, get_preset(args.ours), args.target, log=log)
    manifest = json.loads((bundle / "manifest.json").read_text())
    bandwidth = memory_bandwidth_gbps()
    peaks = measure_peaks(resolve(args.target), args.threads)
    # what llama.cpp reads per token: every tensor once (the embedding doubles as the tied LM head)
    weight_bytes = {"ours": manifest["weight_bytes"], "ref": gguf_tensor_bytes(gguf_path)}
    ceiling = {name: round(bandwidth * 1e9 / b, 1) for name, b in weight_bytes.items()}

    engines = {
        "ours": OurEngine(bundle, args.threads),
        "ref": RefEngine(llama_cpp, gguf_path, args.threads),
    }
    if engines["ours"].vocab != engines["ref"].vocab:
        sys.exit(
            f"vocab sizes differ: ours {engines['ours'].vocab}, "
            f"llama.cpp {engines['ref'].vocab}; not the same model"
        )
    t0, cpu0 = time.perf_counter(), cpu_seconds()
    results = measure(
        engines,
        token_sequences(args.lengths, engines["ours"].vocab),
        args.repeats,
        args.decode_tokens,
        read_probe(resolve(args.target), args.threads),
    )
    foreign = foreign_cpu_share(cpu0, time.perf_counter() - t0)
    add_peak_shares(results, linear_macs_per_token(model.config), peaks, manifest["activations"])
    add_linear_peak_shares(
        results,
        engines["ours"].session,
        token_sequences(args.lengths, engines["ours"].vocab),
        peaks,
        peaks["read_gbps"],
    )
    kv_per_token = kv_bytes_per_token(model.config)
    ceiling_gbps = ceiling_bandwidth(results, peaks["read_gbps"])
    add_ceiling_shares(results, weight_bytes, kv_per_token, args.decode_tokens, ceiling_gbps)

    ref_format = gguf_format(gguf_path)
    system_info = llama_cpp.llama_print_system_info().decode().strip()
    print(
        f"{model.name} ({model.weights} weights), {args.threads} threads, "
        f"median of {args.repeats}, {args.decode_tokens} decode steps",
        file=out,
    )
    print(f"CPU: {cpu_description()}", file=out)
    print(
        f"ours: {manifest['quantization']} ({bundle.name}), target {args.target}, activations"
        f" {manifest['activations']}, "
        f"kernels: {manifest['kernels_detail']}",
        file=out,
    )
    print(
        f"llama.cpp: llama-cpp-python {llama_cpp.__version__} "
        f"on {gguf_path.name}: {ref_format}; {system_info}",
        file=out,
    )
    per_l_reads = ", ".join(f"{r['read_gbps']}/{r['read_best_gbps']}" for r in results)
    print(
        f"bandwidth: read {ceiling_gbps:.1f} GB/s at best ({args.threads} threads, peak.py:"
        f" {peaks['read_gbps']:.1f} before the runs; per L around the runs, median / best:"
        f" {per_l_reads}), copy"
        f" {bandwidth:.1f} GB/s (numpy, 1 thread); weight bytes/token: ours"
        f" {weight_bytes['ours'] / 1e6:.1f} MB (manifest), llama.cpp"
        f" {weight_bytes['ref'] / 1e6:.1f} MB (GGUF tensor bytes); KV cache"
        f" {kv_per_token / 1e3:.1f} kB per context token; % ceiling = a run's decode GB/s"
        f" (tok/s x (weights + KV at L + {args.decode_tokens // 2})) over the better reading"
        " next to it, median of the runs; in brackets over the best reading of the whole run",
        file=out,
    )
    print(
        f"peaks ({args.threads} threads, peak.py): fp32 FMA {peaks['fp32_gflops']:.0f} "
        f"GFLOP/s ({peaks['lanes']} lanes), int8 dot {peaks['int8_gops'] or 0:.0f} "
        f"GOP/s ({peaks['isa'] or 'none'}); prefill counts "
        f"{2 * linear_macs_per_token(model.config) / 1e6:.0f} MOP/token of linear layers; % peak"
        " = that work over the whole prefill (ours/ref) and, in brackets, over our linear"
        " kernels' own time (hook-timed)",
        file=out,
    )
    print(f"other processes used {foreign:.0%} of the CPUs during the timed runs", file=out)
    if foreign > 0.05:
        log("WARNING: the machine was not idle; these numbers are not comparable, rerun when it is")
    print_table(results, args.decode_tokens, out)
    print(
        json.dumps(
            {
                "results": [
                    {
                        k: r[k]
                        for k in (
                            "L",
                            "ours_prefill_tps",
                            "ref_prefill_tps",
                            "ours_decode_tps",
                            "ref_decode_tps",
                            "read_gbps",
                            "read_best_gbps",
                            "ours_decode_ceiling_pct",
                            "ref_decode_ceiling_pct",
                            "ours_decode_best_read_pct",
                            "ref_decode_best_read_pct",
                            "ours_prefill_peak_pct",
                            "ours_prefill_effective_pct",
                            "ref_prefill_effective_pct",
                        )
                    }
                    for r in results
                ],
                "ref_format": f"{args.ref}: {ref_format}",
                "ours_format": manifest["quantization"],
                "ours_target": args.target,
                "ours_kernels": manifest["kernels"],
                "model": model.name,
                "threads": args.threads,
                "bandwidth_gbps": round(bandwidth, 2),
                "read_bandwidth_gbps": peaks["read_gbps"],
                "ceiling_read_gbps": ceiling_gbps,
                "kv_bytes_per_token": kv_per_token,
                "decode_ceiling_tps": ceiling,
                "peaks": peaks,
                "cpu": cpu_description(),
                "llama_cpp_version": llama_cpp.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
