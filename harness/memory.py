"""Memory planning: how much a run needs, what the device offers, and what to do about the gap.

Below both the grid (``harness.grid``, many cells planned before anything runs) and the single
run (``harness.benchmark``, planned again with the prompts' real token counts), so both judge a
cell the same way. Phones do not refuse an app that asks for more than a comfortable share of
RAM: Android trims caches and kills background apps first, and only then does the low-memory
killer (lmkd) end the app itself. So the budget is a planning estimate, not a limit:

- estimate <= budget: run.
- budget < estimate <= total RAM: run, flagged ``over_budget`` (dry run, journal and report say
  so); skipped only under strict planning (``--strict-memory``).
- estimate > total RAM: skipped; it cannot fit whatever the phone frees.

A real out-of-memory (the runner killed by signal 9, lmkd / the OOM killer in its log, a
MemoryError) is classified by :func:`out_of_memory` and recorded as a failed request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.errors import UserError

# Python + TVM runtime + activations of a 135M model at L=1000 (measured: ~380 MB peak RSS at
# 76 MB of weights)
RUNTIME_OVERHEAD_BYTES = 320 << 20
ACTIVATION_BUFFERS = 4  # live fp32 prefill buffers of the widest layer, with the VM's memory pool
# of the RAM available on the desktop now: the rest stays for the OS and the harness
LOCAL_BUDGET_FRACTION = 0.8
GB = 1e9


def kv_cache_bytes(cfg, preset, tokens: int) -> int:
    import numpy as np

    per_token = (
        2
        * cfg.num_layers
        * cfg.num_kv_heads
        * cfg.head_dim
        * np.dtype(preset.kv_cache_dtype).itemsize
    )
    return per_token * tokens


def estimate_memory(cfg, preset, max_tokens: int) -> int:
    """Weights as packed + the KV cache for ``max_tokens`` + prefill activations + a runtime
    overhead. A planning estimate: reports show it next to the measured peak."""
    from harness.models.catalog import packed_bytes

    width = (
        2 * cfg.intermediate_size
        + 4 * cfg.hidden_size
        + (cfg.num_heads + 2 * cfg.num_kv_heads) * cfg.head_dim
    )
    activations = ACTIVATION_BUFFERS * 4 * width * max_tokens
    return (
        packed_bytes(cfg, preset)
        + kv_cache_bytes(cfg, preset, max_tokens)
        + activations
        + RUNTIME_OVERHEAD_BYTES
    )


# -- what the device offers ----------------------------------------------------------------


@dataclass(frozen=True)
class DeviceMemory:
    """A device's planning budget and its total RAM (None: unknown)."""

    budget: int | None
    total: int | None


def local_memory() -> DeviceMemory:
    """The desktop: a share of the RAM available now (other programs use the rest), of its total."""
    import psutil

    vm = psutil.virtual_memory()
    return DeviceMemory(int(vm.available * LOCAL_BUDGET_FRACTION), int(vm.total))


def memory_of(device, info=None) -> DeviceMemory:
    """An opened device: its profile's budget (the desktop's is read now), and the RAM the device
    reports (MemTotal of /proc/meminfo on a phone, psutil on the desktop), else the profile's."""
    profile = device.profile
    if profile.kind == "local" and profile.memory_budget_bytes is None:
        here = local_memory()
        return DeviceMemory(
            here.budget, (info.ram_bytes if info is not None else None) or here.total
        )
    info = info if info is not None else device.info()
    return DeviceMemory(profile.memory_budget_bytes, info.ram_bytes or profile.memory_total_bytes)


