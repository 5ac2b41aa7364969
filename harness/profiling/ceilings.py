"""The desktop's ceilings: read bandwidth and compute peaks on the profile's threads and target
(``harness.profiling.peaks``), measured once per machine, target and thread count, and cached."""

from __future__ import annotations

import json
import platform

from .schema import Ceilings


def local_ceilings(threads: int, target: str = "llvm", log=print) -> Ceilings:
    from .peaks import READ_REPEATS

    peaks = _cached_peaks(threads, target, log)
    return Ceilings(
        bandwidth_gbps=peaks["read_gbps"],
        bandwidth_source=(
            f"harness/profiling/peaks.py: {threads} threads reading 256 MiB, median of"
            f" {READ_REPEATS} passes (cached)"
        ),
        fp32_gflops=peaks["fp32_gflops"],
        int8_gops=peaks["int8_gops"],
        compute_source=(
            f"harness/profiling/peaks.py on {threads} threads ({target}): fp32 FMA at"
            f" {peaks['lanes']} lanes, int8 dot {peaks['isa'] or 'none'} (cached)"
        ),
    )


def _cached_peaks(threads: int, target: str, log) -> dict:
    """Peaks of this host at ``threads``: from the cache, else measured (a second or two of
    compiling three TVM loops, then about a second of running them)."""
    from harness.cache import cache_dir
    from harness.engines.tvm import targets

    from .peaks import measure_peaks

    path = cache_dir() / "host-peaks.json"
    key = f"{platform.node()}/{target}/{threads}"
    known = json.loads(path.read_text()) if path.is_file() else {}
    if "read_gbps" in known.get(key, {}):
        return known[key]
    log(f"measuring this host's peaks on {threads} threads (harness/profiling/peaks.py)")
    known[key] = measure_peaks(targets.resolve(target), threads)
    path.write_text(json.dumps(known, indent=1))
    return known[key]
