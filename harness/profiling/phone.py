"""``slm-bench profile`` on a phone: the desktop's profile, run by the runner ``slm-bench run``
starts there (``harness.runner --serve`` in the TVM kit on a stock ARM64 phone, or the Python
the device offers), through its ``profile`` op.

The host does what the phone cannot: it compiles the bundle and the hook-cost calibration library
for the phone's target (the phone's TVM is the runtime only) and pushes both against their sha256
(the library into the bundle's folder). The runner tokenizes the prompts, calibrates the hook in
that library, profiles, and answers the phases with the time each group and kernel took. The rates
against ceilings are the host's to add, since the host knows the device:

- an emulated phone's times are the host's (an ARM64 one's code runs under qemu-user), so they
  give shares and the check, never speed: GB/s, GOP/s and the percentages stay empty;
- a real phone's GB/s and GOP/s are its own; %BW and %roof use the bandwidth its device profile
  gives (with that figure's source), and %peak stays empty: no phone's compute peak is known.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from harness.errors import UserError

from .collect import BUSY, NOTES, ROUNDS, WARMUP_DECODE_STEPS, busy_warning, with_rates
from .schema import EMULATED_RATES, OVERHEAD, Ceilings, PhaseProfile, ProfileResult

MEMORY_SKIPPED = (
    "memory view skipped: it runs on the desktop only for now (slm-bench profile --device local;"
    " under emulation a process's RSS would count qemu-user's own memory too)"
)


def profile_on_device(
    model: str,
    quantization: str,
    lengths: list[int],
    steps: int,
    device_spec: str,
    *,
    target: str | None = None,
    threads: int | None = None,
    cores: str | None = None,
    rounds: int = ROUNDS,
    adb_server: str | None = None,
    log: Callable[[str], None] = print,
    with_memory: bool = True,
) -> ProfileResult:
    """Profile ``model`` at each L on the phone ``device_spec`` (adb, adb:SERIAL, ...)."""
    from harness.benchmark import plan_device_placements, resolved_spec
    from harness.devices import open_device
    from harness.devices.lock import device_lock
    from harness.engines.tvm.compile import compile_model
    from harness.models.resolve import resolve_model
    from harness.prompts.suite import load_suite, select
    from harness.quantization import get_preset
    from harness.results.schema import RunSpec

    from .calibrate import calibration_library

    device = open_device(device_spec, target or "llvm", adb_server)
    where = f"{device.profile.name} {device.serial}"
    if device.python_runner() is None:
        raise UserError(
            f"{where} cannot run harness.runner (no arm64-v8a CPU for the TVM kit, no Python"
            " configured), and the profile needs it; set SLM_BENCH_DEVICE_PYTHON to a Python on"
            " the phone, or profile on an ARM64 phone"
        )
    spec = RunSpec(
        model=model,
        quantization=quantization,
        device=device_spec,
        target=target or "llvm",
        tasks=["summ"],
        lengths=lengths,
        docs=1,
        threads=[threads] if threads else None,
        cores=[cores] if cores else None,
    )
    spec = resolved_spec(spec, device)  # the target the runner loads: arm64-linux[-i8mm] in a kit
    placements, _ = plan_device_placements(device, spec, log)
    info = device.info()
    bundle = compile_model(
        resolve_model(model, log=log), get_preset(quantization), spec.target, log=log
    )
    calibration = calibration_library(spec.target, log)
    prompts = select(load_suite(), ["summ"], lengths, 1)
    with device_lock(device.lock_name):  # never interleaved with a run on the same phone
        reply, load = _run_profile(
            device, bundle, calibration, prompts, steps, rounds, placements[0], log
        )
    if "error" in reply:
        raise UserError(f"the runner on {where} could not profile: {reply['error']}")
    ceilings = device_ceilings(device.profile, info.emulated)
    phases = [PhaseProfile.model_validate(p) for p in reply["profile"]["phases"]]
    for phase in phases:
        rate(phase, ceilings, info.emulated)
    notes = ([EMULATED_RATES] if info.emulated else []) + list(NOTES)
    if load is not None and load > BUSY:
        notes.insert(0, busy_warning(load))
        log(f"WARNING: {busy_warning(load)}")
    if with_memory:
        notes.append(MEMORY_SKIPPED)
        log(MEMORY_SKIPPED)
    manifest = _manifest(bundle)
    return ProfileResult(
        model=manifest.get("model", model),
        quantization=quantization,
        device=f"adb:{device.serial}",
        target=spec.target,
        kernels=manifest.get("kernels", ""),
        emulated=bool(info.emulated),
        machine=machine_name(info),
        threads=int(reply["profile"]["threads"]),
        decode_steps=steps,
        ceilings=ceilings,
        notes=notes,
        phases=phases,
    )


def _run_profile(device, bundle, calibration, prompts, steps, rounds, placement, log):
    """Deploy, start the runner, send the one ``profile`` command; (its reply, the share of the
    CPUs other processes used meanwhile, or None where unknown)."""
    from harness.devices.load import other_load, parse_counters

    remote = device.deploy(bundle)
    # Into the bundle's folder, named by the library's content key (pushed once per change, by
    # sha256), and named to the runner relative to it: the runner's command line reaches the
    # phone's shell, whose paths an emulated x86_64 phone rewrites into its sandbox; a path
    # inside a JSON command is passed as it is.
    name = f"{calibration.parent.name}.so"
    device.stage({name: calibration}, remote)
    with tempfile.TemporaryDirectory(prefix="slm-bench-profile-") as tmp:
        prompts_file = Path(tmp) / "prompts.jsonl"
        prompts_file.write_text("".join(p.model_dump_json() + "\n" for p in prompts))
        runner = device.start_runner(
            remote,
            prompts_file,
            {},
            2 * steps + WARMUP_DECODE_STEPS,  # sizes the KV cache for a round of the profile
            "speed",
            Path(tmp) / "runner.log",
            placement,
        )
        try:
            pid = runner.identify()["pid"]
            log(
                f"profiling on {device.profile.name} {device.serial} ({placement.label()}):"
                f" {rounds} rounds of {steps} + {steps} decode steps at L="
                + ",".join(str(p.L) for p in prompts)
            )
            before = parse_counters(device.cpu_counters(pid))
            reply = runner.request(
                {
                    "op": "profile",
                    "prompt_ids": [p.id for p in prompts],
                    "decode_steps": steps,
                    "rounds": rounds,
                    "calibration": name,
                }
            )
            after = parse_counters(device.cpu_counters(pid))
        finally:
            runner.close()
    return reply, other_load(before, after)


def device_ceilings(profile, emulated: bool) -> Ceilings:
    """What is known of a phone's ceilings (its ``DeviceProfile``), each figure with where it
    comes from; nothing invented."""
    if emulated:
        return Ceilings(
            bandwidth_source=f"none: {EMULATED_RATES}", compute_source="none: an emulated phone"
        )
    ceilings = Ceilings(
        compute_source=(
            "not known for a phone (harness/profiling/peaks.py measures the desktop only): %peak"
            " stays empty"
        )
    )
    if profile.memory_bandwidth_gbps:
        ceilings.bandwidth_gbps = profile.memory_bandwidth_gbps
        ceilings.bandwidth_source = (
            f"the {profile.name} device profile: {profile.bandwidth_source or 'no source given'}"
        )
    else:
        ceilings.bandwidth_source = (
            f"not known: the {profile.name} device profile gives no memory bandwidth; %BW and"
            " %roof stay empty"
        )
    return ceilings


def rate(phase: PhaseProfile, ceilings: Ceilings, emulated: bool) -> None:
    """Each kernel's and group's rates against ``ceilings`` (the runner sent them without);
    an emulated phone's are all cleared. Shares stay as the runner measured them."""
    # the overhead group is a remainder of the wall time: a share, never a rate
    for stat in [*phase.kernels, *(g for g in phase.groups if g.group != OVERHEAD)]:
        if emulated:
            stat.gbps = stat.gops = None
            stat.bandwidth_pct = stat.compute_pct = stat.roofline_pct = None
        else:
            with_rates(stat, phase.wall_s, ceilings)


def machine_name(info) -> str:
    """``samsung SM-S921B (s5e9945, aarch64, emulated)``: what the table's header names."""
    name = " ".join(v for v in (info.brand, info.model) if v) or info.serial
    detail = ", ".join(v for v in (info.soc, info.machine) if v)
    if info.emulated:
        detail += ", emulated"
    return f"{name} ({detail})" if detail else name


def _manifest(bundle: Path) -> dict:
    import json

    return json.loads((Path(bundle) / "manifest.json").read_text())
