"""What the instrument hook itself costs, measured in this process before a profile.

The hook's clock reads bracket more than the kernel: the VM converts every argument of the call
to a Python object for the hook and back, so a call with more arguments is charged more. A tiny
Relax module of do-nothing kernels with 1 to ``MAX_ARITY`` tensor arguments, run hooked and
plain, gives

- the hook's charge per call as ``base + per_arg x arguments`` (a least-squares line through the
  hooked time of each arity's empty kernel), taken off every kernel call of the profile;
- the VM's own cost per call instruction when nothing is hooked: the plain run's time over the
  calls the hook counted. A phase's expected overhead is that times its VM calls, which makes
  the profile's check independent: kernels plus expected overhead against the measured time.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

MAX_ARITY = 8
CHAIN = 40  # empty kernel calls per arity in one run of the module
RUNS = 100
REPEATS = 3  # each arity measured this often; the median is kept


@dataclass(frozen=True)
class HookCost:
    base_ns: float  # the hook's charge for a call with no arguments
    per_arg_ns: float  # and for each argument on top
    dispatch_ns: float  # the VM's own time per call instruction, unhooked

    def floor_ns(self, args: int) -> float:
        return self.base_ns + self.per_arg_ns * args


def _empty_kernel(arity: int):
    """A TIR function of ``arity`` float32[4] buffers that adds one to the last's first element
    (it must write something, or the compiler drops the call)."""
    params = ", ".join(f"b{i}: T.Buffer((4,), 'float32')" for i in range(arity))
    source = (
        "from tvm.script import tirx as T\n\n"
        "@T.prim_func(private=True, s_tir=True)\n"
        f"def empty{arity}({params}):\n"
        "    T.func_attr({'tir.noalias': True})\n"
        "    with T.sblock('touch'):\n"
        "        T.reads()\n"
        "        T.writes()\n"
        f"        b{arity - 1}[0] = b0[0] + T.float32(1)\n"
    )
    # TVMScript parses a function from its source file, so the generated one needs a real file
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"empty{arity}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(f"_slm_bench_empty{arity}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return getattr(module, f"empty{arity}")


@cache
def _calibration_vm():
    """One VM with a function per arity, each a chain of ``CHAIN`` empty kernel calls."""
    import tvm
    from tvm import relax
    from tvm.relax.frontend import nn
    from tvm.relax.frontend.nn import Tensor, op

    kernels = {arity: _empty_kernel(arity) for arity in range(2, MAX_ARITY + 1)}

    class Chains(nn.Module):
        pass

    def chain(arity):
        def forward(self, x: Tensor):
            for _ in range(CHAIN):
                out = Tensor.placeholder((4,), "float32")
                x = op.tensor_ir_op(
                    kernels[arity], f"empty{arity}", args=[x] * (arity - 1), out=out
                )
            return x

        return forward

    spec = {}
    for arity in kernels:
        setattr(Chains, f"chain{arity}", chain(arity))
        spec[f"chain{arity}"] = {"x": nn.spec.Tensor((4,), "float32")}
    mod, _ = Chains().export_tvm(spec=spec)
    return relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())


def measure_hook_cost(recorder_factory) -> HookCost:
    """Run every chain plain and under a fresh recorder (the profile's own hook class)."""
    import numpy as np
    import tvm

    vm = _calibration_vm()
    x = tvm.runtime.tensor(np.zeros(4, "float32"))
    points, dispatch = [], []
    for arity in range(2, MAX_ARITY + 1):
        fn = vm[f"chain{arity}"]
        for _ in range(5):
            fn(x)
        hooked, plain = [], []
        for _ in range(REPEATS):
            start = time.perf_counter_ns()
            for _ in range(RUNS):
                fn(x)
            plain_ns = time.perf_counter_ns() - start
            recorder = recorder_factory()
            vm.set_instrument(recorder)
            try:
                for _ in range(RUNS):
                    fn(x)
            finally:
                vm.set_instrument(None)
            stats, calls = recorder.take()
            n, ns = stats[f"empty{arity}"][:2]
            hooked.append(ns / n)
            plain.append(plain_ns / calls)
        points.append((arity, _median(hooked)))
        dispatch.append(_median(plain))
    base, per_arg = _fit_line(points)
    return HookCost(base_ns=base, per_arg_ns=per_arg, dispatch_ns=_median(dispatch))


def _fit_line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares intercept and slope."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx if sxx else 0.0
    return mean_y - slope * mean_x, slope


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]
