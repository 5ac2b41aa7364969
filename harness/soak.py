"""Sustained load: ``slm-bench soak``. One prompt (one task, one L) back to back for N minutes,
to see what a phone does when it heats: its clocks drop and decoding slows.

Journaled like a run: every request is a Record in ``DIR/records.jsonl`` (``repeat`` counts the
requests, ``soak_elapsed_s`` places it in the soak), and every ``interval_s`` seconds a sample of
the device (each thermal zone, the battery, each cluster's ``scaling_cur_freq``) goes to
``DIR/samples.jsonl``. A killed soak keeps both; rerunning the same command continues where the
files end until the soak has lasted N minutes. :func:`summarize` reads only the files, and writes
``DIR/soak.json``:

- ``peak_otps``: median OTPS of the requests that started in the first minute;
- ``sustained_otps``: median OTPS of the last third of the soak (by time);
- ``sustained_ratio`` = sustained / peak;
- ``seconds_to_first_drop``: when decoding first stayed more than 10% below the peak: the start of
  the first run of ``DROP_RUN`` consecutive requests whose median is below 90% of it (one slow
  request is noise, not a drop; None: never);
- ``peak_temp_c``: the hottest reading of any zone (or the battery).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path
from statistics import median

from harness.errors import UserError
from harness.results.schema import Record, RunInfo, RunSpec, now_rfc3339

SAMPLES_FILE = "samples.jsonl"
SUMMARY_FILE = "soak.json"
DROP = 0.9  # below this share of the peak OTPS ...
DROP_RUN = 5  # ... for the median of this many consecutive requests, decoding has dropped


def run_soak(
    spec: RunSpec,
    minutes: float,
    out_dir: Path,
    *,
    interval_s: float = 5.0,
    adb_server: str | None = None,
    log=print,
) -> dict:
    """Soak ``spec``'s single prompt for ``minutes``; returns the summary (also in soak.json)."""
    from harness.benchmark import check_context, plan_device_placements
    from harness.devices import open_device
    from harness.devices.lock import device_lock
    from harness.engines import get_engine
    from harness.models.resolve import resolve_model
    from harness.prompts.suite import load_suite, select
    from harness.quantization import get_preset

    if minutes <= 0:
        raise UserError(f"--minutes {minutes}: a soak needs a positive duration, e.g. --minutes 10")
    device = open_device(spec.device, spec.target, adb_server)
    if device.python_runner() is None or spec.runner != "python":
        raise UserError(
            "slm-bench soak drives the python runner (harness.runner); this device has none: see"
            " docs/phones.md"
        )
    placements, topology = plan_device_placements(device, spec, log)
    if len(placements) != 1:
        raise UserError(
            "a soak measures one setting: pass at most one --threads value and one --cores set"
        )
    [prompt] = select(load_suite(), spec.tasks, spec.lengths, 1)
    engine = get_engine(spec.engine)
    model = resolve_model(spec.model, log=log)
    bundle = engine.build(model, get_preset(spec.quantization), spec.target, log=log)
    manifest = engine.verify(bundle)
    check_context([prompt], bundle, spec, model.config.context_window)
    with device_lock(device.lock_name):
        soak = Soak(device, spec, placements[0], topology, Path(out_dir), interval_s, log)
        soak.prepare(bundle, manifest, prompt, minutes)
        soak.run(minutes)
    summary = summarize(Path(out_dir))
    log(
        f"soak: peak {summary['peak_otps'] or 0:.1f} tok/s, sustained"
        f" {summary['sustained_otps'] or 0:.1f} tok/s (ratio"
        f" {summary['sustained_ratio'] or 0:.2f}); first drop {summary['seconds_to_first_drop']} s;"
        f" peak {summary['peak_temp_c']} °C"
    )
    return summary


