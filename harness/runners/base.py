"""The adapter interface for native runners (llama-bench, mlc_cli_chat, llama_main, TVM over RPC).

A stock phone has no Python, so a native program measures there and the harness parses what it
prints. An adapter has the surface of :class:`harness.devices.base.RunnerProcess` —
``request({"op": "run", "prompt_id", "repeat", "warmup"}) -> record dict`` and
``close() -> summary | None`` — so the measuring loop in ``harness.benchmark`` is the same for
every runner. Each request runs the program once through the device's shell and turns its
numbers into a dict that validates as ``Record``.

Every runner reports its numbers as :class:`Phases`; :func:`record_fields` applies the schema's
definitions (``harness.results.schema``) to them, so ITPS/OTPS/TTFT mean the same thing whichever
runner measured them. Where a runner does not print TTFT it is estimated as prefill + one decode
step and the record says ``ttft_estimated: true``.
"""

from __future__ import annotations

import os
import posixpath
import shlex
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import UserError

REMOTE_RUNNERS = "/data/local/tmp/slm-bench/runners"
# the pinned shell's own ``taskset -p`` line in a runner's output
AFFINITY_MARK = "slm-bench-affinity:"
TICKS_MARK = "slm-bench-ticks:"  # ... and its /proc/$$/stat at the end (its children's CPU ticks)

# ELF e_machine -> the names a device reports for it (uname -m and ro.product.cpu.abi)
ELF_MACHINES = {
    0x03: ("x86", {"i686", "i386", "x86"}),
    0x28: ("arm", {"armv7l", "armv8l", "armeabi-v7a", "armeabi"}),
    0x3E: ("x86_64", {"x86_64"}),
    0xB7: ("aarch64", {"aarch64", "arm64", "arm64-v8a"}),
}


class RunnerFailed(UserError):
    """The native runner ran but did not produce a measurement."""

    # the program's exit status, where it exited (137: killed by signal 9)
    returncode: int | None = None
    # its stderr (else stdout) tail: what tells an out-of-memory kill (harness.memory)
    output: str = ""


@dataclass
class Phases:
    """One request as a runner reports it, in seconds.

    ``prefill_s``: the prompt's forward pass. ``ttft_s``: request start -> first output token.
    ``decode_s``: first output token -> last (``output_tokens - 1`` steps).
    """

    prefill_s: float
    ttft_s: float
    decode_s: float
    output_tokens: int
    ttft_estimated: bool = False
    input_tokens: int | None = None  # as the runner counted them, where it prints them
    extra: dict = field(default_factory=dict)


def phases_from_steps(prefill_s: float, decode_total_s: float, decode_steps: int, **kw) -> Phases:
    """A runner that times prefill and ``decode_steps`` single-token steps but not the first
    token: TTFT is estimated as prefill + one decode step, the first token is charged to that
    step, and the remaining ``decode_steps - 1`` steps are the decode phase."""
    if decode_steps < 1:
        raise RunnerFailed("the runner reported no decode steps; ask for at least 1 output token")
    step = decode_total_s / decode_steps
    return Phases(
        prefill_s=prefill_s,
        ttft_s=prefill_s + step,
        decode_s=decode_total_s - step,
        output_tokens=decode_steps,
        ttft_estimated=True,
        **kw,
    )


def record_fields(phases: Phases, input_tokens: int) -> dict:
    """The measured fields of a status=ok Record, from a runner's phases."""
    out = phases.output_tokens
    return {
        "input_tokens": input_tokens,
        "output_tokens": out,
        "prefill_s": phases.prefill_s,
        "ttft_s": phases.ttft_s,
        "decode_s": phases.decode_s,
        "runtime_s": phases.ttft_s + phases.decode_s,
        "itps": input_tokens / phases.prefill_s if phases.prefill_s > 0 else None,
        "otps": (out - 1) / phases.decode_s if out > 1 and phases.decode_s > 0 else None,
        "ttft_estimated": phases.ttft_estimated,
        **({"runner_input_tokens": phases.input_tokens} if phases.input_tokens is not None else {}),
        **phases.extra,
    }


