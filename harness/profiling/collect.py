"""Profile prefill and decode through the Relax VM's instrument hook (TVM 0.27).

TVM 0.27's runtime has no VM profiler (``tvm.runtime.profiling`` and ``VirtualMachine(...,
profile=True)`` are gone); what it keeps is ``VirtualMachine.set_instrument``: a function called
before and after every VM call instruction, with the callee's symbol and its arguments. It
needs no special build, so the profile runs the very bundle the benchmark measures. Each call's
duration is the time between the two hooks (CPU kernels run synchronously: the call is done
when the VM returns from it); its bytes and operations come from the arguments' shapes
(``costs``).

For each L: a warm-up pass, then the plain pass (no hook; its wall times are what the table adds
up to), then the profiled pass. A pass is one prefill of the L-token prompt and N decode steps,
each step being the decode call plus the greedy sampling of its logits, as the runner times them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import costs
from .calibrate import HookCost, measure_hook_cost
from .schema import OVERHEAD, Ceilings, GroupStat, KernelStat, PhaseProfile, ProfileResult, Rates

WARMUP_DECODE_STEPS = 2
ROUNDS = 5
KV_HEADROOM = 16
NULL_CALL = "vm.builtin.null_value"


class Recorder:
    """The VM's instrument hook: per symbol, its calls, nanoseconds, bytes and operations.

    Kept lean because its own cost lands in the profiled phase: the clock is read first thing in
    both hooks, and a symbol's cost is worked out from shapes once per forward pass (every layer
    calls a kernel with the same shapes).
    """

    def __init__(self) -> None:
        self.stats: dict[str, list[float]] = {}  # name -> [calls, ns, bytes, ops, arguments]
        self.calls = 0
        self._cost: dict[str, tuple[float, float]] = {}
        self._context = 0
        self._t0 = 0

    def forward(self, context: int) -> None:
        """A forward pass starts; the KV cache will hold ``context`` tokens once it appended."""
        self._cost.clear()
        self._context = context

    def take(self) -> tuple[dict[str, list[float]], int]:
        """What was recorded since the last take, and the number of calls; starts afresh."""
        stats, calls = self.stats, self.calls
        self.stats, self.calls = {}, 0
        return stats, calls

    def __call__(self, func, symbol, before, ret, *args) -> int:
        now = time.perf_counter_ns()
        if before:
            self._t0 = now
            return 0
        elapsed = now - self._t0
        self.calls += 1
        name = str(symbol)
        cost = self._cost.get(name)
        if cost is None:
            cost = self._cost[name] = costs.call_cost(name, _tensors(args), self._context)
        entry = self.stats.setdefault(name, [0, 0, 0.0, 0.0, len(args)])
        entry[0] += 1
        entry[1] += elapsed
        entry[2] += cost[0]
        entry[3] += cost[1]
        return 0


def _tensors(args) -> list[costs.Tensor]:
    import tvm

    return [
        costs.Tensor(tuple(int(d) for d in a.shape), str(a.dtype))
        for a in args
        if isinstance(a, tvm.runtime.Tensor)
    ]


@dataclass
class PhaseTimes:
    """One phase over a profile's rounds: the plain runs' wall times (what the table adds up to)
    and what the hook recorded in the profiled runs."""

    plain_ns: list[int] = field(default_factory=list)
    hooked_ns: list[int] = field(default_factory=list)
    stats: list[dict[str, list[float]]] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)


def hooked(session, recorder: Recorder, context: int, call):
    """``call()`` with the hook on: its wall nanoseconds, result, per-symbol stats and calls."""
    recorder.take()
    recorder.forward(context)
    session.vm.set_instrument(recorder)
    try:
        t0 = time.perf_counter_ns()
        result = call()
        elapsed = time.perf_counter_ns() - t0
    finally:
        session.vm.set_instrument(None)
    stats, calls = recorder.take()
    return elapsed, result, stats, calls


def profile_prefill(session, ids, recorder: Recorder, out: PhaseTimes):
    """One plain prefill of ``ids`` then one profiled; returns the profiled run's logits."""
    t0 = time.perf_counter_ns()
    session.prefill(ids)
    out.plain_ns.append(time.perf_counter_ns() - t0)
    elapsed, logits, stats, calls = hooked(
        session, recorder, len(ids), lambda: session.prefill(ids)
    )
    out.hooked_ns.append(elapsed)
    out.stats.append(stats)
    out.calls.append(calls)
    return logits


