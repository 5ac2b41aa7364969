"""Benchmark one model on one device: the spine of ``slm-bench run``.

prompt suite -> bundle (compiled or cached) -> runner on the device -> one Record per request,
journaled as it arrives -> report and plots. Rerunning the same spec into the same directory
measures only what is missing.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.devices.lab import is_pool
from harness.errors import UserError
from harness.results.schema import Record, RunInfo, RunSpec


@dataclass
class RunOutcome:
    out_dir: Path
    measured: int = 0
    skipped_done: int = 0
    failed: int = 0
    report_files: list[Path] = field(default_factory=list)
    runner_summary: dict | None = None


# What run.json keeps of the bundle's manifest (TVM bundles also have tvm_version and engine_hash).
BUNDLE_INFO_KEYS = (
    "model",
    "architecture",
    "params",
    "weights",
    "quantization",
    "quantization_detail",
    "format",
    "activations",
    "kernels",
    "kernels_detail",
    "target",
    "weight_bytes",
    "engine",
    "engine_version",
    "tvm_version",
    "engine_hash",
)


def run_id_for(spec: RunSpec) -> str:
    """Deterministic: the same spec maps to the same default directory, so a rerun resumes. The
    hash covers what the spec asks beyond the defaults, so a field added to RunSpec later (with a
    default) leaves every id as it was."""
    digest = hashlib.sha256(spec.model_dump_json(exclude_defaults=True).encode()).hexdigest()[:8]
    model = "".join(
        c if c.isalnum() or c in "-_." else "_" for c in Path(spec.model).name or spec.model
    )
    # the default engine adds nothing to the name
    engine = "" if spec.engine == "tvm" else f"-{spec.engine}"
    device = spec.device.replace(":", "_")
    return f"{model}-{spec.quantization}{engine}-{spec.target}-{device}-{digest}"


def plan_requests(
    prompt_ids: list[str], spec: RunSpec, done: set[tuple], key_of
) -> list[tuple[str, int, bool]]:
    """(prompt_id, repeat, warmup) still to run. A prompt whose repeats are all done needs no
    warm-up."""
    plan = []
    for pid in prompt_ids:
        todo = [r for r in range(spec.repeats) if key_of(pid, r, False) not in done]
        if not todo:
            continue
        plan += [(pid, w, True) for w in range(spec.warmup)]
        plan += [(pid, r, False) for r in todo]
    return plan


def check_context(prompts, bundle: Path, spec: RunSpec, context_window: int) -> dict[str, int]:
    """Input length of each prompt in the model's tokens; refuse L that cannot fit the window."""
    from harness.models.tokenizer import tokenizer_for_bundle

    tok = tokenizer_for_bundle(bundle, 1 << 30)
    lengths = {p.id: len(tok.encode_chat(p.text)) for p in prompts}
    too_long = sorted(
        {p.L for p in prompts if lengths[p.id] + spec.max_new_tokens > context_window}
    )
    if too_long:
        fits = sorted(
            {p.L for p in prompts if lengths[p.id] + spec.max_new_tokens <= context_window}
        )
        raise UserError(
            f"L={','.join(map(str, too_long))} does not fit the model's context window of"
            f" {context_window} tokens with {spec.max_new_tokens} output tokens; use --lengths"
            f" {','.join(map(str, fits)) or '(none fit)'} or fewer --max-new-tokens"
        )
    return lengths


class OutOfMemory(UserError):
    """The runner ran out of memory on the device; the request is journaled as failed."""


