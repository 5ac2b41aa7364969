"""The one result schema. Every output (journal, CSV, Markdown, HTML, plots) is rendered from it.

Metric definitions (stated once, here and in docs/metrics.md). All durations come from
``time.perf_counter_ns`` stamps taken around the exact engine calls and kept in ``stamps_ns``:

- ``t_start``  request start: just before the prefill call (tokenization happens before it).
- ``t_prefill_end``  the prefill call returned (logits for the last prompt position exist).
- ``t_first``  the first output token has been sampled from those logits.
- ``t_last``   the last output token has been sampled.

- **prefill_s** = t_prefill_end - t_start
- **TTFT** (``ttft_s``) = t_first - t_start           (so prefill_s <= ttft_s)
- **decode_s** = t_last - t_first                     (first token -> last token)
- **runtime_s** = t_last - t_start
- **ITPS** = input_tokens / prefill_s                  (input tokens per second)
- **OTPS** = (output_tokens - 1) / decode_s            (the first token belongs to TTFT)

``input_tokens`` counts the prompt in the *model's* tokenizer after its chat template is
applied, which is what the engine really processes; ``L`` is the nominal cl100k context length.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 1

Task = Literal["summ", "qs", "qa"]
Status = Literal["ok", "failed", "skipped"]


class DeviceInfo(BaseModel):
    """What the device is. Filled by a device backend (local desktop, adb phone)."""

    model_config = ConfigDict(extra="allow")

    serial: str = "local"
    model: str = ""
    brand: str = ""
    soc: str = ""
    os: str = ""
    ram_bytes: int | None = None
    profile: str = ""
    machine: str = ""  # the CPU that executed the runner (uname -m there): x86_64, aarch64
    # an emulated phone: its timings are the emulator's, never a phone's speed
    emulated: bool = False


class DeviceState(BaseModel):
    """Battery and thermal state sampled before/after a request, where the device has them."""

    model_config = ConfigDict(extra="allow")

    battery_level: float | None = None
    battery_temp_c: float | None = None
    charging: bool | None = None
    cpu_temp_c: float | None = None  # the hottest thermal zone
    thermal_zones_c: list[float] | None = None
    mem_available_bytes: int | None = None


class Stamps(BaseModel):
    """Raw perf_counter_ns stamps (see module docstring)."""

    t_start: int
    t_prefill_end: int
    t_first: int
    t_last: int


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Record(BaseModel):
    """One measured request (or one skipped/failed cell)."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    schema_version: int = SCHEMA_VERSION
    run_id: str = ""
    model: str
    params: int | None = None
    weights: Literal["real", "dummy"] = "real"
    quantization: str  # the preset asked for (what a resumed run matches on)
    format: str = ""  # what really ran: the compiled preset, or the engine's own (GGUF Q4_0)
    activations: str = ""  # the linear layers' inputs: float32, or int8 (integer dot products)
    # the linear layers' kernels, the bundle manifest's "kernels": float, gpu, or the integer ISA
    # (avx512-vnni, avx-vnni, avx2, neon-dot: sdot, neon-i8mm: smmla); "" where the engine's own
    kernels: str = ""
    engine: str
    engine_version: str = ""
    target: str = ""
    device: DeviceInfo = Field(default_factory=DeviceInfo)
    prompt_set: str = ""
    prompt_id: str
    task: Task
    L: int
    input_tokens: int | None = None
    output_tokens: int | None = None
    ttft_s: float | None = None
    prefill_s: float | None = None
    decode_s: float | None = None
    itps: float | None = None
    otps: float | None = None
    runtime_s: float | None = None
    peak_mem_bytes: int | None = None
    repeat: int = 0
    warmup: bool = False
    status: Status = "ok"
    error: str | None = None
    output_text: str | None = None
    # the generated token ids (same text on two devices = same ids)
    output_ids: list[int] | None = None
    device_state_before: DeviceState | None = None
    device_state_after: DeviceState | None = None
    stamps_ns: Stamps | None = None
    # which runner measured it (harness.runners): python, llama-bench, tvm-rpc, ...
    runner: str = "python"
    # TTFT derived (prefill + one decode step), not timed, by a runner that does not print it
    ttft_estimated: bool = False
    # the run's memory estimate exceeded the device's budget (harness.memory); it ran anyway
    over_budget: bool = False
    # Where it ran (harness.devices.placement): what was asked, and what the running runner
    # reported back. ``threads`` and ``cpu_mask`` are read by other tools: keep these names.
    threads: int | None = None  # worker threads that ran (TVM's pool size, llama.cpp's n_threads)
    # what started the engine's parallel loops: "fork-join" (the TVM model library's own,
    # harness/engines/tvm/fork_join.cc) or "tvm" (TVM's thread pool); "" for other engines
    launcher: str = ""
    # cores the runner was allowed, hex as taskset takes it (no 0x): "380"
    cpu_mask: str | None = None
    cpu_list: str | None = None  # the same cores as a kernel list: "7-9"
    cpu_clusters: list[str] | None = None  # the clusters those cores belong to, fastest first
    # Threads of the runner's /proc/PID/status (its pool plus its own)
    os_threads: int | None = None
    threads_asked: int | None = None  # --threads; None: one per core of the set
    cores_asked: str | None = None  # --cores as given; None: the device's default set
    cpu_mask_asked: str | None = None  # the mask that set resolved to on this device
    placement_default: bool = False  # this setting is the device's default (the sweep's reference)
    oversubscribed: bool = False  # more threads than cores in the set
    placement_mismatch: str | None = None  # what ran differs from what was asked: how
    # Noise (harness.devices.load): the share of all cores' time other processes used while the
    # request ran (0..1), and each cluster's scaling_cur_freq (kHz) at its end.
    cpu_load_other: float | None = None
    cpu_freq_khz: dict[str, int] | None = None
    load_wait_s: float | None = None  # waited for --max-load before the request
    # a soak's request: when it started, seconds into the soak (harness.soak)
    soak_elapsed_s: float | None = None
    # Energy (phones with a fuel gauge): gross, and above the idle power sampled before the run.
    energy_j: float | None = None
    energy_j_per_token: float | None = None
    idle_power_w: float | None = None
    energy_j_above_idle: float | None = None
    energy_j_per_token_above_idle: float | None = None
    code_version: str = ""
    timestamp: str = Field(default_factory=now_rfc3339)

    @model_validator(mode="after")
    def _ok_records_carry_metrics(self) -> Record:
        if self.status == "ok":
            missing = [
                name
                for name in (
                    "input_tokens",
                    "output_tokens",
                    "prefill_s",
                    "ttft_s",
                    "runtime_s",
                    "itps",
                )
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"status=ok record lacks {', '.join(missing)}")
        return self

    @property
    def key(self) -> tuple:
        """Identity of a measurement within a run: what a resumed run checks for."""
        return (
            self.model,
            self.quantization,
            self.device.serial,
            self.prompt_id,
            self.repeat,
            self.warmup,
            self.threads_asked,
            self.cores_asked,
        )

    @property
    def pool_key(self) -> tuple:
        """``key`` without the device: a cell aimed at a pool of like phones counts a measurement
        whichever member made it, so a resumed cell measures only what is missing, on any."""
        model, quantization, _serial, *rest = self.key
        return (model, quantization, *rest)


