"""A profile as a printed table, Markdown, JSON and a chart (``slm-bench profile``'s outputs)."""

from __future__ import annotations

from pathlib import Path

from .schema import EMULATED_RATES, OVERHEAD, MemoryView, PhaseProfile, ProfileResult

LABELS = {
    "linear": "linear layers",
    "attention": "attention (+RoPE, KV append)",
    "norm": "norms",
    "rope": "RoPE",
    "lm_head": "LM head + sampling",
    "embedding": "embedding",
    "elementwise": "elementwise",
    "other": "other",
    OVERHEAD: "VM + host overhead",
}
TOP_KERNELS = 8
CHECK_TOLERANCE = 0.05  # the bound on kernels + overhead against the measured time
COLUMNS = ("group", "calls", "ms", "share", "GB/s", "%BW", "GOP/s", "%peak", "%roof")


def _num(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def _row(label: str, stat) -> list[str]:
    return [
        label,
        str(stat.calls),
        f"{stat.time_s * 1e3:.3f}",
        f"{stat.share:.1%}",
        _num(stat.gbps, ".2f"),
        _num(stat.bandwidth_pct, ".1f"),
        _num(stat.gops, ".2f"),
        _num(stat.compute_pct, ".1f"),
        _num(stat.roofline_pct, ".1f"),
    ]


def phase_heading(p: PhaseProfile) -> str:
    per = f", {p.wall_s / p.steps * 1e3:.2f} ms a step" if p.steps > 1 else ""
    return (
        f"L={p.L} {p.phase}: {p.input_tokens} input tokens, {p.steps} step(s); measured"
        f" {p.wall_s * 1e3:.2f} ms{per}; profiled run {p.profiled_wall_s * 1e3:.2f} ms"
        f" ({p.profiler_cost:+.1%}: the profiler's own cost, {p.calls} hooked VM calls,"
        f" {p.hook_floor_ns:.0f} ns each taken off the kernels)"
    )


def phase_rows(p: PhaseProfile) -> tuple[list[list[str]], list[str], list[list[str]]]:
    """(group rows, the total row, top kernel rows) of one phase."""
    groups = [_row(LABELS.get(g.group, g.group), g) for g in p.groups]
    summed = sum(g.time_s for g in p.groups)
    total = [
        "total",
        str(sum(g.calls for g in p.groups)),
        f"{summed * 1e3:.3f}",
        f"{summed / p.wall_s:.1%}" if p.wall_s else "",
        *[""] * 5,
    ]
    kernels = [_row(f"  {k.name} [{k.group}]", k) for k in p.kernels[:TOP_KERNELS]]
    return groups, total, kernels


def check_line(p: PhaseProfile) -> str:
    """The honest check: kernel times plus the overhead the VM's calibrated dispatch cost
    predicts, against the measured phase."""
    verdict = "ok" if abs(p.explained - 1) <= CHECK_TOLERANCE else "OFF by more than 5%"
    return (
        f"check: kernels {p.kernel_s * 1e3:.2f} ms + VM dispatch {p.expected_overhead_s * 1e3:.2f}"
        f" ms ({p.calls} calls) = {p.explained:.1%} of the measured {p.wall_s * 1e3:.2f} ms"
        f" ({verdict}); remainder overhead {p.overhead_s * 1e3:.2f} ms"
    )


def gap_line(p: PhaseProfile, bandwidth_gbps: float | None) -> str | None:
    """Decode against its bandwidth ceiling: a step could take no less than the bytes it moves
    over the read bandwidth; each group's time beyond its own bytes' share is what stands
    between the two (the overhead moves no bytes, so all of its time counts)."""
    if p.phase != "decode" or not bandwidth_gbps or not p.steps:
        return None
    rate = bandwidth_gbps * 1e9
    moved = sum(g.bytes for g in p.groups)
    ideal_ms = moved / rate / p.steps * 1e3
    step_ms = p.wall_s / p.steps * 1e3
    excess = sorted(
        ((g.time_s - g.bytes / rate) / p.steps * 1e3, LABELS.get(g.group, g.group))
        for g in p.groups
    )[::-1]
    parts = ", ".join(f"{name} {ms:+.2f}" for ms, name in excess if abs(ms) >= 0.005)
    return (
        f"gap to the bandwidth ceiling: {step_ms:.2f} ms a step against {ideal_ms:.2f} ms for its"
        f" {moved / p.steps / 1e6:.1f} MB ({ideal_ms / step_ms:.0%} of the ceiling); ms a step"
        f" beyond each group's own bytes: {parts}"
    )


def aligned(rows: list[list[str]]) -> list[str]:
    """Rows as indented text columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  "
        + r[0].ljust(widths[0])
        + "".join(f"  {c.rjust(w)}" for c, w in zip(r[1:], widths[1:], strict=True))
        for r in rows
    ]


def text_table(result: ProfileResult) -> str:
    lines = [header(result), ""]
    for p in result.phases:
        groups, total, kernels = phase_rows(p)
        rows = [list(COLUMNS), *groups, total, ["top kernels", *[""] * 8], *kernels]
        lines.append(phase_heading(p))
        lines += aligned(rows)
        lines += ["  " + check_line(p)]
        gap = gap_line(p, result.ceilings.bandwidth_gbps)
        lines += [f"  {gap}"] if gap else []
        lines.append("")
    lines += memory_text(result.memory)
    return "\n".join(lines)


def header(result: ProfileResult) -> str:
    c = result.ceilings
    peak = (
        f"fp32 {c.fp32_gflops} GFLOP/s, int8 {c.int8_gops} GOP/s ({c.compute_source})"
        if c.fp32_gflops
        else c.compute_source
    )
    bandwidth = (
        f"bandwidth {c.bandwidth_gbps} GB/s ({c.bandwidth_source})"
        if c.bandwidth_gbps
        else f"bandwidth {c.bandwidth_source}"
    )
    kernels = f", {result.kernels} kernels" if result.kernels else ""
    first = (
        f"{result.model} {result.quantization} on {result.device} ({result.machine},"
        f" {result.threads} thread{'s' if result.threads != 1 else ''}; target {result.target}"
        f"{kernels})"
    )
    if result.emulated:  # no ceilings and no rates: say why once, not a legend of empty columns
        return f"{first}\nrates: none: {EMULATED_RATES}"
    return (
        f"{first}\nceilings: {bandwidth}; compute {peak}\n"
        "%BW: achieved GB/s of the bandwidth (over 100: the data came from cache); %peak:"
        " achieved GOP/s of the compute peak (int8 for q4a8 kernels, else fp32); %roof: of"
        " min(peak, bandwidth x ops/byte)"
    )


MEMORY_COLUMNS = ("stage", "RSS MiB", "+MiB", "expected MiB")


def memory_rows(view: MemoryView) -> list[list[str]]:
    mib = lambda n: f"{n / 2**20:.1f}"  # noqa: E731
    rows = [
        [
            s.stage,
            mib(s.rss_bytes),
            mib(s.grew_bytes),
            mib(s.expected_bytes) if s.expected_bytes else "",
        ]
        for s in view.stages
    ]
    rows.append(["peak (VmHWM: a record's peak_mem_bytes)", mib(view.peak_bytes), "", ""])
    return rows


def memory_heading(view: MemoryView) -> str:
    return (
        f"Memory at L={view.L} ({view.input_tokens} tokens): a fresh process doing what the runner"
        " does (TVM's runtime library"
        f" only); weights {view.weight_bytes / 2**20:.1f} MiB, KV cache"
        f" {view.kv_bytes / 2**20:.1f} MiB as allocated (its pages count once written)"
    )


def memory_text(views: list[MemoryView]) -> list[str]:
    lines = []
    for view in views:
        lines.append(memory_heading(view))
        lines += aligned([list(MEMORY_COLUMNS), *memory_rows(view)])
        lines.append("")
    return lines


def markdown(result: ProfileResult) -> str:
    out = [f"# Profile: {result.model} {result.quantization}", "", *header(result).split("\n")]
    out = [out[0], "", *(f"{line}  " for line in out[2:]), ""]
    for p in result.phases:
        groups, total, kernels = phase_rows(p)
        out += [f"## {phase_heading(p)}", "", "| " + " | ".join(COLUMNS) + " |"]
        out.append("|" + "---|" * len(COLUMNS))
        for r in [*groups, [f"**{total[0]}**", *total[1:]]]:
            out.append("| " + " | ".join(r) + " |")
        gap = gap_line(p, result.ceilings.bandwidth_gbps)
        out += ["", check_line(p), *(["", gap] if gap else [])]
        out += ["", "Top kernels:", "", "| " + " | ".join(COLUMNS) + " |"]
        out.append("|" + "---|" * len(COLUMNS))
        out += ["| " + " | ".join(c.strip() for c in r) + " |" for r in kernels]
        out.append("")
    for view in result.memory:
        out += [f"## {memory_heading(view)}", "", "| " + " | ".join(MEMORY_COLUMNS) + " |"]
        out.append("|" + "---|" * len(MEMORY_COLUMNS))
        out += ["| " + " | ".join(r) + " |" for r in memory_rows(view)]
        out.append("")
    out += ["Notes:", "", *(f"- {n}" for n in result.notes), ""]
    return "\n".join(out)


def chart(result: ProfileResult, path: Path) -> Path:
    """Stacked bars of group time per L: prefill (ms) and decode (ms a token) side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, phase in zip(axes, ("prefill", "decode"), strict=True):
        phases = [p for p in result.phases if p.phase == phase]
        labels = [f"L={p.L}" for p in phases]
        bottoms = [0.0] * len(phases)
        groups = list(dict.fromkeys(g.group for p in phases for g in p.groups))
        for group in groups:
            heights = [
                sum(g.time_s for g in p.groups if g.group == group) / p.steps * 1e3 for p in phases
            ]
            ax.bar(labels, heights, bottom=bottoms, label=LABELS.get(group, group))
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
        ax.set_title(f"{phase}" + (" (per token)" if phase == "decode" else ""))
        ax.set_ylabel("ms")
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(f"{result.model} {result.quantization}: where the time goes ({result.machine})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_outputs(result: ProfileResult, out_dir: Path) -> list[Path]:
    """profile.json, profile.md and profile.png into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "profile.json", out_dir / "profile.md"]
    written[0].write_text(result.model_dump_json(indent=1))
    written[1].write_text(markdown(result))
    written.append(chart(result, out_dir / "profile.png"))
    return written