def profile_decode(session, token: int, pairs: int, recorder: Recorder, out: PhaseTimes):
    """``pairs`` pairs of greedy decode steps, the first of each plain and the second profiled.

    Steps alternate rather than passes: on a shared machine a pass's speed drifts by 10% from one
    pass to the next, while two neighbouring steps see the same conditions and a context one token
    apart. A step is what the runner times: the decode call, then sampling its logits (host work
    the VM never sees, so it is timed here and recorded as its own kernel: reading the token the
    library picked, on CPU builds, else scanning the logits)."""
    clock = time.perf_counter_ns
    plain = hooked_wall = sampling = calls = 0
    step_stats = []
    for _ in range(pairs):
        t0 = clock()
        token = session.greedy(session.decode(token))
        plain += clock() - t0
        elapsed, logits, stats, n = hooked(
            session, recorder, session.length + 1, lambda t=token: session.decode(t)
        )
        t1 = clock()
        token = session.greedy(logits)
        spent = clock() - t1
        hooked_wall += elapsed + spent
        sampling += spent
        calls += n
        step_stats.append(stats)
    merged = _merge(step_stats)
    # bytes and operations of one host sampling: the int32 the library's argmax_cpu wrote (its
    # scan is that kernel's own row), else the logits read in place and compared
    vocab = session.vocab_size
    read, compares = (4.0, 0.0) if logits.token is not None else (vocab * 4.0 * 2, float(vocab))
    merged["sampling"] = [pairs, sampling, pairs * read, pairs * compares, 0]
    out.plain_ns.append(plain)
    out.hooked_ns.append(hooked_wall)
    out.stats.append(merged)
    out.calls.append(calls)
    return token


