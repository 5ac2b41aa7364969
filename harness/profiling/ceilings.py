"""The desktop's ceilings: read bandwidth and compute peaks on the profile's threads
(``benchmarks/peak.py``, measured once per machine and thread count, cached); the local device's
cached copy bandwidth stands in for the first when peak.py cannot be imported."""

from __future__ import annotations

import json
import platform

from .schema import Ceilings


def local_ceilings(threads: int, target: str = "llvm", log=print) -> Ceilings:
    from harness.devices.local import measured_bandwidth_gbps

    ceilings = Ceilings(
        bandwidth_gbps=round(measured_bandwidth_gbps(), 2),
        bandwidth_source="measured on this host: numpy copy of 256 MiB, best of 5 (cached)",
    )
    peaks = _cached_peaks(threads, target, log)
    if peaks is not None:
        ceilings.bandwidth_gbps = peaks["read_gbps"]
        ceilings.bandwidth_source = (
            f"benchmarks/peak.py: {threads} threads reading 256 MiB, best of 5 (cached)"
        )
    if peaks is None:
        ceilings.compute_source = (
            "not measured: benchmarks/peak.py is not importable (run from a checkout of the"
            " repository); the compute columns stay empty"
        )
        return ceilings
    ceilings.fp32_gflops = peaks["fp32_gflops"]
    ceilings.int8_gops = peaks["int8_gops"]
    ceilings.compute_source = (
        f"benchmarks/peak.py on {threads} threads: fp32 FMA at {peaks['lanes']} lanes, int8 dot"
        f" {peaks['isa'] or 'none'} (cached)"
    )
    return ceilings


def _cached_peaks(threads: int, target: str, log) -> dict | None:
    """Peaks of this host at ``threads``: from the cache, else measured (a second or two of
    compiling two TVM loops, then ~60 ms of running them)."""
    from harness.cache import cache_dir

    path = cache_dir() / "host-peaks.json"
    key = f"{platform.node()}/{target}/{threads}"
    known = json.loads(path.read_text()) if path.is_file() else {}
    if "read_gbps" in known.get(key, {}):
        return known[key]
    try:
        from benchmarks.peak import measure_peaks
    except ImportError:
        return None
    from harness.engines.tvm import targets

    log(f"measuring this host's compute peaks on {threads} threads (benchmarks/peak.py)")
    known[key] = measure_peaks(targets.resolve(target), threads)
    path.write_text(json.dumps(known, indent=1))
    return known[key]
