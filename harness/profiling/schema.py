"""What a profile records (profile.json). Engine- and device-neutral: the desktop and a phone's
runner fill the same records."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

Phase = Literal["prefill", "decode"]

# Group names, in display order. "overhead" is never measured per call: it is the phase's
# measured wall time minus every kernel's time (the VM's own instructions, allocations, the
# host-side calls around the VM).
GROUPS = ("linear", "attention", "norm", "rope", "lm_head", "embedding", "elementwise", "other")
OVERHEAD = "overhead"
# Why an emulated phone's profile has no rates (ProfileResult.emulated): its header, its note and
# its ceilings' source all say this.
EMULATED_RATES = (
    "an emulated phone's times are this host's, not a phone's (an ARM64 one runs its code under"
    " qemu-user): the groups' shares of each phase and the check hold, but GB/s, GOP/s, %BW,"
    " %peak and %roof would describe this host, so they are left empty"
)


class Rates(BaseModel):
    """Time, work and what the work achieved against the machine's ceilings."""

    calls: int
    time_s: float
    share: float = 0.0  # of the phase's unprofiled wall time
    bytes: float = 0.0  # bytes read and written, from the calls' argument shapes
    ops: float = 0.0  # arithmetic operations (a multiply-add counts 2)
    int8: bool = False  # integer-dot work: compared with the int8 peak, not the fp32 one
    gbps: float | None = None
    gops: float | None = None
    bandwidth_pct: float | None = None  # of the machine's measured memory bandwidth
    compute_pct: float | None = None  # of the machine's measured compute peak for this kind
    roofline_pct: float | None = None  # of min(compute peak, bandwidth x intensity)


class KernelStat(Rates):
    """One kernel (by symbol) summed over the phase: every call, every decode step."""

    name: str
    group: str


class GroupStat(Rates):
    group: str


class PhaseProfile(BaseModel):
    L: int
    phase: Phase
    input_tokens: int
    steps: int  # 1 for prefill, the decode steps for decode
    wall_s: float  # the same phase run without the profiler: what the table adds up to
    profiled_wall_s: float  # the profiled run's own wall time
    kernel_s: float  # every kernel call's time in the profiled run (VM builtins excluded)
    overhead_s: float  # wall_s - kernel_s: the VM and host work between kernels
    calls: int  # VM call instructions the instrument saw (kernels and builtins)
    hook_floor_ns: float = 0.0  # the hook's charge for a call without arguments
    hook_per_arg_ns: float = 0.0  # and per argument; both are taken off every kernel call
    # the VM's dispatch cost per call instruction (calibrated) times the calls: what the
    # overhead should be, measured apart from the remainder overhead_s
    expected_overhead_s: float = 0.0
    kernels: list[KernelStat]
    groups: list[GroupStat]  # GROUPS that ran, then OVERHEAD; their time_s sum to wall_s

    @property
    def profiler_cost(self) -> float:
        """How much slower the profiled run was than the plain one (0.1 = 10%)."""
        return self.profiled_wall_s / self.wall_s - 1 if self.wall_s else 0.0

    @property
    def explained(self) -> float:
        """Kernel times plus the expected overhead, as a share of the measured phase: 1.0 when
        the per-call times account for the plain run exactly."""
        return (self.kernel_s + self.expected_overhead_s) / self.wall_s if self.wall_s else 0.0


class Ceilings(BaseModel):
    """The machine's measured ceilings the achieved rates are compared with."""

    bandwidth_gbps: float | None = None
    bandwidth_source: str = ""
    fp32_gflops: float | None = None
    int8_gops: float | None = None
    compute_source: str = ""


class MemoryStage(BaseModel):
    """Resident memory after one stage of a runner's start and first request."""

    stage: str
    rss_bytes: int  # VmRSS after the stage
    grew_bytes: int  # what the stage added
    expected_bytes: int | None = None  # what it should take, where the bundle says


class MemoryView(BaseModel):
    """Where a runner's memory goes at one L (``harness.profiling.memory``)."""

    L: int
    input_tokens: int  # the prompt at L with the chat template, as prefilled
    stages: list[MemoryStage]
    peak_bytes: int  # VmHWM: what a record's peak_mem_bytes says
    weight_bytes: int
    kv_bytes: int


class ProfileResult(BaseModel):
    model: str
    quantization: str
    device: str  # local, or adb:SERIAL
    target: str  # the bundle's compile target (llvm, arm64-linux, arm64-linux-i8mm, ...)
    kernels: str = ""  # the bundle's matmul kernels (float, avx2, neon-dot, neon-i8mm, ...)
    emulated: bool = False  # an emulated phone: its times are the host's, so no rates are given
    machine: str
    threads: int
    decode_steps: int
    ceilings: Ceilings
    notes: list[str] = []
    phases: list[PhaseProfile]
    memory: list[MemoryView] = []