def run_benchmark(
    spec: RunSpec,
    out_dir: Path | None = None,
    *,
    mode: str = "speed",
    log=print,
    write_reports: bool = True,
    adb_server: str | None = None,
    runner_bin: str | None = None,
    strict_memory: bool = False,
    member: str | None = None,
) -> RunOutcome:
    """Measure ``spec`` into ``out_dir``. ``member`` is the device to run on when
    ``spec.device`` names a pool (a grid's cell goes to whichever member is free)."""
    from harness.devices import open_device
    from harness.devices.lock import device_lock
    from harness.engines import get_engine
    from harness.engines.tvm.targets import is_host_runnable
    from harness.memory import estimate_memory
    from harness.models.resolve import resolve_model
    from harness.paths import results_dir
    from harness.progress import progress
    from harness.prompts.suite import load_suite, select
    from harness.quantization import get_preset

    preset = get_preset(spec.quantization)
    engine = get_engine(spec.engine)
    device = open_device(member or spec.device, spec.target, adb_server)
    spec = resolved_spec(spec, device)
    # a bad --cores fails before any compile
    placements, topology = plan_device_placements(device, spec, log)
    if spec.device == "local" and not is_host_runnable(spec.target):
        raise UserError(
            f"target {spec.target} builds for a phone and cannot run on this desktop; use --target"
            f" llvm here, or `slm-bench compile --target {spec.target}` for the bundle alone"
        )
    prompts = select(load_suite(), spec.tasks, spec.lengths, spec.docs)
    out_dir = Path(out_dir) if out_dir else results_dir() / run_id_for(spec)

    model = resolve_model(spec.model, log=log)
    bundle = engine.build(model, preset, spec.target, log=log)
    manifest = engine.verify(bundle)
    input_lengths = check_context(prompts, bundle, spec, model.config.context_window)
    memory_estimate = estimate_memory(
        model.config, preset, max(input_lengths.values()) + spec.max_new_tokens
    )

    device_info = device.info()
    memory = plan_run_memory(device, device_info, memory_estimate, max(spec.lengths), strict_memory)
    if memory.skip_reason:  # over the device's RAM, or over its budget under --strict-memory
        above_ram = memory.total_ram is not None and memory_estimate > memory.total_ram
        fix = "pass a smaller --model or --quantization, or shorter --lengths" + (
            "" if above_ram else ", or leave out --strict-memory to run it with a warning"
        )
        raise UserError(f"{spec.model} {memory.skip_reason}; {fix}")
    if memory.warning():
        log(memory.warning())
    native = _native_runner(
        spec, device, model, bundle, prompts, input_lengths, mode, out_dir, runner_bin, log
    )
    with device_lock(device.lock_name):  # two harness processes never interleave on one device
        return _deploy_measure_report(
            device,
            device_info,
            bundle,
            manifest,
            prompts,
            spec,
            out_dir,
            mode,
            log,
            write_reports,
            progress,
            memory,
            (placements, topology),
            native,
        )


def plan_run_memory(device, device_info, estimate: int, max_L: int, strict: bool = False):
    """The run's ``harness.memory.MemoryPlan`` against the device's budget and RAM (MemTotal
    where the device reports it, else its profile's)."""
    from harness.memory import memory_of, plan_memory

    offered = memory_of(device, device_info)
    return plan_memory(
        estimate,
        offered.budget,
        offered.total,
        strict,
        f"weights + KV cache at L={max_L} + runtime",
    )


def _with_runner(spec: RunSpec, device) -> RunSpec:
    """``--runner`` when given; else the python runner where harness.runner can run (desktop,
    the emulated x86_64 phone, SLM_BENCH_DEVICE_PYTHON, the profile's device_python, a stock
    ARM64 phone through the harness's TVM kit); else the profile's runner (a native one)."""
    from harness.runners import check_runner

    if (
        "runner" not in spec.model_fields_set
        and device.profile.runner
        and device.python_runner() is None
    ):
        spec = spec.model_copy(update={"runner": device.profile.runner})
    check_runner(spec.runner)
    return spec


def resolved_spec(spec: RunSpec, device) -> RunSpec:
    """The spec as it runs on ``device``: the runner its profile names when none was asked, and
    the target that runner loads."""
    return _with_target(_with_runner(spec, device), device)


def _with_target(spec: RunSpec, device) -> RunSpec:
    """A stock ARM64 phone runs our bundles in the TVM kit, which loads ``arm64-linux``
    libraries: the default ``llvm`` (this host's CPU) becomes the build for the phone's cores,
    ``arm64-linux-i8mm`` where every core lists i8mm in /proc/cpuinfo, else ``arm64-linux``
    (sdot). Either asked for with --target stays (the i8mm one only where the cores have i8mm:
    elsewhere it would die of an illegal instruction); another target is refused."""
    from harness.engines.tvm.targets import ARM64_LINUX_FEATURE, ARM64_LINUX_MATTR, arm64_linux_for

    if (
        spec.runner != "python"
        or spec.device == "local"
        or device.python_runner() != "kit"
        or spec.target == "arm64-linux"
    ):
        return spec
    if spec.target == "llvm":
        return spec.model_copy(update={"target": arm64_linux_for(device.cpu_features())})
    if spec.target in ARM64_LINUX_MATTR:
        feature = ARM64_LINUX_FEATURE[spec.target]
        features = device.cpu_features()
        if features and feature not in features:
            raise UserError(
                f"{device.serial}'s cores do not list {feature} in /proc/cpuinfo, so a"
                f" {spec.target} bundle would stop at its first {feature} instruction; use"
                " --target arm64-linux (or leave --target out)"
            )
        return spec
    raise UserError(
        f"the TVM kit on {device.serial} runs arm64-linux bundles, not {spec.target}; use --target"
        f" arm64-linux (or leave --target out), or --runner tvm-rpc for {spec.target}"
    )


