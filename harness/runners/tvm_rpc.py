"""The harness's own TVM bundle, run on the phone's TVM runtime and driven from the host over RPC.

On the phone: a TVM RPC server — the user's ``tvm_rpc`` build (apps/cpp_rpc, linked with the NDK;
``--runner-bin`` or SLM_BENCH_TVM_RPC), or ``python -m tvm.exec.rpc_server`` where the device has
a Python (the emulated phone, Termux). It is started over ``adb shell`` and reached through
``adb forward``. The host uploads the bundle's library (compiled by the engine for the phone's
target), uploads the weights as tensors on the phone's device, creates the paged KV cache there,
and runs prefill and decode with the VM's stateful invocation (``set_input`` / ``invoke_stateful``
/ ``get_outputs``): functions returning a tuple cannot be called across RPC directly, and neither
``time_evaluator`` nor host-built Shape/Array arguments cross it, so those are built remotely
(``ffi.Shape``, ``ffi.Array``).

Timing is taken on the host around the RPC calls, with the schema's stamps (t_start, prefill end,
first token, last token), so every phase includes its RPC round trips (about nine per decode
step) and the copy of each step's logits to the host for greedy sampling (the phone's sampler
takes an ``ffi.Tensor``, which RPC does not pass). Each record carries the measured round trip
(``rpc_round_trip_s``) and the logits bytes per step, so the overhead can be judged.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

from harness.engines import engine_of
from harness.errors import UserError
from harness.runners.base import (
    NativeRunner,
    Phases,
    RunnerFailed,
    binary_provenance,
    check_abi,
    libraries_beside,
)

PAGE_SIZE = 16
KV_HEADROOM = 16
DEVICE_PORT = 9090  # the TVM RPC server's usual port on a real phone
CONNECT_TIMEOUT_S = 90.0  # importing tvm on a phone's Python takes a while
FIX = (
    "build TVM's apps/cpp_rpc with the Android NDK (docs/phones.md: Other runners) and pass"
    " --runner-bin or SLM_BENCH_TVM_RPC"
)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RemoteSession:
    """TVMSession's prefill/decode (harness.engines.tvm.runtime) with the model on an RPC device."""

    def __init__(self, sess, bundle: Path, max_seq_len: int):
        import tvm
        from tvm import relax

        self.sess, self.bundle = sess, Path(bundle)
        self.manifest = json.loads((self.bundle / "manifest.json").read_text())
        self.config = json.loads((self.bundle / "config.json").read_text())
        self.max_seq_len = max_seq_len
        library = self.manifest["library"]
        sess.upload(str(self.bundle / library))
        lib = sess.load_module(library)
        self.gpu = self.manifest["target"] in ("opencl", "android-opencl")
        self.device = sess.cl(0) if self.gpu else sess.cpu(0)
        self.vm = relax.VirtualMachine(lib, self.device)
        order = json.loads((self.bundle / "params" / "order.json").read_text())
        fn = sess.get_function
        self.shape = fn("ffi.Shape")
        self.params = self._upload_weights(order)
        self._add, self._remove = (
            fn("vm.builtin.kv_state_add_sequence"),
            fn("vm.builtin.kv_state_remove_sequence"),
        )
        self._begin, self._end = (
            fn("vm.builtin.kv_state_begin_forward"),
            fn("vm.builtin.kv_state_end_forward"),
        )
        self._embed = self.vm["embed_tokens"]
        s = self.shape
        self.kv = self.vm["create_paged_kv_cache"](
            s(1), s(max_seq_len), s(max_seq_len), s(PAGE_SIZE), s(0)
        )
        self._tensor = tvm.runtime.tensor
        self._open = False
        # decode's input token: one tensor on the phone, rewritten each step (a new one would
        # cost an allocation round trip over RPC every token)
        self._token = tvm.runtime.empty((1,), "int32", self.device)

    def _upload_weights(self, order: list[str]):
        """The weights as one Array of tensors owned by the phone. RPC passes a tensor argument as
        a bare DLTensor whose shape lives only for the call, so an Array built from uploaded
        handles would hold dangling views; the phone's tensor cache copies each one into a tensor
        it owns (the route MLC's RPC tooling takes), and hands them back as an Array."""
        from harness.engines.tvm.weights import load_params

        update = self.sess.get_function("vm.builtin.tensor_cache.update")
        # one tensor at a time: the phone holds at most one extra copy
        for i, name in enumerate(order):
            update(f"param_{i}", load_params(self.bundle / "params", [name], self.device)[0], True)
        params = self.sess.get_function("vm.builtin.param_array_from_cache")("param", len(order))
        self.sess.get_function("vm.builtin.tensor_cache.clear")()  # the Array keeps its tensors
        return params

    def _forward(self, fn: str, inputs, n: int):
        """Run VM function ``fn`` on ``inputs`` (prefill: the prompt's embeddings, decode: the
        token's id, a tensor on the phone) for ``n`` new tokens."""
        self._begin(self.kv, self.shape(0), self.shape(n))
        self.vm.set_input(fn, inputs, self.kv, self.params)
        self.vm.invoke_stateful(fn)
        from harness.engines.tvm.runtime import Logits

        outputs = self.vm.get_outputs(fn)
        self.kv = outputs[-1]
        self._end(self.kv)
        return Logits(outputs)

    def prefill(self, ids):
        if self._open:
            self._remove(self.kv, 0)
        self._add(self.kv, 0)
        self._open = True
        import numpy as np

        ids = self._tensor(np.asarray(ids, dtype=np.int32), self.device)
        return self._forward("prefill", self._embed(ids, self.params), int(ids.shape[0]))

    def decode(self, token: int):
        import numpy as np

        self._token.copyfrom(np.array([token], dtype=np.int32))
        return self._forward("decode", self._token, 1)

    def sync(self) -> None:
        if self.gpu:  # a GPU queue: wait for it before stamping
            self.device.sync()

    @staticmethod
    def greedy(logits) -> int:
        import numpy as np

        if logits.token is not None:  # the phone's argmax: 4 bytes over RPC, not V floats
            return int(logits.token.numpy()[0])
        return int(np.argmax(logits.values.numpy().reshape(-1)))  # copies the logits here


