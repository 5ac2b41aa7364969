"""The embedded MLC-style engine on Apache TVM 0.27 (see compile.py, runtime.py, kernels/)."""

import os as _os
import sys as _sys


def _default_threads() -> None:
    """Use every core this process may run on.

    TVM's CPU thread pool defaults to half the hardware threads on x86 (it assumes SMT), which
    on a 2-core machine means one thread. Set before TVM's runtime starts; an explicit
    TVM_NUM_THREADS from the user wins.
    """
    from harness.engines import host_cores

    _os.environ.setdefault("TVM_NUM_THREADS", str(host_cores()))


def _import_tvm_without_torch() -> None:
    """Import TVM without dragging in PyTorch.

    tvm_ffi 0.1 imports torch eagerly whenever it is installed (a Windows symbol-clash
    workaround). That costs seconds of start-up and hundreds of MB of RSS — which would show up
    in a runner's measured peak memory. Unless torch is already loaded, hide it for the duration
    of TVM's import, then un-hide it so later ``import torch`` works normally.
    """
    if "tvm" in _sys.modules or "torch" in _sys.modules:
        return
    _sys.modules["torch"] = None  # makes `import torch` raise ImportError
    try:
        import tvm  # noqa: F401
    finally:
        del _sys.modules["torch"]


_default_threads()
_import_tvm_without_torch()