def device_memory(
    device: str, adb_server: str | None = None, fallback_profile: str | None = None
) -> DeviceMemory:
    """Budget and RAM of a device by name, for planning. A phone that cannot be reached is
    planned with ``fallback_profile`` (a grid's ``profile``); without one both are unknown."""
    from harness.devices.lab import is_pool, pool_profile
    from harness.devices.profiles import get_profile

    if device == "local":
        return local_memory()
    if is_pool(device):  # planned for the pool's profile: its members are alike
        profile = get_profile(pool_profile(device))
        return DeviceMemory(profile.memory_budget_bytes, profile.memory_total_bytes)
    try:
        from harness.devices import open_device

        return memory_of(open_device(device, "llvm", adb_server))
    except UserError:
        if not fallback_profile:
            return DeviceMemory(None, None)
        profile = get_profile(fallback_profile)
        return DeviceMemory(profile.memory_budget_bytes, profile.memory_total_bytes)


# -- judging a cell --------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryPlan:
    estimate: int | None
    budget: int | None
    total_ram: int | None
    over_budget: bool = False
    skip_reason: str | None = None

    def warning(self) -> str | None:
        """One line for a cell that runs over its budget (None otherwise)."""
        if not self.over_budget or self.skip_reason:
            return None
        ram = f" of {self.total_ram / GB:.2f} GB RAM" if self.total_ram else " (total RAM unknown)"
        return (
            f"over budget: needs ~{self.estimate / GB:.2f} GB, the device budget is"
            f" {self.budget / GB:.2f} GB{ram}; running anyway (Android frees memory for it; an"
            " out-of-memory kill is recorded as failed)"
        )


def plan_memory(
    estimate: int | None,
    budget: int | None,
    total_ram: int | None,
    strict: bool = False,
    what: str = "",
) -> MemoryPlan:
    """Judge one cell. ``what`` says what the estimate counts (e.g. "weights + KV cache at L=1000
    + runtime"), for the skip reason."""
    if estimate is None:
        return MemoryPlan(estimate, budget, total_ram)
    over = budget is not None and estimate > budget
    needs = f"needs ~{estimate / GB:.2f} GB" + (f" ({what})" if what else "")
    reason = None
    if total_ram is not None and estimate > total_ram:
        reason = f"{needs}, more than the device's {total_ram / GB:.2f} GB of RAM"
    elif strict and over:
        reason = (
            f"{needs}, the device budget is {budget / GB:.2f} GB (--strict-memory skips cells over"
            " budget)"
        )
    return MemoryPlan(estimate, budget, total_ram, over, reason)


# -- a real out-of-memory ------------------------------------------------------------------

SIGKILL_CODES = (-9, 137)  # Popen's -SIGKILL; a shell's 128 + 9 (adb shell v2, sh -c)
OOM_TEXT = re.compile(
    r"lowmemorykiller|\blmkd\b|out of memory|\boom[-_ ]?(?:kill(?:er|ed)?|reaper)?\b"
    r"|memoryerror|std::bad_alloc|cannot allocate memory|\benomem\b",
    re.IGNORECASE,
)


def out_of_memory(returncode: int | None = None, text: str | None = None) -> str | None:
    """Why a runner's end looks like an out-of-memory, or None. Evidence: exit by signal 9 (how
    lmkd and the Linux OOM killer end a process), or a log / error line that names it."""
    found = OOM_TEXT.search(text or "")
    if found:
        line = next(
            (ln.strip() for ln in (text or "").splitlines() if OOM_TEXT.search(ln)), found.group(0)
        )
        return line[:160]
    if returncode in SIGKILL_CODES:
        return "the runner was killed by signal 9 (SIGKILL: lmkd or the OOM killer)"
    return None


def oom_message(evidence: str, estimate: int | None = None, total_ram: int | None = None) -> str:
    """The error of a request that ran out of memory: the evidence, the plan, the fix."""
    plan = ""
    if estimate:
        plan = f"; estimate ~{estimate / GB:.2f} GB" + (
            f" vs {total_ram / GB:.2f} GB RAM" if total_ram else ""
        )
    return f"out of memory: {evidence}{plan}; try a smaller model or quantization, or a shorter L"
