"""The machine's compute peaks, measured now with tight TVM loops (what a kernel could reach).

Two loops, each run on every thread of the engine's launcher for a fixed count, timed best of 5
(each loop is a small library run as a model library runs, ``build_with_launcher``: built in
memory, it would run on TVM's pool, whose workers then spin in sched_yield into the timed runs
that follow):

- **fp32 FMA**: CHAINS independent vector accumulators ``a = a * m + c`` (LLVM contracts it
  into one FMA), at the target's native vector width (AVX-512: 16 lanes, AVX2: 8, NEON: 4).
  Counted as 2 flops per lane.
- **int8 dot**: CHAINS independent ``acc += dot(w, acc)`` steps on the instruction our int8
  kernels use (AVX2 ``vpmaddubsw`` + ``vpaddw``: 32 multiply-adds; AVX-512 VNNI ``vpdpbusd``
  on zmm: 64; AVX-VNNI ``vpdpbusd`` on ymm: 32; ARM ``sdot``: 16); feeding
  the accumulator back as the activation operand keeps LLVM from hoisting the product out of
  the loop. Counted as 2 ops per multiply-add.

Independent chains hide each instruction's latency, so the loops are bound by throughput: the
numbers are a ceiling no real kernel reaches (it must also load, unpack and scale).

A third loop is the **read bandwidth**: every thread sums its slice of a 256 MiB buffer into
CHAINS_READ vector accumulators, the way decode streams its weights (reads only, on all the
engine's threads), the median of READ_REPEATS passes. A copy counted as read + write, what the
harness caches per host, misses the write-allocate traffic and one thread cannot saturate the
memory system, so it reads low: on a 2-vCPU EPYC, 27 GB/s against 30 GB/s read on 2 threads.
On a cloud VM the read bandwidth itself moves with the neighbours (26-39 GB/s between three
invocations a minute apart), so a benchmark that compares against it should read it between its
own timed runs: :func:`read_probe`.
"""

from __future__ import annotations

import time

CHAINS = 12
ITERS = 1 << 20  # ~10 ms a loop: thread-pool start-up is noise
READ_BYTES = 256 * 2**20  # far beyond any last-level cache
CHAINS_READ = 4
READ_REPEATS = 15  # passes over the buffer; their median is the read bandwidth


def _fma_loop(threads: int, lanes: int):
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def fma(
        out: T.Buffer((threads, lanes), "float32"),
        m: T.Buffer((lanes,), "float32"),
        c: T.Buffer((lanes,), "float32"),
    ):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True, "global_symbol": "main"})
        for t in T.parallel(threads):
            with T.sblock("t"):
                T.reads()
                T.writes()
                acc = T.sblock_alloc_buffer((CHAINS, lanes), "float32", scope="local")
                for ch in T.unroll(CHAINS):
                    for ln in T.vectorized(lanes):
                        acc[ch, ln] = T.Cast("float32", ch)
                for _ in T.serial(ITERS):
                    for ch in T.unroll(CHAINS):
                        for ln in T.vectorized(lanes):
                            acc[ch, ln] = acc[ch, ln] * m[ln] + c[ln]
                for ln in T.vectorized(lanes):
                    out[t, ln] = acc[0, ln]
                for ch in T.serial(1, CHAINS):
                    for ln in T.vectorized(lanes):
                        out[t, ln] = out[t, ln] + acc[ch, ln]

    return fma


def _int8_shape(isa: str) -> tuple[int, int, str]:
    """(weight bytes per instruction, accumulator lanes, accumulator dtype) of ``isa``'s dot."""
    return {
        "avx2": (32, 16, "int16"),
        "avx512-vnni": (64, 16, "int32"),
        "avx-vnni": (32, 8, "int32"),
    }.get(isa, (16, 4, "int32"))


def _int8_loop(threads: int, isa: str):
    from tvm.script import tirx as T

    bytes_, acc_lanes, acc_dtype = _int8_shape(isa)
    if isa == "avx2":

        def step(a, w):
            return a + T.call_llvm_pure_intrin(
                "int16x16", "llvm.x86.avx2.pmadd.ub.sw", w, T.reinterpret("int8x32", a)
            )
    elif isa in ("avx512-vnni", "avx-vnni"):

        def step(a, w):
            vec = f"int32x{acc_lanes}"
            return T.call_llvm_pure_intrin(
                vec,
                f"llvm.x86.avx512.vpdpbusd.{acc_lanes * 32}",
                a,
                T.reinterpret(f"int8x{bytes_}", w),
                T.reinterpret(f"int8x{bytes_}", a),
            )
    else:

        def step(a, w):
            return T.call_llvm_pure_intrin(
                "int32x4", "llvm.aarch64.neon.sdot.v4i32.v16i8", a, w, T.reinterpret("int8x16", a)
            )

    wdt = f"{'int8' if isa == 'neon-dot' else 'uint8'}x{bytes_}"

    @T.prim_func(s_tir=True)
    def dot(
        out: T.Buffer((threads, acc_lanes), acc_dtype), w: T.Buffer((bytes_,), wdt.split("x")[0])
    ):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True, "global_symbol": "main"})
        for t in T.parallel(threads):
            with T.sblock("t"):
                T.reads()
                T.writes()
                acc = T.sblock_alloc_buffer((CHAINS * acc_lanes,), acc_dtype, scope="local")
                for ch in T.unroll(CHAINS):
                    acc[T.ramp(ch * acc_lanes, 1, acc_lanes)] = T.broadcast(
                        T.Cast(acc_dtype, ch), acc_lanes
                    )
                for _ in T.serial(ITERS):
                    for ch in T.unroll(CHAINS):
                        acc[T.ramp(ch * acc_lanes, 1, acc_lanes)] = step(
                            acc[T.ramp(ch * acc_lanes, 1, acc_lanes)], w.vload([0], wdt)
                        )
                out[t, T.ramp(0, 1, acc_lanes)] = acc[T.ramp(0, 1, acc_lanes)]
                for ch in T.serial(1, CHAINS):
                    out[t, T.ramp(0, 1, acc_lanes)] = (
                        out[t, T.ramp(0, 1, acc_lanes)] + acc[T.ramp(ch * acc_lanes, 1, acc_lanes)]
                    )

    return dot, bytes_