def _native_runner(
    spec, device, model, bundle, prompts, input_lengths, mode, out_dir, runner_bin, log
):
    """The adapter of a native runner (None for the python runner); its template is filled later."""
    from harness.runners import get_runner
    from harness.runners.base import RunnerContext

    cls = get_runner(spec.runner)
    if cls is None:
        if runner_bin:
            raise UserError(
                "--runner-bin is for native runners; add --runner llama-bench (or mlc-cli,"
                " executorch, llama-cli, tvm-rpc)"
            )
        return None
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    ctx = RunnerContext(
        device=device,
        prompts={p.id: p.model_dump() for p in prompts},
        input_lengths=input_lengths,
        template={},
        max_new_tokens=spec.max_new_tokens,
        mode=mode,
        model=model,
        bundle=bundle,
        runner_bin=runner_bin,
        log_path=Path(out_dir) / "runner.log",
        log=log,
    )
    return cls(ctx)


def plan_device_placements(device, spec: RunSpec, log):
    """The run's placements on the device's topology (``harness.devices.placement``)."""
    from harness.devices.placement import plan_placements

    topology = device.topology()
    placements = plan_placements(
        spec.threads, spec.cores, topology, device.phone, f"{device.profile.name} {device.serial}"
    )
    for p in placements:
        if p.oversubscribed:
            log(
                f"note: {p.label()}: more threads than cores, measured as asked and flagged"
                " oversubscribed"
            )
    return placements, topology


def _deploy_measure_report(
    device,
    device_info,
    bundle,
    manifest,
    prompts,
    spec,
    out_dir,
    mode,
    log,
    write_reports,
    progress,
    memory,
    where,
    native=None,
) -> RunOutcome:
    from harness.devices.conditions import idle_power
    from harness.results.journal import Journal
    from harness.versioning import code_version

    if native is not None:
        # a server a runner starts once is pinned to the first setting
        native.placement = where[0][0]
    runner_binary = native.setup() if native is not None else {}
    remote_bundle = device.deploy(bundle) if native is None else None
    journal = Journal(out_dir)
    # after the push, before any runner: the phone at rest
    idle = idle_power(device, spec.idle_s, log)
    info = RunInfo(
        run_id=run_id_for(spec),
        spec=spec,
        device=device_info,
        prompt_set=prompts[0].prompt_set,
        prompt_set_hash=prompts[0].prompt_set_hash,
        versions=_versions(manifest),
        code_version=code_version(),
        bundle={k: manifest[k] for k in BUNDLE_INFO_KEYS if k in manifest},
        device_profile=device.profile.model_dump(),
        deploy={
            "path": remote_bundle,
            "bytes_pushed": device.bytes_pushed
            if native is None
            else runner_binary.get("bytes_pushed", 0),
        },
        runner_binary=runner_binary,
        memory_estimate_bytes=memory.estimate,
        memory_budget_bytes=memory.budget,
        memory_total_bytes=memory.total_ram,
        over_budget=memory.over_budget,
        mode=mode,
        **idle,
        topology=where[1].to_dict(),
        placements=[p.to_dict() for p in where[0]],
    )
    info = journal.write_run_info(info)
    template = {
        "run_id": info.run_id,
        "model": spec.model,
        "params": manifest["params"],
        "weights": manifest["weights"],
        "quantization": spec.quantization,
        "format": manifest["format"],
        "activations": manifest["activations"],
        # a native runner of another engine ran its own kernels, not the bundle's
        "kernels": manifest.get("kernels", "")
        if native is None or native.engine == spec.engine
        else "",
        "engine": native.engine if native is not None else spec.engine,
        "engine_version": manifest["engine_version"]
        if native is None or native.engine == spec.engine
        else "",
        "runner": spec.runner,
        "target": spec.target,
        "device": device_info.model_dump(),
        "prompt_set": info.prompt_set,
        "code_version": info.code_version,
        "over_budget": memory.over_budget,
    }

    placements, topology = where
    pooled = is_pool(spec.device)  # a pool's cell: any member's measurement counts
    done = journal.done_keys(pooled)
    plans = []
    for placement in placements:
        asked = {**template, **placement.asked()}

        def key_of(pid: str, repeat: int, warmup: bool, asked=asked) -> tuple:
            record = Record(
                **asked,
                prompt_id=pid,
                task="summ",
                L=0,
                repeat=repeat,
                warmup=warmup,
                status="skipped",
            )
            return record.pool_key if pooled else record.key

        plans.append((placement, asked, plan_requests([p.id for p in prompts], spec, done, key_of)))
    total = len(prompts) * spec.repeats * len(placements)
    outcome = RunOutcome(
        out_dir=out_dir,
        skipped_done=total - sum(1 for *_, plan in plans for _, _, w in plan if not w),
    )
    if not any(plan for *_, plan in plans):
        log(f"nothing to measure: all {total} measurements are already in {out_dir}")
    else:
        log(
            f"measuring {sum(len(plan) for *_, plan in plans)} requests ({outcome.skipped_done}"
            f" already done) -> {out_dir}"
        )
    for placement, asked, plan in plans:
        if not plan:
            continue
        log(f"cores: {placement.label()}")
        if native is not None:
            native.ctx.template, native.placement = asked, placement
        _measure(
            device,
            remote_bundle,
            prompts,
            plan,
            asked,
            spec,
            mode,
            journal,
            outcome,
            progress,
            native,
            memory,
            (placement, topology),
            idle["idle_power_w"],
        )

    if write_reports:
        outcome.report_files = write_run_reports(out_dir, log)
    return outcome


