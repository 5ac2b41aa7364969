"""Packing weights into shards reports each parameter's bytes to a progress meter whose total,
known before the first tensor is converted, is what the shards end up holding; loading a truncated
shard names the parameter and the fix; a whole one gives back every value, on the CPU from one
arena on huge pages."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest

from harness.engines.tvm.compile import _packed_bytes
from harness.engines.tvm.weights import convert, load_params, write_shards
from harness.errors import UserError
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


def _shards(tmp_path):
    params = {
        "a": np.arange(7, dtype=np.float32),  # 28 bytes: the next tensor needs padding
        "b": np.arange(12, dtype=np.uint8).reshape(3, 4),
        "c": np.linspace(-1, 1, 10).astype(np.float16),
    }
    expected = {n: (a.shape, str(a.dtype)) for n, a in params.items()}
    write_shards(iter(params.items()), expected, tmp_path)
    return params


def test_parameters_load_with_their_values_in_the_order_asked(tmp_path):
    import tvm

    params = _shards(tmp_path)
    order = ["c", "a", "b"]
    for name, tensor in zip(order, load_params(tmp_path, order, tvm.cpu()), strict=True):
        np.testing.assert_array_equal(tensor.numpy(), params[name])


def test_a_truncated_shard_names_the_parameter_and_the_fix(tmp_path):
    import tvm

    _shards(tmp_path)
    shard = tmp_path / "shard_000.bin"
    shard.write_bytes(shard.read_bytes()[:-4])
    with pytest.raises(UserError, match=r"ends before parameter c: .*compile again"):
        load_params(tmp_path, ["a", "b", "c"], tvm.cpu())


def test_cpu_parameters_share_one_huge_page_arena(tmp_path):
    """On the CPU the tensors are views of one arena, each on TVM's 64-byte alignment, in the
    order asked; the kernel is asked for huge pages there wherever it takes the advice."""
    import tvm

    from harness.engines.tvm.arena import ALIGN, HUGE_PAGE

    _shards(tmp_path)
    tensors = load_params(tmp_path, ["c", "a", "b"], tvm.cpu())
    starts = [np.from_dlpack(t).ctypes.data for t in tensors]
    assert starts[0] % HUGE_PAGE == 0 and all(s % ALIGN == 0 for s in starts)
    assert starts == [starts[0], starts[0] + 64, starts[0] + 128]  # 20, 28 and 12 bytes, aligned
    if "[never]" not in _thp_setting():  # "hg": the mapping carries MADV_HUGEPAGE
        assert "hg" in _smaps_field(starts[0], "VmFlags").split()


def _thp_setting() -> str:
    try:
        return open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return "[never]"


def _smaps_field(address: int, field: str) -> str | None:
    """The value of ``field`` for the mapping that holds ``address`` (/proc/self/smaps)."""
    inside = False
    for line in open("/proc/self/smaps"):
        head = line.split()[0]
        if "-" in head and ":" not in head:
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= address < hi
        elif inside and head == f"{field}:":
            return line.split(":", 1)[1].strip()
    return None
