"""Packing weights into shards reports each parameter's bytes to a progress meter whose total,
known before the first tensor is converted, is what the shards end up holding."""

from __future__ import annotations

import io
import re

from harness.engines.tvm.compile import _packed_bytes
from harness.engines.tvm.weights import convert, write_shards
from harness.models.registry import tiny_configs
from harness.models.sources.dummy import load_dummy
from harness.progress import meter
from harness.quantization import get_preset


def test_packing_reports_bytes_up_to_the_total_the_shards_hold(tmp_path):
    model, preset = load_dummy("t", tiny_configs()["tiny-llama"]), get_preset("q4f16_1")
    expected = {name: (arr.shape, str(arr.dtype)) for name, arr in convert(model, preset)}
    total, seen, stream = _packed_bytes(expected), [], io.StringIO()
    with meter(total, "packing weights (q4f16_1)", stream=stream, every_s=0) as done:
        meta = write_shards(
            convert(model, preset), expected, tmp_path, lambda n: (seen.append(n), done(n))
        )
    assert sum(seen) == total == meta["total_bytes"] and len(seen) == len(expected)
    lines = stream.getvalue().splitlines()
    percents = [int(re.search(r"\((\d+)%\)", line)[1]) for line in lines[:-1]]
    assert len(percents) >= 3 and percents == sorted(set(percents)) and percents[-1] < 100
    assert re.fullmatch(r"packing weights \(q4f16_1\): [\d.]+ [kM]B in .*B/s\)", lines[-1])