def _measure(
    device,
    remote_bundle,
    prompts,
    plan,
    template,
    spec,
    mode,
    journal,
    outcome,
    progress,
    native,
    memory,
    where,
    idle_w,
) -> None:
    from harness.devices.conditions import energy_fields, wait_until_cool
    from harness.devices.load import RequestLoad, wait_until_quiet
    from harness.devices.placement import runner_placement
    from harness.devices.power import PowerSampler
    from harness.memory import out_of_memory

    by_id = {p.id: p for p in prompts}

    with tempfile.TemporaryDirectory(prefix="slm-bench-prompts-") as tmp:
        prompts_file = Path(tmp) / "prompts.jsonl"
        prompts_file.write_text("".join(p.model_dump_json() + "\n" for p in prompts))
        runner = native or device.start_runner(
            remote_bundle,
            prompts_file,
            template,
            spec.max_new_tokens,
            mode,
            journal.out_dir / "runner.log",
            where[0],
        )
        runner_pid = None if native else runner.identify()["pid"]  # whose CPU time is not noise
        try:
            with progress(len(plan), "measuring") as bar:
                for pid, repeat, warmup in plan:
                    if spec.cooldown_s > 0 and not warmup:
                        time.sleep(spec.cooldown_s)
                    quiet_s = (
                        0.0
                        if warmup
                        else wait_until_quiet(device, spec.max_load, spec.max_wait_s, bar.log)
                    )
                    waited, cooled, before = (
                        (0.0, True, device.state())
                        if warmup
                        else wait_until_cool(device, spec, bar.log)
                    )
                    try:
                        with (
                            RequestLoad(device, runner_pid, where[1]) as load,
                            PowerSampler(device) as power,
                        ):
                            raw = runner.request(
                                {"op": "run", "prompt_id": pid, "repeat": repeat, "warmup": warmup}
                            )
                    # the runner died or a native one failed: out of memory?
                    except UserError as exc:
                        evidence = runner_oom_evidence(runner, device, exc)
                        if evidence is None:
                            raise
                        error = _oom_error(evidence, memory)
                        p = by_id[pid]
                        journal.append(
                            Record(
                                **template,
                                prompt_id=pid,
                                task=p.task,
                                L=p.L,
                                repeat=repeat,
                                warmup=warmup,
                                status="failed",
                                error=error,
                                device_state_before=before,
                            )
                        )
                        outcome.failed += 1
                        # The runner is gone (or would be killed again at this size): the run stops
                        # here, its records kept; a grid goes on with its next cell.
                        raise OutOfMemory(error) from None
                    after = device.state()
                    ran = {
                        **runner_placement(runner, device, *where),
                        **load.fields(getattr(runner, "ticks_seen", None)),
                    }
                    raw = {**raw, **ran}  # what ran, read back from the runner
                    if (
                        raw.get("status") == "failed"
                        and (evidence := out_of_memory(text=raw.get("error"))) is not None
                    ):
                        # a MemoryError in the runner: the runner lives on
                        raw = {
                            **raw,
                            "error": _oom_error(evidence, memory),
                        }
                    record = Record.model_validate(
                        {
                            **raw,
                            "device_state_before": before.model_dump(),
                            "device_state_after": after.model_dump(),
                            "thermal_wait_s": round(waited, 3),
                            "cooled": cooled,
                            **(
                                {"load_wait_s": round(quiet_s, 3)}
                                if spec.max_load is not None
                                else {}
                            ),
                            **energy_fields(power.mean_watts, raw, idle_w),
                        }
                    )
                    journal.append(record)
                    if record.status == "ok":
                        outcome.measured += 0 if warmup else 1
                        bar.advance(
                            f"{pid} r{repeat}{' (warm-up)' if warmup else ''}: ITPS"
                            f" {record.itps:.0f} OTPS {record.otps or 0:.1f} TTFT"
                            f" {record.ttft_s:.2f}s"
                        )
                    else:
                        outcome.failed += 1
                        bar.advance(f"{pid} r{repeat} failed")
                        bar.log(f"{pid} r{repeat}: {record.error}")
        finally:
            outcome.runner_summary = runner.close()
    if outcome.runner_summary:
        (journal.out_dir / "runner-summary.json").write_text(
            json.dumps(outcome.runner_summary, indent=1)
        )