class TvmRpc(NativeRunner):
    name = "tvm-rpc"
    engine = "tvm"

    def setup(self) -> dict:
        from harness.models.tokenizer import tokenizer_for_bundle

        bundle = Path(self.ctx.bundle)
        self.manifest = json.loads((bundle / "manifest.json").read_text())
        if engine_of(self.manifest) != "tvm":
            raise UserError(
                f"--runner tvm-rpc runs TVM bundles, not {self.manifest['engine']} ones; use"
                " --engine tvm (or --runner llama-bench for llama.cpp)"
            )
        config = json.loads((bundle / "config.json").read_text())
        self.tokenizer = tokenizer_for_bundle(bundle, config["vocab_size"])
        self.eos = set(config.get("eos_token_ids") or [])
        self.port = _free_port() if self.target.shares_host_loopback else DEVICE_PORT
        command, provenance = self._server_command()
        # Pinned once, to the first setting's cores (a sweep of core sets needs one run per set).
        self.server_cores = self.placement.cores if self.placement else None
        self.server = self.target.spawn(self.pinned(command) + " 2>&1", self.ctx.log_path)
        self.local_port = self.target.forward(self.port)
        self.rpc = self._connect()
        longest = max(self.ctx.input_lengths.values(), default=0)
        max_seq = min(
            longest + self.ctx.max_new_tokens + KV_HEADROOM, int(config["context_window"])
        )
        self.ctx.log(
            f"tvm-rpc: uploading {self.manifest['library']} and"
            f" {self.manifest.get('weight_bytes', 0) / 1e6:.1f} MB of weights to {self.target.name}"
        )
        self.session = RemoteSession(self.rpc, bundle, max_seq)
        self.rtt_s = self._round_trip()
        provenance.update(
            runner=self.name,
            server_port=self.port,
            library_sha256=self.manifest["files"][self.manifest["library"]],
            rpc_round_trip_s=self.rtt_s,
            bytes_pushed=provenance.get("bytes_pushed", 0),
        )
        return provenance

    def _server_command(self) -> tuple[str, dict]:
        """The user's tvm_rpc binary when given, else the device's Python's rpc_server."""
        q = shlex.quote
        given = self.ctx.runner_bin or os.environ.get("SLM_BENCH_TVM_RPC")
        if given:
            binary = Path(given).expanduser()
            binary = binary / "tvm_rpc" if binary.is_dir() else binary
            if not binary.is_file():
                raise UserError(f"the TVM RPC server {binary} does not exist; {FIX}")
            check_abi(binary, self.target.arch(), self.target.name, FIX)
            libs = libraries_beside(binary)
            folder, sent = self.target.place({binary.name: binary, **libs}, "tvm-rpc")
            cmd = (
                f"cd {q(folder)} && LD_LIBRARY_PATH={q(folder)} exec ./{q(binary.name)} server"
                f" --host=127.0.0.1 --port={self.port} --port-end={self.port + 1}"
            )
            return cmd, {
                **binary_provenance(binary, libs, "--runner-bin / SLM_BENCH_TVM_RPC"),
                "bytes_pushed": sent,
            }
        python = self._device_python()
        import tvm

        # --no-fork: a forked session child inherits a TVM thread
        # pool it cannot use (segfaults on real-size models)
        cmd = (
            f"exec {q(python)} -m tvm.exec.rpc_server --host 127.0.0.1 --port {self.port}"
            f" --port-end {self.port + 1} --no-fork"
        )
        return cmd, {
            "server": f"{python} -m tvm.exec.rpc_server (apache-tvm {tvm.__version__} on the host)"
        }

    def _device_python(self) -> str:
        if self.target.local:
            return sys.executable
        try:
            return self.ctx.device.runner_python()
        except UserError:
            raise UserError(f"{self.target.name} has no TVM RPC server: {FIX}") from None

    def _connect(self):
        """Connect through the forward, retrying while the server starts (it imports TVM first)."""
        from tvm import rpc

        deadline, last = time.monotonic() + CONNECT_TIMEOUT_S, None
        while time.monotonic() < deadline:
            try:
                return rpc.connect("127.0.0.1", self.local_port)
            except Exception as exc:  # noqa: BLE001 - TVM raises several kinds while nobody listens yet
                last = exc
                time.sleep(0.5)
        self.close()
        reason = str(last).strip().splitlines()[-1][:160] if last else "no answer"
        raise UserError(
            f"the TVM RPC server on {self.target.name} did not answer on port {self.port} within"
            f" {CONNECT_TIMEOUT_S:.0f} s ({reason}); {FIX}"
        )

    def _round_trip(self, n: int = 20) -> float:
        """Median time of a trivial remote call: the overhead each RPC call adds to the timings."""
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            self.session.shape(1)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    def apply_threads(self) -> None:
        """The remote TVM pool sized to the placement's threads (and its size read back)."""
        if self.placement is None:
            return
        if self.placement.cores != self.server_cores:
            raise UserError(
                "--runner tvm-rpc pins its RPC server once, to the first --cores set; sweep"
                " --threads within one set, or run each --cores set as its own run"
            )
        if self.threads_seen != self.placement.threads:
            self.rpc.get_function("runtime.config_threadpool")(1, self.placement.threads)
            self.threads_seen = int(self.rpc.get_function("runtime.NumThreads")())

    def measure(self, prompt_id: str, prompt: dict, input_tokens: int) -> Phases:
        import numpy as np

        self.apply_threads()

        ids = np.asarray(self.tokenizer.encode_chat(prompt["text"]), dtype=np.int32)
        if len(ids) + self.ctx.max_new_tokens > self.session.max_seq_len:
            raise RunnerFailed(
                f"{len(ids)} input + {self.ctx.max_new_tokens} output tokens exceed the KV cache of"
                f" {self.session.max_seq_len}; use a shorter L"
            )
        session, out = self.session, []
        try:
            # ---- timed region: RPC calls into the phone's runtime and greedy sampling ----
            t_start = time.perf_counter_ns()
            logits = session.prefill(ids)
            session.sync()
            t_prefill_end = time.perf_counter_ns()
            token = session.greedy(logits)
            t_first = time.perf_counter_ns()
            out.append(token)
            while len(out) < self.ctx.max_new_tokens and not (
                self.ctx.mode == "quality" and token in self.eos
            ):
                token = session.greedy(session.decode(token))
                out.append(token)
            t_last = time.perf_counter_ns()
        except Exception as exc:
            if isinstance(exc, UserError):
                raise
            raise RunnerFailed(
                f"the TVM RPC session with {self.target.name} failed ({type(exc).__name__}:"
                f" {str(exc).strip().splitlines()[-1][:160]}); rerun the same command to resume"
            ) from None
        ns = 1e-9
        return Phases(
            prefill_s=(t_prefill_end - t_start) * ns,
            ttft_s=(t_first - t_start) * ns,
            decode_s=(t_last - t_first) * ns,
            output_tokens=len(out),
            input_tokens=len(ids),
            extra={
                "stamps_ns": {
                    "t_start": t_start,
                    "t_prefill_end": t_prefill_end,
                    "t_first": t_first,
                    "t_last": t_last,
                },
                "rpc_round_trip_s": self.rtt_s,
                # what greedy sampling copies to the host a step: the phone's argmax (CPU
                # builds), else every logit
                "logits_bytes_per_step": (
                    4 if logits.token is not None else int(self.session.config["vocab_size"]) * 4
                ),
                "output_text": self.tokenizer.decode(out),
                "input_tokenizer": getattr(self.tokenizer, "name", None),
            },
        )

    def close(self) -> dict | None:
        summary = super().close()
        for step in (
            lambda: setattr(self, "session", None),
            lambda: setattr(self, "rpc", None),
            lambda: self.target.unforward(self.local_port),
            lambda: self.server.close(),
        ):
            try:
                step()
            except Exception:  # noqa: BLE001,S110 - closing what may already be gone
                pass
        return {**summary, "rpc_round_trip_s": getattr(self, "rtt_s", None)}