def elf_machine(path: Path) -> str | None:
    """The architecture an ELF file was built for (None: not an ELF file)."""
    with open(path, "rb") as f:
        head = f.read(20)
    if head[:4] != b"\x7fELF" or len(head) < 20:
        return None
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    return ELF_MACHINES.get(machine, (f"e_machine {machine:#x}", set()))[0]


def check_abi(binary: Path, device_arch: str, where: str, fix: str) -> None:
    """Refuse a runner binary built for another CPU than the device's, before pushing it."""
    built_for = elf_machine(binary)
    if built_for is None:
        raise UserError(f"{binary} is not an ELF executable; {fix}")
    accepted = next((names for arch, names in ELF_MACHINES.values() if arch == built_for), set())
    if device_arch not in accepted and device_arch != built_for:
        raise UserError(
            f"{binary.name} is built for {built_for} but {where} is {device_arch}; {fix}"
        )


def find_binary(name: str, option: str | None, env_var: str, dir_env: str | None, fix: str) -> Path:
    """A runner binary: the --runner-bin option, else
    ``env_var``, else ``dir_env``/name, else PATH."""
    candidates = [(option, "--runner-bin"), (os.environ.get(env_var), env_var)]
    if dir_env and os.environ.get(dir_env):
        candidates.append((str(Path(os.environ[dir_env]) / name), dir_env))
    for value, source in candidates:
        if value:
            path = Path(value).expanduser()
            if path.is_dir():
                path = path / name
            if not path.is_file():
                raise UserError(f"{source} points at {path}, which does not exist; {fix}")
            return path.resolve()
    found = shutil.which(name)
    if found:
        return Path(found).resolve()
    raise UserError(
        f"runner binary {name} not found (looked at --runner-bin,"
        f" {env_var}{', ' + dir_env if dir_env else ''}, PATH); {fix}"
    )


def path_from_env(runner: str, env_var: str, what: str, *, file: bool = False) -> Path:
    """A user-supplied model file or folder a native
    runner needs, named by an environment variable."""
    value = os.environ.get(env_var)
    if not value:
        raise UserError(
            f"runner {runner} needs {what}: set {env_var} (docs/phones.md: Other runners)"
        )
    path = Path(value).expanduser()
    if not (path.is_file() if file else path.exists()):
        raise UserError(
            f"{env_var} points at {path}, which is not {'a file' if file else 'there'}; fix the"
            " path"
        )
    return path.resolve()


def libraries_beside(binary: Path) -> dict[str, Path]:
    """Shared libraries in the binary's folder (a CMake build puts them in bin/ beside it)."""
    return {
        p.name: p
        for p in sorted(binary.parent.iterdir())
        if ".so" in p.name and (p.name.endswith(".so") or ".so." in p.name) and p.is_file()
    }