def metrics_from_stamps(
    stamps: Stamps, input_tokens: int, output_tokens: int
) -> dict[str, float | None]:
    """Apply the definitions in the module docstring to raw stamps."""
    ns = 1e-9
    prefill_s = (stamps.t_prefill_end - stamps.t_start) * ns
    ttft_s = (stamps.t_first - stamps.t_start) * ns
    decode_s = (stamps.t_last - stamps.t_first) * ns
    runtime_s = (stamps.t_last - stamps.t_start) * ns
    return {
        "prefill_s": prefill_s,
        "ttft_s": ttft_s,
        "decode_s": decode_s,
        "runtime_s": runtime_s,
        "itps": input_tokens / prefill_s if prefill_s > 0 else None,
        "otps": (output_tokens - 1) / decode_s if output_tokens > 1 and decode_s > 0 else None,
    }


class RunSpec(BaseModel):
    """What a run was asked to measure; stored in ``run.json`` and compared on resume."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: str
    quantization: str
    engine: str = "tvm"
    target: str = "llvm"
    device: str = "local"
    tasks: list[Task] = ["summ", "qs", "qa"]
    lengths: list[int] = [200, 400, 600, 800, 1000]
    repeats: int = 5
    warmup: int = 1
    max_new_tokens: int = 128
    cooldown_s: float = 0.0
    # wait before each measured request until the device is this cool
    max_temp_c: float | None = None
    max_wait_s: float = 600.0  # ... but never longer than this (the wait is recorded)
    # wait before each measured request until other processes use at most this share of the CPU
    max_load: float | None = None
    # seconds of idle fuel-gauge sampling before measuring (devices with a gauge), for energy
    # above idle
    idle_s: float = 10.0
    docs: int | None = None  # how many corpus documents; None = all of them
    runner: str = "python"  # harness.runners name; "python" is harness.runner on the device
    # A sweep (harness.devices.placement): each thread count x core set is measured in turn;
    # None is the device's default set with one thread per core.
    threads: list[int] | None = None
    cores: list[str] | None = None


class RunInfo(BaseModel):
    """``run.json``: the spec plus everything needed to interpret the records."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    schema_version: int = SCHEMA_VERSION
    run_id: str
    spec: RunSpec
    device: DeviceInfo = Field(default_factory=DeviceInfo)
    prompt_set: str = ""
    prompt_set_hash: str = ""
    versions: dict[str, str] = Field(default_factory=dict)
    code_version: str = ""
    bundle: dict = Field(default_factory=dict)
    # a native runner's files and their sha256 (provenance)
    runner_binary: dict = Field(default_factory=dict)
    # Memory planning (harness.memory): the estimate, the device's budget and total RAM it was
    # judged against, and whether it ran over the budget (a warning, not a skip).
    memory_estimate_bytes: int | None = None
    memory_budget_bytes: int | None = None
    memory_total_bytes: int | None = None
    over_budget: bool = False
    created: str = Field(default_factory=now_rfc3339)


