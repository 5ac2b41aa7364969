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

The desktop compiles the module in process. A phone's runner has TVM's runtime only, so the host
compiles the same module for the phone's target (``calibration_library``: cross-linked as bundles
are, cached by content hash) and the runner loads it (``load_calibration_vm``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import tempfile
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

MAX_ARITY = 8
CHAIN = 40  # empty kernel calls per arity in one run of the module
RUNS = 100
REPEATS = 5  # each arity measured this often (hooked: the median; plain: the fastest)


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


def calibration_module():
    """An IRModule with a function per arity, each a chain of ``CHAIN`` empty kernel calls."""
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
    return mod


@cache
def _calibration_vm():
    """The desktop's calibration VM, compiled in this process."""
    import tvm
    from tvm import relax

    return relax.VirtualMachine(tvm.compile(calibration_module(), target="llvm"), tvm.cpu())


def calibration_key(target: str) -> str:
    """What the calibration library for ``target`` depends on: the code that makes the module,
    its sizes, the resolved target and TVM's version (by syntax: comments do not count)."""
    import tvm

    from harness.cache import code_fingerprint
    from harness.engines.tvm import targets

    payload = {
        "code": code_fingerprint([_empty_kernel, calibration_module]),
        "sizes": [MAX_ARITY, CHAIN],
        "target": str(targets.resolve(target)),
        "tvm": tvm.__version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def calibration_library(target: str, log=print) -> Path:
    """The calibration module compiled for ``target`` (a phone's: arm64-linux, ...) and linked
    the way a bundle's model library is; cached by :func:`calibration_key`, so a phone that has
    it (pushed by sha256) gets nothing new until the module, the target or TVM changes."""
    import tvm

    from harness.cache import build_atomically, cache_dir, exclusive, mark_used
    from harness.engines.tvm import targets
    from harness.engines.tvm.compile import _export_library

    folder = cache_dir("profiling") / f"calibration-{target}-{calibration_key(target)}"
    lib = folder / "calibration.so"
    if not lib.is_file():
        with exclusive(folder.with_name(folder.name + ".lock")):
            if not lib.is_file():  # not built meanwhile by another process
                log(f"compiling the hook-cost calibration module for {target}")

                def build(work: Path) -> None:
                    resolved = targets.resolve(target)
                    with resolved:
                        executable = tvm.compile(calibration_module(), target=resolved)
                    _export_library(executable, work / "calibration.so", target, log)

                build_atomically(folder, build)
    mark_used(folder)
    return lib


def load_calibration_vm(path: str | Path):
    """The calibration VM from a library compiled by :func:`calibration_library`, loaded with
    TVM's runtime only (all a phone's runner has)."""
    import tvm
    from tvm.runtime.vm import VirtualMachine

    return VirtualMachine(tvm.runtime.load_module(str(path)), tvm.cpu())


def measure_hook_cost(recorder_factory, vm=None) -> HookCost:
    """Run every chain plain and under a fresh recorder (the profile's own hook class), in ``vm``
    (a loaded calibration library) or in the desktop's own compile of the module."""
    import numpy as np
    import tvm

    vm = vm if vm is not None else _calibration_vm()
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
        # a plain run can only be slowed by what else the machine does: its fastest repeat is
        # the VM's own cost (the median moved by 2x between profiles on a busy 2-vCPU VM)
        dispatch.append(min(plain))
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
