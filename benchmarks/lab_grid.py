"""A phone lab's grid against the same grid on one phone, side by side in one run.

Two real adb servers (Debian's adb) on two loopback ports, two emulated Galaxy S24s (x86_64)
behind each; the grid of examples/lab.yaml's three tiny models, first over pool:galaxy-s24 (all
four phones), then on one of them. Prints the two wall times, their ratio, and how many cells
overlapped in time. The emulated phones run on this host's cores, so the ratio says how well the
grid keeps devices busy on this machine, never what four real phones would gain (on real phones
each brings its own CPU; here four share the host's).

    python benchmarks/lab_grid.py [--repeats 3] [--lengths 200,400] [--out /tmp/lab-grid]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.devices.emulated.adbd import EmulatedDevice, load_profile  # noqa: E402
from harness.grid import GridSpec, run_grid  # noqa: E402
from harness.results.journal import load  # noqa: E402

MODELS = ["dummy:tiny-llama", "dummy:tiny-qwen2", "dummy:tiny-slimlm"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def adb(port: int, *args: str) -> None:
    subprocess.run(["adb", "-P", str(port), *args], capture_output=True, timeout=30, check=False)


def start_lab(root: Path) -> tuple[dict[str, list[EmulatedDevice]], list[int]]:
    servers, ports = {}, []
    for i in range(2):
        port = free_port()
        adb(port, "start-server")
        ports.append(port)
        phones = []
        for j in range(2):
            phone = EmulatedDevice(load_profile("galaxy-s24"), root / f"phone{i}{j}")
            phone.start()
            for _ in range(100):
                adb(port, "connect", phone.serial)
                out = subprocess.run(
                    ["adb", "-P", str(port), "devices"], capture_output=True, text=True
                ).stdout
                if f"{phone.serial}\tdevice" in out:
                    break
                time.sleep(0.1)
            phones.append(phone)
        servers[f"127.0.0.1:{port}"] = phones
    return servers, ports


def timed_grid(grid: GridSpec, out: Path) -> tuple[float, list[tuple[str, str, str]]]:
    t0 = time.perf_counter()
    run_dirs = run_grid(grid, out, log=lambda *_: None)
    wall = time.perf_counter() - t0
    if run_dirs.failed:
        raise SystemExit(f"{run_dirs.failed} cell(s) failed under {out}")
    spans = []
    for run_dir in run_dirs:
        records, _ = load(run_dir)
        stamps = sorted(r.timestamp for r in records)
        spans.append((stamps[0], stamps[-1], records[-1].device.serial))
    return wall, spans


def overlapping(spans) -> int:
    """Cells that started before another had finished."""
    spans = sorted(spans)
    return sum(1 for a, b in zip(spans, spans[1:], strict=False) if b[0] < a[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lengths", default="200,400")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if shutil.which("adb") is None:
        raise SystemExit("adb is not installed: apt-get install -y adb")
    out = args.out or Path(tempfile.mkdtemp(prefix="lab-grid-"))
    servers, ports = start_lab(out / "phones")
    try:
        base = dict(
            models=MODELS,
            target="llvm",
            tasks=["summ", "qa"],
            lengths=[int(x) for x in args.lengths.split(",")],
            repeats=args.repeats,
            warmup=1,
            max_new_tokens=16,
            idle_s=0,
        )
        pool = GridSpec(**base, devices=["pool:galaxy-s24"], adb_servers=list(servers))
        server, phones = next(iter(servers.items()))
        one = GridSpec(**base, devices=[f"adb:{phones[0].serial}@{server}"])
        run_grid(one, out / "warm", log=lambda *_: None)  # compile the bundles once, untimed
        wall_pool, spans_pool = timed_grid(pool, out / "pool")
        wall_one, spans_one = timed_grid(one, out / "one")
    finally:
        for phones in servers.values():
            for phone in phones:
                phone.stop()
        for port in ports:
            adb(port, "kill-server")
    result = {
        "cells": len(MODELS),
        "phones_in_pool": sum(len(p) for p in servers.values()),
        "wall_s_pool": round(wall_pool, 2),
        "wall_s_one_phone": round(wall_one, 2),
        "ratio_one_over_pool": round(wall_one / wall_pool, 2),
        "cells_overlapping_pool": overlapping(spans_pool),
        "cells_overlapping_one_phone": overlapping(spans_one),
        "phones_used_pool": len({s for *_, s in spans_pool}),
        "out": str(out),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