class Soak:
    """The measuring loop of one soak; the files it appends to are the only state."""

    def __init__(
        self, device, spec: RunSpec, placement, topology, out_dir: Path, interval_s: float, log
    ):
        from harness.results.journal import Journal

        self.device, self.spec, self.placement, self.topology = device, spec, placement, topology
        self.out_dir, self.interval_s, self.log = out_dir, interval_s, log
        self.journal = Journal(out_dir)
        records, _ = self.journal.load()
        measured = [r for r in records if not r.warmup]
        self.next_repeat = max((r.repeat for r in measured), default=-1) + 1
        samples = read_samples(out_dir)
        # resuming: time continues from where the files end (the pause itself is not soak time)
        self.offset = max(
            [getattr(r, "soak_elapsed_s", 0) or 0 for r in measured]
            + [s["elapsed_s"] for s in samples]
            + [0.0]
        )

    def prepare(self, bundle: Path, manifest: dict, prompt, minutes: float) -> None:
        from harness.benchmark import BUNDLE_INFO_KEYS, run_id_for
        from harness.devices.conditions import idle_power
        from harness.versioning import code_version

        self.prompt, self.remote = prompt, self.device.deploy(bundle)
        idle = idle_power(self.device, self.spec.idle_s, self.log)
        self.idle_w = idle["idle_power_w"]
        info = RunInfo(
            run_id=f"soak-{run_id_for(self.spec)}",
            spec=self.spec,
            device=self.device.info(),
            prompt_set=prompt.prompt_set,
            prompt_set_hash=prompt.prompt_set_hash,
            code_version=code_version(),
            bundle={k: manifest[k] for k in BUNDLE_INFO_KEYS if k in manifest},
            soak={"minutes": minutes, "interval_s": self.interval_s},
            topology=self.topology.to_dict(),
            placements=[self.placement.to_dict()],
            **idle,
        )
        self.info = self.journal.write_run_info(info)
        self.template = {
            "run_id": self.info.run_id,
            "model": self.spec.model,
            "params": manifest["params"],
            "weights": manifest["weights"],
            "quantization": self.spec.quantization,
            "format": manifest["format"],
            "activations": manifest["activations"],
            "kernels": manifest.get("kernels", ""),
            "engine": self.spec.engine,
            "engine_version": manifest["engine_version"],
            "runner": "python",
            "target": self.spec.target,
            "device": self.info.device.model_dump(),
            "prompt_set": prompt.prompt_set,
            "code_version": self.info.code_version,
            **self.placement.asked(),
        }

    def run(self, minutes: float) -> None:
        from harness.devices.conditions import energy_fields
        from harness.devices.load import RequestLoad
        from harness.devices.placement import runner_placement
        from harness.devices.power import PowerSampler

        end = minutes * 60
        if self.offset >= end:
            self.log(
                f"nothing to measure: the soak in {self.out_dir} already lasted {self.offset:.0f} s"
                f" of {end:.0f}"
            )
            return
        with tempfile.TemporaryDirectory(prefix="slm-bench-soak-") as tmp:
            prompts = Path(tmp) / "prompts.jsonl"
            prompts.write_text(self.prompt.model_dump_json() + "\n")
            runner = self.device.start_runner(
                self.remote,
                prompts,
                self.template,
                self.spec.max_new_tokens,
                "speed",
                self.out_dir / "runner.log",
                self.placement,
            )
            sampler = Sampler(self.device, self.topology, self.out_dir, self.interval_s)
            try:
                pid = runner.identify()["pid"]
                warm = runner.request(
                    {"op": "run", "prompt_id": self.prompt.id, "repeat": 0, "warmup": True}
                )
                if warm.get("status") == "ok" and warm["runtime_s"] > end - self.offset:
                    raise UserError(
                        f"a soak of {minutes:g} min is shorter than one request"
                        f" ({warm['runtime_s']:.1f} s at L={self.prompt.L}); use more --minutes or"
                        " a shorter --L"
                    )
                start, said = time.monotonic() - self.offset, -float("inf")
                sampler.start(start)
                self.log(
                    f"soaking {self.prompt.id} for {minutes:g} min ({self.placement.label()}) ->"
                    f" {self.out_dir}"
                )
                while (elapsed := time.monotonic() - start) < end:
                    with (
                        RequestLoad(self.device, pid, self.topology) as load,
                        PowerSampler(self.device) as power,
                    ):
                        raw = runner.request(
                            {
                                "op": "run",
                                "prompt_id": self.prompt.id,
                                "repeat": self.next_repeat,
                                "warmup": False,
                            }
                        )
                    state = self.device.state()
                    raw = {
                        **raw,
                        **runner_placement(runner, self.device, self.placement, self.topology),
                        **load.fields(),
                        "device_state_after": state.model_dump(),
                        "soak_elapsed_s": round(elapsed, 3),
                        **energy_fields(power.mean_watts, raw, self.idle_w),
                    }
                    record = Record.model_validate(raw)
                    self.journal.append(record)
                    self.next_repeat += 1
                    if elapsed - said < self.interval_s:
                        # a line per sampling interval, not per request (a tiny model makes
                        # hundreds a second)
                        continue
                    said = elapsed
                    temp = (
                        state.cpu_temp_c if state.cpu_temp_c is not None else state.battery_temp_c
                    )
                    self.log(
                        f"soak {elapsed:6.0f} s: OTPS {record.otps or 0:6.1f} ITPS"
                        f" {record.itps or 0:7.0f} temp"
                        f" {temp if temp is not None else float('nan'):.1f} °C freq"
                        f" {record.cpu_freq_khz or '-'}"
                    )
            finally:
                sampler.stop()
                runner.close()