def profile_session(
    session,
    prompts: dict[int, list[int]],
    steps: int,
    ceilings: Ceilings,
    log=print,
    rounds: int = ROUNDS,
    calibration_vm=None,
) -> list[PhaseProfile]:
    """Profile an open engine session (a TVMSession) at each L of ``prompts`` (L -> token ids).

    Each of ``rounds`` rounds prefills plain then profiled, and decodes ``steps`` plain steps
    interleaved with ``steps`` profiled ones. Prefill keeps one round, its plain run with its own
    profiled run (the one of median check); decode adds every round up. The hook's cost is
    calibrated in ``calibration_vm`` (a phone's runner loads one the host compiled) or in a
    compile of its own."""
    import numpy as np

    recorder = Recorder()
    hook = measure_hook_cost(Recorder, calibration_vm)
    log(
        f"hook cost: {hook.base_ns:.0f} ns + {hook.per_arg_ns:.0f} ns per argument a call;"
        f" the VM's own {hook.dispatch_ns:.0f} ns a call instruction"
    )
    phases = []
    for L, ids in prompts.items():
        ids = np.asarray(ids, dtype=np.int32)
        log(f"L={L}: {len(ids)} input tokens, {rounds} rounds of {steps} + {steps} decode steps")
        warm = session.prefill(ids)
        for _ in range(WARMUP_DECODE_STEPS):
            warm = session.decode(session.greedy(warm))
        prefill, decode = PhaseTimes(), PhaseTimes()
        for _ in range(rounds):
            logits = profile_prefill(session, ids, recorder, prefill)
            profile_decode(session, session.greedy(logits), steps, recorder, decode)
        common = dict(L=L, input_tokens=len(ids), vocab_size=session.vocab_size)
        # Each round's plain prefill and its profiled one ran back to back; on a shared machine
        # two rounds can be seconds and 20% of speed apart (a 2-vCPU VM, 2026-12-05). Of the
        # rounds, each summarized against its own plain run, the one whose kernels explain its
        # plain time by the median share is kept: no plain median next to another round's kernels.
        rounds_prefill = [
            summarize(
                phase="prefill",
                steps=1,
                wall_ns=prefill.plain_ns[i],
                profiled_ns=prefill.hooked_ns[i],
                stats=prefill.stats[i],
                calls=prefill.calls[i],
                ceilings=ceilings,
                hook=hook,
                **common,
            )
            for i in range(rounds)
        ]
        phases.append(sorted(rounds_prefill, key=lambda p: p.explained)[rounds // 2])
        phases.append(
            summarize(
                phase="decode",
                steps=rounds * steps,
                wall_ns=sum(decode.plain_ns),
                profiled_ns=sum(decode.hooked_ns),
                stats=_merge(decode.stats),
                calls=sum(decode.calls),
                ceilings=ceilings,
                hook=hook,
                **common,
            )
        )
    return phases


def _merge(stats: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    merged: dict[str, list[float]] = {}
    for one in stats:
        for name, entry in one.items():
            mine = merged.setdefault(name, [0, 0, 0.0, 0.0, entry[4]])
            for i in range(4):
                mine[i] += entry[i]
    return merged


def summarize(
    L: int,
    phase: str,
    input_tokens: int,
    steps: int,
    wall_ns: int,
    profiled_ns: int,
    stats: dict[str, list[float]],
    calls: int,
    vocab_size: int,
    ceilings: Ceilings,
    hook: HookCost,
) -> PhaseProfile:
    """Kernels and groups of one phase. Groups add up to the plain run's wall time: every group
    is its kernels' measured time, and the overhead is what remains of the wall time.

    Each call's time includes the hook's own round trip (VM -> Python -> VM). Its charge for a
    call without arguments is taken in situ, as the mean time of the VM's do-nothing
    ``vm.builtin.null_value`` calls in the same pass, and each argument adds the calibrated
    ``hook.per_arg_ns``; that is taken off every kernel call (sampling, timed in Python, excepted).
    The overhead expected from the calibration (the VM's dispatch per call instruction) is kept
    beside the remainder, so the check compares two measurements, not a sum with itself."""
    wall = wall_ns / 1e9
    base = hook_floor_ns(stats) or hook.base_ns
    kernels = []
    for name, (n, ns, nbytes, ops, args) in stats.items():
        group = costs.group_of(name, vocab_size)
        if group is None:
            continue  # VM bookkeeping: part of the overhead
        charge = n * (base + hook.per_arg_ns * args) if name != "sampling" else 0.0
        kernel = KernelStat(
            name=name,
            group=group,
            calls=int(n),
            time_s=max(0.0, ns - charge) / 1e9,
            bytes=nbytes,
            ops=ops,
            int8=costs.is_int8(name),
        )
        kernels.append(with_rates(kernel, wall, ceilings))
    kernels.sort(key=lambda k: -k.time_s)
    kernel_s = sum(k.time_s for k in kernels)
    groups = []
    for group in dict.fromkeys(k.group for k in sorted(kernels, key=_group_order)):
        members = [k for k in kernels if k.group == group]
        stat = GroupStat(
            group=group,
            calls=sum(k.calls for k in members),
            time_s=sum(k.time_s for k in members),
            bytes=sum(k.bytes for k in members),
            ops=sum(k.ops for k in members),
            int8=any(k.int8 for k in members),
        )
        groups.append(with_rates(stat, wall, ceilings))
    vm_calls = sum(
        int(v[0]) for name, v in stats.items() if costs.group_of(name, vocab_size) is None
    )
    groups.append(
        GroupStat(
            group=OVERHEAD,
            calls=vm_calls,
            time_s=wall - kernel_s,
            share=(wall - kernel_s) / wall if wall else 0.0,
        )
    )
    return PhaseProfile(
        L=L,
        phase=phase,
        input_tokens=input_tokens,
        steps=steps,
        wall_s=wall,
        profiled_wall_s=profiled_ns / 1e9,
        kernel_s=kernel_s,
        overhead_s=wall - kernel_s,
        calls=calls,
        hook_floor_ns=base,
        hook_per_arg_ns=hook.per_arg_ns,
        expected_overhead_s=calls * hook.dispatch_ns / 1e9,
        kernels=kernels,
        groups=groups,
    )


def hook_floor_ns(stats: dict[str, list[float]]) -> float:
    """Mean hooked time of a VM call that does nothing: what the hook adds to every call."""
    n, ns, *_ = stats.get(NULL_CALL, [0, 0])
    return ns / n if n else 0.0


def _group_order(kernel: KernelStat) -> int:
    from .schema import GROUPS

    return GROUPS.index(kernel.group) if kernel.group in GROUPS else len(GROUPS)


def with_rates(stat: Rates, wall_s: float, ceilings: Ceilings):
    """``stat`` with its share of the phase, achieved rates and their share of the ceilings."""
    t = stat.time_s
    stat.share = t / wall_s if wall_s else 0.0
    if t <= 0:
        return stat
    stat.gbps = stat.bytes / t / 1e9
    stat.gops = stat.ops / t / 1e9
    peak = ceilings.int8_gops if stat.int8 else ceilings.fp32_gflops
    bw = ceilings.bandwidth_gbps
    if bw:
        stat.bandwidth_pct = 100 * stat.gbps / bw
    if peak:
        stat.compute_pct = 100 * stat.gops / peak
    if bw and peak and stat.bytes:
        attainable = min(peak, bw * stat.ops / stat.bytes)
        stat.roofline_pct = 100 * stat.gops / attainable if attainable else None
    elif bw and not peak:
        stat.roofline_pct = stat.bandwidth_pct  # no compute ceiling known: bandwidth only
    return stat


NOTES = [
    "per-call times from the Relax VM's instrument hook (TVM 0.27 has no VM profiler)",
    "attention includes RoPE and the KV append: the paged KV cache runs them inside one VM builtin",
    "overhead = the plain run's phase wall time minus the profiled run's kernel times:"
    " VM instructions, allocations, host calls between kernels",
]
BUSY = 0.05  # other processes' share of the CPUs above which a profile's times are suspect


def _counters():
    """This host's /proc/stat and this process's own ticks (``harness.devices.load``)."""
    from harness.devices.load import parse_counters

    with open("/proc/stat") as stat, open("/proc/self/stat") as own:
        return parse_counters(stat.read() + own.read())


def busy_warning(share: float) -> str:
    return (
        f"other processes used {share:.0%} of the CPUs while this profiled: a kernel whose worker"
        " thread is preempted waits for it, so times (and the check) are not reliable; profile"
        " on an idle machine"
    )


def prompt_ids(bundle: Path, lengths: list[int]) -> dict[int, list[int]]:
    """The model's token ids of the suite's first document's summarization prompt at each L (what
    ``slm-bench run`` feeds at that L, chat template applied)."""
    from harness.models.tokenizer import tokenizer_for_bundle
    from harness.prompts.suite import load_suite, select

    vocab = json.loads((Path(bundle) / "config.json").read_text())["vocab_size"]
    tokenizer = tokenizer_for_bundle(bundle, vocab)
    suite = load_suite()
    return {L: tokenizer.encode_chat(select(suite, ["summ"], [L], 1)[0].text) for L in lengths}


def profile_local(
    model: str,
    quantization: str,
    lengths: list[int],
    steps: int,
    threads: int | None = None,
    rounds: int = ROUNDS,
    log: Callable[[str], None] = print,
    with_memory: bool = True,
    target: str = "llvm",
) -> ProfileResult:
    """Compile (or find) the desktop bundle of ``model`` for ``target`` (llvm, or llvm-avx2 for
    the AVX2 kernels), profile it at each L in this process. A phone's runner calls
    :func:`profile_session` itself (``harness.profiling.phone``)."""
    from harness.devices.local import _cpu_name
    from harness.engines.tvm.compile import compile_model
    from harness.engines.tvm.runtime import TVMSession
    from harness.models.resolve import resolve_model
    from harness.quantization import get_preset

    from .ceilings import local_ceilings

    loaded = resolve_model(model, log=log)
    bundle = compile_model(loaded, get_preset(quantization), target, log=log)
    prompts = prompt_ids(bundle, lengths)
    longest = max(len(ids) for ids in prompts.values())
    session = TVMSession(
        bundle, max_seq_len=longest + 2 * steps + WARMUP_DECODE_STEPS + KV_HEADROOM, threads=threads
    )
    ceilings = local_ceilings(session.num_threads(), target, log)
    from harness.devices.load import other_load

    before = _counters()
    phases = profile_session(session, prompts, steps, ceilings, log, rounds)
    busy = other_load(before, _counters())
    notes = list(NOTES)
    if busy is not None and busy > BUSY:
        notes.insert(0, busy_warning(busy))
        log(f"WARNING: {busy_warning(busy)}")
    memory = []
    if with_memory:
        from .memory import memory_view

        for L, ids in prompts.items():
            log(f"memory view at L={L}: a fresh runner-like process")
            memory.append(memory_view(bundle, L, len(ids), steps))
    return ProfileResult(
        model=session.manifest.get("model", model),
        quantization=quantization,
        device="local",
        target=target,
        kernels=session.manifest.get("kernels", ""),
        machine=_cpu_name(),
        threads=session.num_threads(),
        decode_steps=steps,
        ceilings=ceilings,
        notes=notes,
        phases=phases,
        memory=memory,
    )