class Target:
    """Where a native runner executes: the phone (over adb) or this host, behind one surface."""

    def __init__(self, device):
        self.device = device
        self.local = not hasattr(device, "stage")  # LocalDevice runs programs in place
        self.name = "this host" if self.local else f"{device.profile.name} {device.serial}"

    def run(self, cmd: str, timeout: float = 600) -> tuple[int, str, str]:
        if self.local:
            proc = subprocess.run(
                ["/bin/sh", "-c", cmd], check=False, capture_output=True, text=True, timeout=timeout
            )
            return proc.returncode, proc.stdout, proc.stderr
        return self.device.run(cmd, timeout)

    def spawn(self, cmd: str, log_path: Path | None = None):
        """Start a server there, its output appended to ``log_path``; ``close()`` on the returned
        handle ends it. The output is drained as it comes: a server blocked on a full pipe would
        stop answering."""
        if self.local:
            return _LocalProcess(cmd, log_path)
        stream = self.device.spawn(cmd)
        threading.Thread(target=_drain, args=(stream, log_path), daemon=True).start()
        return stream

    def forward(self, remote_port: int) -> int:
        """A host port that reaches ``remote_port`` there (``adb forward``; the same port here)."""
        return remote_port if self.local else self.device.forward(remote_port)

    def unforward(self, local_port: int) -> None:
        if not self.local:
            self.device.unforward(local_port)

    @property
    def shares_host_loopback(self) -> bool:
        """This host, or the emulated phone (its programs
        run here): a free port here is free there."""
        return self.local or getattr(self.device, "props", {}).get("ro.slm_bench.emulated") == "1"

    def arch(self) -> str:
        """What executes there: ``uname -m`` (the emulated phone runs host programs, whatever its
        ro.product.cpu.abi says), else the ABI property."""
        if self.local:
            return os.uname().machine
        code, out, _ = self.run("uname -m", timeout=30)
        if code == 0 and out.strip():
            return out.strip()
        return getattr(self.device, "props", {}).get("ro.product.cpu.abi", "unknown")

    def place(self, files: dict[str, Path], folder: str) -> tuple[str, int]:
        """Make ``name -> file`` available in one folder on the target; returns (folder, bytes
        sent). Symlinked names (libfoo.so.0 -> libfoo.so.0.1) are pushed once and linked on the
        device."""
        if self.local:
            return _local_folder(files, folder), 0
        remote = posixpath.join(REMOTE_RUNNERS, folder)
        real = {name: path for name, path in files.items() if not path.is_symlink()}
        links = {
            name: os.path.basename(os.path.realpath(path))
            for name, path in files.items()
            if path.is_symlink()
        }
        # a link to a file outside the set: push its content
        for name, target in list(links.items()):
            if target not in real:
                real[name] = Path(os.path.realpath(files[name]))
                del links[name]
        sent = self.device.stage(real, remote)
        if links:
            q = shlex.quote
            self.run(
                " && ".join(
                    f"ln -sf {q(t)} {q(posixpath.join(remote, n))}" for n, t in links.items()
                ),
                timeout=60,
            )
        return remote, sent


def _drain(stream, log_path: Path | None) -> None:
    """Copy a device shell stream's output to the log until the stream ends."""
    try:
        with open(log_path or os.devnull, "ab") as log:
            while chunk := stream.conn.recv(65536):
                log.write(chunk)
                log.flush()
    except OSError:
        pass  # closed by close()