class QualityRecord(BaseModel):
    """Quality of one (model, quantization, task) on a DocAssist split, from ``slm-bench eval``.

    Journaled as ``quality.jsonl`` in the run (or eval) folder, beside ``quality-examples.jsonl``
    with every output; a report joins it with the speed Records by (model, quantization).
    Every score is on a 0..1 scale (definitions in ``harness.eval.metrics``); ``avg_score`` is
    the mean of BLEU, ROUGE-1/2/L, STS and (when judged) GEval, our reading of the SlimLM
    paper's averaged quality score (arXiv 2411.09944, Table 5).
    """

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    schema_version: int = SCHEMA_VERSION
    kind: Literal["quality"] = "quality"
    run_id: str = ""
    model: str
    quantization: str
    engine: str = "tvm"
    weights: Literal["real", "dummy"] = "real"
    task: Task
    dataset: str  # the DocAssist folder's name
    dataset_hash: str  # sha256 of the split file evaluated
    split: str = "test"
    n: int  # examples scored
    failed: int = 0  # of those, prompts too long for the model's window (scored as empty answers)
    bleu: float | None = None
    rouge1: float | None = None
    rouge2: float | None = None
    rougeL: float | None = None
    sts: float | None = None
    self_bleu: float | None = None  # diversity: lower is more diverse
    intent_accuracy: float | None = None
    geval: float | None = None  # only when a judge endpoint was configured
    avg_score: float | None = None
    mean_seconds: float | None = None  # per example, generation only
    code_version: str = ""
    timestamp: str = Field(default_factory=now_rfc3339)