def read_loop(threads: int, lanes: int, nbytes: int = READ_BYTES):
    """The read loop over ``nbytes`` (a TVM function of (out, src)), and the bytes it reads."""
    from tvm.script import tirx as T

    words = nbytes // 4
    per_thread = words // threads
    steps = per_thread // (lanes * CHAINS_READ)

    @T.prim_func(s_tir=True)
    def read(out: T.Buffer((threads, lanes), "float32"), src: T.Buffer((words,), "float32")):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True, "global_symbol": "main"})
        for t in T.parallel(threads):
            with T.sblock("t"):
                T.reads()
                T.writes()
                acc = T.sblock_alloc_buffer((CHAINS_READ * lanes,), "float32", scope="local")
                for ch in T.unroll(CHAINS_READ):
                    acc[T.ramp(ch * lanes, 1, lanes)] = T.broadcast(T.float32(0), lanes)
                for i in T.serial(steps):
                    for ch in T.unroll(CHAINS_READ):
                        start = t * per_thread + (i * CHAINS_READ + ch) * lanes
                        acc[T.ramp(ch * lanes, 1, lanes)] = (
                            acc[T.ramp(ch * lanes, 1, lanes)] + src[T.ramp(start, 1, lanes)]
                        )
                out[t, T.ramp(0, 1, lanes)] = acc[T.ramp(0, 1, lanes)]
                for ch in T.serial(1, CHAINS_READ):
                    out[t, T.ramp(0, 1, lanes)] = (
                        out[t, T.ramp(0, 1, lanes)] + acc[T.ramp(ch * lanes, 1, lanes)]
                    )

    return read, steps * lanes * CHAINS_READ * threads * 4


def _best_seconds(fn, args, repeats: int = 5) -> float:
    fn(*args)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best


def read_probe(target, threads: int):
    """A function that reads the 256 MiB buffer once on ``threads`` threads and returns GB/s."""
    import numpy as np
    import tvm

    from harness.engines.tvm.fork_join import build_with_launcher
    from harness.engines.tvm.kernels import vector_lanes

    dev = tvm.cpu()
    func, nbytes = read_loop(threads, vector_lanes(target))
    fn = build_with_launcher(func, target, threads)["main"]
    args = [
        tvm.runtime.tensor(np.zeros((threads, vector_lanes(target)), np.float32), dev),
        tvm.runtime.tensor(np.ones(READ_BYTES // 4, np.float32), dev),
    ]
    fn(*args)

    def probe() -> float:
        t0 = time.perf_counter()
        fn(*args)
        return nbytes / (time.perf_counter() - t0) / 1e9

    return probe


def measure_peaks(target, threads: int) -> dict:
    """{"fp32_gflops", "int8_gops" (None without integer dot kernels), "read_gbps", "lanes",
    "isa"}."""
    import numpy as np
    import tvm

    from harness.engines.tvm.fork_join import build_with_launcher
    from harness.engines.tvm.kernels import vector_lanes
    from harness.engines.tvm.kernels.matmul_int8 import isa_for

    dev = tvm.cpu()
    lanes = vector_lanes(target)
    fma = build_with_launcher(_fma_loop(threads, lanes), target, threads)["main"]
    args = [
        tvm.runtime.tensor(np.zeros((threads, lanes), np.float32), dev),
        tvm.runtime.tensor(np.full(lanes, 0.999, np.float32), dev),
        tvm.runtime.tensor(np.full(lanes, 1e-3, np.float32), dev),
    ]
    fp32 = 2 * lanes * CHAINS * ITERS * threads / _best_seconds(fma, args) / 1e9
    isa, int8 = isa_for(target), None
    if isa is not None:
        func, width = _int8_loop(threads, isa)
        dot = build_with_launcher(func, target, threads)["main"]
        _, acc_lanes, acc_dtype = _int8_shape(isa)
        args = [
            tvm.runtime.tensor(np.zeros((threads, acc_lanes), acc_dtype), dev),
            tvm.runtime.tensor(np.ones(width, np.int8 if isa == "neon-dot" else np.uint8), dev),
        ]
        int8 = 2 * width * CHAINS * ITERS * threads / _best_seconds(dot, args) / 1e9
    probe = read_probe(target, threads)
    read = sorted(probe() for _ in range(READ_REPEATS))[READ_REPEATS // 2]
    return {
        "fp32_gflops": round(fp32, 1),
        "int8_gops": None if int8 is None else round(int8, 1),
        "read_gbps": round(read, 2),
        "lanes": lanes,
        "isa": isa,
    }