def runner_oom_evidence(runner, device, exc: BaseException) -> str | None:
    """Why a runner's failure looks like an out-of-memory (``harness.memory.out_of_memory``), or
    None: its exit status (a served runner's process, a native runner's shell), the error, the
    runner's stderr and what the device logged (lmkd on a phone)."""
    import subprocess

    from harness.memory import out_of_memory

    proc = getattr(runner, "proc", None)
    returncode = getattr(exc, "returncode", None)
    if proc is not None:
        if isinstance(proc, subprocess.Popen) and proc.poll() is None:
            try:  # its stdout closes a moment before it can be reaped
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        returncode = proc.poll()
    texts = [str(exc), getattr(exc, "output", "") or ""]
    stderr_path = getattr(runner, "stderr_path", None)
    if stderr_path is not None and Path(stderr_path).is_file():
        texts.append("\n".join(Path(stderr_path).read_text(errors="replace").splitlines()[-20:]))
    evidence = out_of_memory(returncode, "\n".join(texts))
    if evidence is None or evidence.startswith("the runner was killed"):
        logged = out_of_memory(text=device.oom_evidence())  # a phone's lmkd says why it killed
        evidence = logged if logged is not None else evidence
    return evidence


def _oom_error(evidence: str, memory) -> str:
    from harness.memory import oom_message

    return oom_message(
        evidence, memory.estimate if memory else None, memory.total_ram if memory else None
    )


def write_run_reports(out_dir: Path, log=print) -> list[Path]:
    """The run's report and plots, rendered from its journal into the run directory."""
    from harness.report.render import write_report

    outputs = write_report([out_dir], out_dir / "report", title=f"slm-bench report: {out_dir.name}")
    log(f"report: {outputs.html}")
    return outputs.files()


def _versions(manifest: dict) -> dict[str, str]:
    import platform

    import numpy

    return {
        "python": platform.python_version(),
        manifest["engine"]: manifest["engine_version"],
        "numpy": numpy.__version__,
    }


def run_on_devices(
    spec: RunSpec,
    devices: list[str],
    out_dir: Path | None = None,
    *,
    log=print,
    adb_server: str | None = None,
    **kw,
) -> list[RunOutcome]:
    """The same spec on several devices at once, one request at a time per device.

    Each device gets its own run directory, journal, runner and lock (``OUT/<device>`` when OUT
    is given, else the usual per-spec default), so a device that fails stops only its own run.
    The bundle is compiled once, before the devices start.
    """
    import threading

    from harness.engines import get_engine
    from harness.models.resolve import resolve_model
    from harness.quantization import get_preset

    if len(devices) == 1:
        return [
            run_benchmark(
                spec.model_copy(update={"device": devices[0]}),
                out_dir,
                log=log,
                adb_server=adb_server,
                **kw,
            )
        ]
    get_engine(spec.engine).build(
        resolve_model(spec.model, log=log), get_preset(spec.quantization), spec.target, log=log
    )
    outcomes: dict[str, RunOutcome] = {}
    errors: dict[str, BaseException] = {}

    def one(device: str) -> None:
        safe = device.replace(":", "_").replace("/", "_")
        try:
            outcomes[device] = run_benchmark(
                spec.model_copy(update={"device": device}),
                Path(out_dir) / safe if out_dir else None,
                log=lambda msg: log(f"[{device}] {msg}"),
                adb_server=adb_server,
                **kw,
            )
        except BaseException as exc:  # reported below, after every device has finished
            errors[device] = exc

    threads = [threading.Thread(target=one, args=(d,), name=f"device-{d}") for d in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        device, exc = next(iter(errors.items()))
        done = ", ".join(outcomes) or "none"
        raise UserError(f"on {device}: {exc} (finished devices: {done})") from exc
    return [outcomes[d] for d in devices]
