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
from .schema import OVERHEAD, Ceilings, GroupStat, KernelStat, PhaseProfile, ProfileResult, Rates

WARMUP_DECODE_STEPS = 2
KV_HEADROOM = 16
NULL_CALL = "vm.builtin.null_value"


class Recorder:
    """The VM's instrument hook: per symbol, its calls, nanoseconds, bytes and operations.

    Kept lean because its own cost lands in the profiled phase: the clock is read first thing in
    both hooks, and a symbol's cost is worked out from shapes once per forward pass (every layer
    calls a kernel with the same shapes).
    """

    def __init__(self) -> None:
        self.stats: dict[str, list[float]] = {}  # name -> [calls, ns, bytes, ops]
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
        entry = self.stats.setdefault(name, [0, 0, 0.0, 0.0])
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
class PassTimes:
    """One pass (prefill + N decode steps): wall nanoseconds per phase and, when profiled, what
    the hook recorded per phase."""

    wall_ns: dict[str, int] = field(default_factory=dict)
    stats: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)


def run_pass(session, ids, steps: int, recorder: Recorder | None = None) -> PassTimes:
    """Prefill ``ids`` then ``steps`` greedy decode steps, timed per phase like the runner does
    (prefill: the prefill call; decode: each decode call plus sampling its logits)."""
    out = PassTimes()
    clock = time.perf_counter_ns
    if recorder is not None:
        recorder.take()
        recorder.forward(len(ids))
    t0 = clock()
    logits = session.prefill(ids)
    out.wall_ns["prefill"] = clock() - t0
    if recorder is not None:
        out.stats["prefill"], out.calls["prefill"] = recorder.take()
    token = session.greedy(logits)
    wall = sampling = 0
    for _ in range(steps):
        if recorder is not None:
            recorder.forward(session.length + 1)
        t0 = clock()
        logits = session.decode(token)
        t1 = clock()
        token = session.greedy(logits)
        t2 = clock()
        wall += t2 - t0
        sampling += t2 - t1
    out.wall_ns["decode"] = wall
    if recorder is not None:
        stats, calls = recorder.take()
        vocab = session.vocab_size
        # greedy sampling is host work the VM never sees: the logits copied out, then argmax
        stats["sampling"] = [steps, sampling, steps * vocab * 4.0 * 2, steps * float(vocab)]
        out.stats["decode"], out.calls["decode"] = stats, calls
    return out


def profile_session(
    session, prompts: dict[int, list[int]], steps: int, ceilings: Ceilings, log=print
) -> list[PhaseProfile]:
    """Profile an open engine session (a TVMSession) at each L of ``prompts`` (L -> token ids)."""
    import numpy as np

    recorder = Recorder()
    phases = []
    for L, ids in prompts.items():
        ids = np.asarray(ids, dtype=np.int32)
        log(f"L={L}: {len(ids)} input tokens, {steps} decode steps")
        session.vm.set_instrument(None)
        run_pass(session, ids, WARMUP_DECODE_STEPS)
        plain = run_pass(session, ids, steps)
        session.vm.set_instrument(recorder)
        try:
            profiled = run_pass(session, ids, steps, recorder)
        finally:
            session.vm.set_instrument(None)
        for phase, n_steps in (("prefill", 1), ("decode", steps)):
            phases.append(
                summarize(
                    L,
                    phase,
                    len(ids),
                    n_steps,
                    plain.wall_ns[phase],
                    profiled.wall_ns[phase],
                    profiled.stats[phase],
                    profiled.calls[phase],
                    session.vocab_size,
                    ceilings,
                )
            )
    return phases


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
) -> PhaseProfile:
    """Kernels and groups of one phase. Groups add up to the plain run's wall time: every group
    is its kernels' measured time, and the overhead is what remains of the wall time.

    Each call's time includes the hook's own round trip (VM -> Python -> VM); the in-situ floor
    of that, the mean time of the VM's do-nothing ``vm.builtin.null_value`` calls in the same
    pass, is taken off every kernel call (sampling, timed in Python, excepted)."""
    wall = wall_ns / 1e9
    floor = hook_floor_ns(stats)
    kernels = []
    for name, (n, ns, nbytes, ops) in stats.items():
        group = costs.group_of(name, vocab_size)
        if group is None:
            continue  # VM bookkeeping: part of the overhead
        hooked = name != "sampling"
        kernel = KernelStat(
            name=name,
            group=group,
            calls=int(n),
            time_s=max(0.0, ns - (n * floor if hooked else 0)) / 1e9,
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
        hook_floor_ns=floor,
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
    log: Callable[[str], None] = print,
) -> ProfileResult:
    """Compile (or find) the desktop bundle of ``model``, profile it at each L; the function a
    runner calls on the desktop (a phone's runner would call :func:`profile_session`)."""
    from harness.devices.local import _cpu_name
    from harness.engines.tvm.compile import compile_model
    from harness.engines.tvm.runtime import TVMSession
    from harness.models.resolve import resolve_model
    from harness.quantization import get_preset

    from .ceilings import local_ceilings

    loaded = resolve_model(model, log=log)
    bundle = compile_model(loaded, get_preset(quantization), "llvm", log=log)
    prompts = prompt_ids(bundle, lengths)
    longest = max(len(ids) for ids in prompts.values())
    session = TVMSession(
        bundle, max_seq_len=longest + steps + WARMUP_DECODE_STEPS + KV_HEADROOM, threads=threads
    )
    ceilings = local_ceilings(session.num_threads(), "llvm", log)
    phases = profile_session(session, prompts, steps, ceilings, log)
    return ProfileResult(
        model=session.manifest.get("model", model),
        quantization=quantization,
        device="local",
        target="llvm",
        machine=_cpu_name(),
        threads=session.num_threads(),
        decode_steps=steps,
        ceilings=ceilings,
        notes=[
            "per-call times from the Relax VM's instrument hook (TVM 0.27 has no VM profiler)",
            "attention includes RoPE and the KV append: the paged KV cache runs them inside one"
            " VM builtin",
            "overhead = the plain run's phase wall time minus the profiled run's kernel times:"
            " VM instructions, allocations, host calls between kernels",
        ],
        phases=phases,
    )
