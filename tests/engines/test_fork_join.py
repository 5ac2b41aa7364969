"""The model library's fork-join launcher (harness/engines/tvm/fork_join.cc): a parallel loop
linked with it and switched over gives numpy's answer, also with more tasks than threads, from
two application threads at once, back on TVM's pool, and in a forked child; a library without a
parallel loop keeps TVM's; SLM_BENCH_LAUNCHER=tvm opts out."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

N = 4096


def _export(tmp_path, parallel: bool):
    """A loop over N rows (y = 2x + 1, every row's own), exported the way compile.py links a
    model library, and loaded."""
    import tvm
    from tvm.script import tirx as T

    from harness.engines.tvm.fork_join import link_args

    loop = T.parallel if parallel else T.serial

    @T.prim_func(s_tir=True)
    def affine(x: T.Buffer((N,), "float32"), y: T.Buffer((N,), "float32")):
        T.func_attr({"global_symbol": "main", "tir.noalias": True})
        for i in loop(N):
            y[i] = x[i] * T.float32(2) + T.float32(1)

    path = tmp_path / ("parallel.so" if parallel else "serial.so")
    built = tvm.tirx.build(tvm.IRModule({"main": affine}), target="llvm")
    built.export_library(str(path), **link_args())
    return path, tvm.runtime.load_module(str(path))["main"]


def _check(fn, rounds: int = 50, seed: int = 0) -> None:
    import tvm

    x = np.random.default_rng(seed).standard_normal(N).astype(np.float32)
    y = tvm.runtime.tensor(np.zeros(N, np.float32), tvm.cpu())
    for _ in range(rounds):
        fn(tvm.runtime.tensor(x, tvm.cpu()), y)
        np.testing.assert_array_equal(y.numpy(), x * 2 + 1)


@pytest.fixture
def parallel_lib(tmp_path):
    from harness.engines.tvm.fork_join import switch, use_fork_join

    path, fn = _export(tmp_path, parallel=True)
    yield path, fn, use_fork_join
    switch(path, 0)  # TVM's pool again, for later tests


@pytest.mark.parametrize("threads", [2, 3, 7])
def test_parallel_loop_on_fork_join_matches_numpy(parallel_lib, threads):
    path, fn, use_fork_join = parallel_lib
    assert use_fork_join(path, threads) == "fork-join"
    _check(fn)


def test_concurrent_launches_and_back_to_tvm(parallel_lib):
    """Two threads launching at once: one runs on the pool, the other serially on its own
    thread; both right. Then TVM's pool gives the same."""
    from harness.engines.tvm.fork_join import switch

    path, fn, use_fork_join = parallel_lib
    assert use_fork_join(path, 2) == "fork-join"
    errors = []

    def hammer(seed):
        try:
            _check(fn, rounds=200, seed=seed)
        except AssertionError as exc:
            errors.append(exc)

    workers = [threading.Thread(target=hammer, args=(s,)) for s in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors
    assert switch(path, 0)
    _check(fn)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_starts_its_own_workers(parallel_lib):
    path, fn, use_fork_join = parallel_lib
    assert use_fork_join(path, 2) == "fork-join"
    _check(fn, rounds=5)  # the parent's workers exist now
    pid = os.fork()
    if pid == 0:  # the child: its launches would wait forever on the parent's workers
        try:
            _check(fn, rounds=20)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_library_without_parallel_loop_keeps_tvm(tmp_path):
    from harness.engines.tvm.fork_join import use_fork_join

    path, fn = _export(tmp_path, parallel=False)
    assert use_fork_join(path, 2) == "tvm"
    _check(fn, rounds=2)


def test_opt_out_by_environment(parallel_lib, monkeypatch):
    from harness.engines.tvm.fork_join import LAUNCHER_ENV

    path, fn, use_fork_join = parallel_lib
    monkeypatch.setenv(LAUNCHER_ENV, "tvm")
    assert use_fork_join(path, 2) == "tvm"
    _check(fn, rounds=2)
