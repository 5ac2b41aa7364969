"""Hand-scheduled TIR kernels for CPU (and GPU) targets.

Two things every CPU kernel here relies on to keep its accumulators in registers:

- **Small buffers in "global" scope.** TVM places a small (< 1 KiB) *global* allocation inside a
  parallel loop on the stack, where LLVM promotes it to registers; a "local" one becomes a
  TVMBackendAllocWorkspace call whose result LLVM must assume aliases every other pointer.
- **``CPU_ATTRS``.** ``tirx.is_entry_func`` makes TVM emit the kernel body as a function taking
  its buffers as ``noalias`` pointers. TVM sets it by itself only for the lone function of a
  module; in a model library (many functions) LLVM would otherwise have to reload every value
  after each store: measured on the int8 GEMM (200 x 576 x 3072) inside SmolLM2's library,
  5.2-5.6 ms -> 4.9 ms (4.1-4.2 ms when built as the lone function of a module).
"""

CPU_ATTRS = {"tirx.noalias": True, "tirx.is_scheduled": True, "tirx.is_entry_func": True}


def cpu_attrs(**extra) -> dict:
    """CPU_ATTRS plus function-specific attributes (a global symbol, an op pattern)."""
    return {**CPU_ATTRS, **extra}


def vector_lanes(target) -> int:
    """fp32 lanes of the target's vector registers: 4 (NEON), 16 (AVX-512) or 8 (AVX2)."""
    from tvm.target import codegen

    if str(target.attrs.get("mtriple", "") or "").startswith("aarch64"):
        return 4
    return 16 if codegen.target_has_features("avx512f", target) else 8


# llvm.prefetch locality: 2 asks for L2 (x86 prefetcht1), where more misses can be in flight
# than L1 allows (decode attention: L1 was 1.4x slower at 1000 keys, EPYC Zen 4)
PREFETCH_L2 = 2


def prefetch_macro(T, locality: int = PREFETCH_L2):
    """A macro asking for the cache line at ``address`` (a read of data), into L2 by default.
    It never faults, so addresses past a buffer's end are harmless."""

    @T.macro
    def ask(address):
        T.evaluate(T.call_llvm_intrin("void", "llvm.prefetch.p0", address, 0, locality, 1))

    return ask