class Sampler:
    """The device every ``interval_s`` seconds, in a
    thread, journaled to samples.jsonl (fsync'd)."""

    def __init__(self, device, topology, out_dir: Path, interval_s: float):
        self.device, self.topology, self.path, self.interval_s = (
            device,
            topology,
            Path(out_dir) / SAMPLES_FILE,
            interval_s,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)
        self.start_t = 0.0

    def start(self, start_t: float) -> None:
        self.start_t = start_t
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception:  # noqa: BLE001 - a vanished device is reported by the request itself
                pass
            self._stop.wait(self.interval_s)

    def sample(self) -> None:
        state, freqs = self.device.state(), self.device.cur_freqs()
        by_cluster = {
            name: max(freqs[c] for c in ids if c in freqs)
            for name, ids in self.topology.clusters.items()
            if any(c in freqs for c in ids)
        }
        row = {
            "elapsed_s": round(time.monotonic() - self.start_t, 3),
            "time": now_rfc3339(),
            "battery_temp_c": state.battery_temp_c,
            "battery_level": state.battery_level,
            "thermal_zones_c": state.thermal_zones_c,
            "cpu_temp_c": state.cpu_temp_c,
            "cpu_freq_khz": by_cluster or None,
        }
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())


def read_samples(out_dir: Path) -> list[dict]:
    """The soak's samples; a half-written last line (a kill mid-write) is skipped."""
    path = Path(out_dir) / SAMPLES_FILE
    rows = []
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def first_drop(points: list[tuple[float, float]], peak: float) -> float | None:
    """The time of the first request that starts DROP_RUN
    in a row whose median OTPS is below DROP x peak."""
    for i in range(len(points) - DROP_RUN + 1):
        if median(otps for _, otps in points[i : i + DROP_RUN]) < DROP * peak:
            return points[i][0]
    return None


def summarize(out_dir: Path) -> dict:
    """soak.json from the soak's files (module docstring for the definitions)."""
    from harness.results.journal import load

    records, _ = load(out_dir)
    points = sorted(
        (r.soak_elapsed_s, r.otps)
        for r in records
        if not r.warmup
        and r.status == "ok"
        and r.otps
        and getattr(r, "soak_elapsed_s", None) is not None
    )
    samples = read_samples(out_dir)
    temps = [
        t
        for s in samples
        for t in [*(s.get("thermal_zones_c") or []), s.get("battery_temp_c")]
        if t is not None
    ]
    temps += [
        t
        for r in records
        for st in (r.device_state_after,)
        if st
        for t in [*(st.thermal_zones_c or []), st.battery_temp_c]
        if t is not None
    ]
    summary = {
        "requests": len(points),
        "duration_s": points[-1][0] if points else 0.0,
        "peak_otps": None,
        "sustained_otps": None,
        "sustained_ratio": None,
        "seconds_to_first_drop": None,
        "peak_temp_c": max(temps) if temps else None,
    }
    if points:
        first_minute = [otps for t, otps in points if t < 60] or [points[0][1]]
        last_third = [otps for t, otps in points if t >= points[-1][0] * 2 / 3] or [points[-1][1]]
        peak, sustained = median(first_minute), median(last_third)
        drop = first_drop(points, peak)
        summary.update(
            peak_otps=peak,
            sustained_otps=sustained,
            sustained_ratio=sustained / peak,
            seconds_to_first_drop=drop,
        )
    (Path(out_dir) / SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n")
    return summary