class _LocalProcess:
    """A server started on this host in its own process group (it may fork workers)."""

    def __init__(self, cmd: str, log_path: Path | None = None):
        with open(log_path or os.devnull, "ab") as log:
            self.proc = subprocess.Popen(
                ["/bin/sh", "-c", cmd],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def close(self) -> None:
        import signal

        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()


def _local_folder(files: dict[str, Path], folder: str) -> str:
    """On this host the files are used where they are
    if they share a folder, else linked into one."""
    parents = {p.parent for p in files.values()}
    if len(parents) == 1 and all(name == p.name for name, p in files.items()):
        return str(parents.pop())
    from harness.cache import cache_dir

    out = cache_dir("runners", folder)
    for name, path in files.items():
        link = out / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(path.resolve())
    return str(out)


@dataclass
class RunnerContext:
    """What a native runner gets from the benchmark."""

    device: object
    prompts: dict[str, dict]  # prompt id -> the prompt record (text, task, L)
    input_lengths: dict[str, int]  # prompt id -> tokens in the model's tokenizer + chat template
    template: dict  # record fields the host fills (model, device, run_id, ...)
    max_new_tokens: int
    mode: str = "speed"
    model: object = None  # harness.models.sources.base.LoadedModel
    bundle: Path | None = None  # the compiled TVM bundle on this host
    runner_bin: str | None = None  # --runner-bin
    log_path: Path | None = None
    log: object = print


class NativeRunner:
    """Base of every native-runner adapter: one program run per request, parsed into a record."""

    name = ""
    engine = ""  # what the records' ``engine`` field says (llama.cpp, mlc-llm, executorch, tvm)
    # one request on a phone at L=1000 takes tens of seconds; a hang is not a result
    timeout_s = 1800.0

    def __init__(self, ctx: RunnerContext):
        self.ctx, self.target = ctx, Target(ctx.device)
        self.engine_version = ""
        self.requests, self.timed_s = 0, 0.0
        # Set by the benchmark before each setting's requests (harness.devices.placement); what
        # the last request reported back: the pinned shell's mask, the program's thread count.
        self.placement = None
        self.affinity_seen: str | None = None
        self.threads_seen: int | None = None
        self.ticks_seen: int | None = None  # the CPU ticks the last request's program used

    def pinned(self, cmd: str) -> str:
        """``cmd`` (a shell command line) pinned to the placement's cores with the device's
        ``taskset``; the pinned shell first prints its own mask (``taskset -p $$``, read back from
        the kernel), marked so that :meth:`note_affinity` finds it among the program's output."""
        if self.placement is None:
            return cmd
        inner = (
            f'echo "{AFFINITY_MARK} $(taskset -p $$)"; {cmd}; code=$?; '
            f'echo "{TICKS_MARK} $(cat /proc/$$/stat 2>/dev/null)"; exit $code'
        )
        return f"taskset {self.placement.mask} sh -c {shlex.quote(inner)}"

    def note_affinity(self, output: str) -> None:
        """Keep the mask of ``pid N's current affinity mask: 380`` from a pinned run's output."""
        from harness.devices.load import children_ticks

        self.ticks_seen = None
        for line in output.splitlines():
            if line.startswith(AFFINITY_MARK):
                self.affinity_seen = line.rsplit(":", 1)[-1].strip().removeprefix("0x")
            elif line.startswith(TICKS_MARK):
                self.ticks_seen = children_ticks(line[len(TICKS_MARK) :])

    def readback(self, topology) -> dict:
        """The record fields that say what ran (``harness.devices.placement.readback``)."""
        from harness.devices.placement import readback

        status = f"Cpus_allowed:\t{self.affinity_seen}\n" if self.affinity_seen else None
        return readback(self.placement, topology, status, self.threads_seen)

    def setup(self) -> dict:
        """Find, check and place the runner's files; return their provenance for run.json."""
        raise NotImplementedError

    def measure(self, prompt_id: str, prompt: dict, input_tokens: int) -> Phases:
        raise NotImplementedError

    def request(self, command: dict) -> dict:
        pid = command["prompt_id"]
        prompt = self.ctx.prompts[pid]
        base = {
            **self.ctx.template,
            "prompt_id": pid,
            "task": prompt["task"],
            "L": prompt["L"],
            "repeat": int(command.get("repeat", 0)),
            "warmup": bool(command.get("warmup", False)),
            "runner": self.name,
        }
        phases = self.measure(pid, prompt, self.ctx.input_lengths[pid])
        fields = record_fields(phases, self.ctx.input_lengths[pid])
        self.requests += 1
        self.timed_s += fields["runtime_s"]
        return {**base, **fields, "status": "ok"}

    def close(self) -> dict | None:
        return {"runner": self.name, "requests": self.requests, "timed_s": self.timed_s}

    def shell(self, cmd: str, what: str, fix: str) -> str:
        """Run ``cmd`` on the target; a non-zero exit is
        a one-line error with the last stderr line."""
        code, out, err = self.target.run(cmd, timeout=self.timeout_s)
        if self.ctx.log_path is not None and err:
            with open(self.ctx.log_path, "a", encoding="utf-8") as log:
                log.write(err if err.endswith("\n") else err + "\n")
        if code != 0:
            tail = [line for line in (err or out).strip().splitlines() if line.strip()][-1:] or [
                "no output"
            ]
            failed = RunnerFailed(
                f"{what} exited with code {code} on {self.target.name} ({tail[0].strip()[:200]});"
                f" {fix}"
            )
            failed.returncode, failed.output = code, (err or out)[-4000:]
            raise failed
        return out


def binary_provenance(binary: Path, libraries: dict[str, Path], source: str) -> dict:
    """sha256 of a user-supplied runner binary and its libraries, for run.json."""
    from harness.cache import file_sha256

    return {
        "binary": {
            "name": binary.name,
            "path": str(binary),
            "sha256": file_sha256(binary),
            "source": source,
        },
        "libraries": {name: file_sha256(path) for name, path in sorted(libraries.items())},
    }
