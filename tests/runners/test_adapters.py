"""The adapters' set-up on this host (no phone): where they look for their files, the one-line
errors when something is missing, and llama-bench run by its adapter here, record by record."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from harness.devices.topology import local_topology
from harness.errors import UserError
from harness.results.schema import Record
from harness.runners.base import RunnerContext
from harness.runners.executorch import ExecuTorch
from harness.runners.llama_cpp import LlamaBench, LlamaCli
from harness.runners.mlc_cli import MlcCli

from .test_parsers import llama_bin

HOST = types.SimpleNamespace(serial="local")  # a device without adb: the adapter runs programs here


def one_thread():
    """One thread on every core of this host: what the benchmark hands an adapter."""
    from harness.devices.placement import plan_placements

    return plan_placements([1], None, local_topology(), phone=False, where="this host")[0]


def context(tmp_path: Path, **kw) -> RunnerContext:
    prompts = {"d01-qa-L200": {"text": "What is the capital of France?", "task": "qa", "L": 200}}
    defaults = {
        "device": HOST,
        "prompts": prompts,
        "input_lengths": {"d01-qa-L200": 16},
        "template": {
            "model": "smollm2-135m-instruct",
            "quantization": "q4f16_1",
            "engine": "llama.cpp",
        },
        "max_new_tokens": 3,
        "log_path": tmp_path / "runner.log",
        "log": lambda *_: None,
    }
    return RunnerContext(**{**defaults, **kw})


@pytest.fixture
def no_runner_env(monkeypatch, tmp_path):
    for var in (
        "SLM_BENCH_LLAMA_BIN_DIR",
        "SLM_BENCH_LLAMA_BENCH",
        "SLM_BENCH_LLAMA_CLI",
        "SLM_BENCH_MLC_CLI",
        "SLM_BENCH_MLC_MODEL",
        "SLM_BENCH_MLC_MODEL_LIB",
        "SLM_BENCH_EXECUTORCH_MAIN",
        "SLM_BENCH_EXECUTORCH_PTE",
        "SLM_BENCH_EXECUTORCH_TOKENIZER",
        "SLM_BENCH_TVM_RPC",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))


def test_missing_runner_binaries_name_their_variables(tmp_path, no_runner_env, monkeypatch):
    with pytest.raises(
        UserError,
        match=(
            r"runner binary mlc_cli_chat not found \(looked at --runner-bin, "
            r"SLM_BENCH_MLC_CLI, PATH\); download Qualcomm's mlc_llm-utils"
        ),
    ):
        MlcCli(context(tmp_path)).setup()
    with pytest.raises(
        UserError,
        match=(
            r"runner binary llama_main not found .*SLM_BENCH_EXECUTORCH_MAIN.*; "
            r"build ExecuTorch's llama_main for android-arm64"
        ),
    ):
        ExecuTorch(context(tmp_path)).setup()
    from harness.kits import llamacpp

    def no_cmake(arch, log=print, announce=None):
        raise UserError(
            "building llama.cpp needs cmake, which is not "
            "on PATH; install it: apt-get install -y cmake"
        )

    # nothing configured: the kit is tried last
    monkeypatch.setattr(llamacpp, "build_llamacpp", no_cmake)
    with pytest.raises(
        UserError,
        match=(
            r"runner binary llama-completion not found "
            r".*SLM_BENCH_LLAMA_CLI, SLM_BENCH_LLAMA_BIN_DIR, PATH\) "
            r"and the harness could not build it: building llama.cpp needs cmake"
        ),
    ):
        LlamaCli(context(tmp_path)).setup()


def fake_kit(tmp_path: Path, machine: int) -> Path:
    """A kit's bin dir whose tools are ELF headers for ``machine`` (enough for the ABI check)."""
    import sys

    bin_dir = tmp_path / f"llamacpp-{machine:x}-0123" / "bin"
    bin_dir.mkdir(parents=True)
    head = Path(sys.executable).resolve().read_bytes()[:64]
    for tool in ("llama-bench", "llama-completion"):
        (bin_dir / tool).write_bytes(head[:18] + machine.to_bytes(2, "little") + head[20:])
    return bin_dir


def test_without_a_configured_binary_the_runners_use_the_harness_built_kit(
    tmp_path, no_runner_env, monkeypatch
):
    import sys

    from harness.kits import llamacpp
    from harness.runners.base import Target

    built = []
    kits = {"aarch64": fake_kit(tmp_path, 0xB7), "x86_64": fake_kit(tmp_path, 0x3E)}

    def build(arch, log=print, announce=None):  # not built yet: says why it builds, then builds
        log(announce)
        built.append(arch)
        return kits[arch]

    monkeypatch.setattr(llamacpp, "build_llamacpp", build)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    model = types.SimpleNamespace(name="m", source=str(gguf))
    logs = []
    # an ARM64 phone: the static aarch64 kit (a llama.cpp on this host's PATH would be for this
    # host)
    monkeypatch.setattr(Target, "arch", lambda self: "aarch64")
    provenance = LlamaBench(context(tmp_path, model=model, log=logs.append)).setup()
    assert built == ["aarch64"] and provenance["binary"]["path"] == str(
        kits["aarch64"] / "llama-bench"
    )
    assert (
        provenance["binary"]["source"]
        == f"harness-built llama.cpp {llamacpp.VERSION} static aarch64"
    )
    assert "building llama.cpp for aarch64 once" in logs[0]
    # an x86_64 device (the desktop, the emulated x86 phone): the host kit, llama-completion for
    # llama-cli
    monkeypatch.setattr(Target, "arch", lambda self: "x86_64")
    binary, source = LlamaCli(context(tmp_path, model=model))._find("x86_64")
    assert (
        built[-1] == "x86_64"
        and binary == kits["x86_64"] / "llama-completion"
        and source.endswith("shared x86_64")
    )
    assert LlamaBench(context(tmp_path, model=model)).setup()["binary"]["path"] == str(
        kits["x86_64"] / "llama-bench"
    )
    # --runner-bin overrides everything: no kit is built
    provenance = LlamaBench(
        context(tmp_path, model=model, runner_bin=str(Path(sys.executable).resolve()))
    ).setup()
    assert provenance["binary"]["source"] == "--runner-bin / env / PATH" and len(built) == 3


def test_models_the_native_runners_need_are_asked_for(tmp_path, no_runner_env, monkeypatch):
    import sys

    host_elf = str(Path(sys.executable).resolve())  # any ELF for this CPU passes the ABI check
    monkeypatch.setenv("SLM_BENCH_MLC_CLI", host_elf)
    with pytest.raises(
        UserError, match=r"runner mlc-cli needs the MLC model folder .*: set SLM_BENCH_MLC_MODEL"
    ):
        MlcCli(context(tmp_path)).setup()
    monkeypatch.setenv("SLM_BENCH_EXECUTORCH_MAIN", host_elf)
    with pytest.raises(
        UserError,
        match=r"runner executorch needs the exported .pte model: set SLM_BENCH_EXECUTORCH_PTE",
    ):
        ExecuTorch(context(tmp_path)).setup()
    monkeypatch.setenv("SLM_BENCH_LLAMA_BENCH", host_elf)
    not_gguf = types.SimpleNamespace(name="dummy:tiny-llama", source="dummy weights, seed=0")
    with pytest.raises(
        UserError,
        match=(
            r"the llama.cpp runners need a GGUF file and dummy:tiny-llama "
            r"did not come from one; add --engine llama.cpp"
        ),
    ):
        LlamaBench(context(tmp_path, model=not_gguf)).setup()
    with pytest.raises(
        UserError, match=r"llama-bench measures speed .* use --runner llama-cli for --mode quality"
    ):
        LlamaBench(context(tmp_path, model=not_gguf, mode="quality")).setup()


def test_llama_bench_adapter_on_this_host(tmp_path, monkeypatch):
    bench = llama_bin("llama-bench")
    if bench is None:
        pytest.skip(
            "llama-bench is not built here (slm-bench kit llama.cpp "
            "--arch x86_64, or set SLM_BENCH_LLAMA_BIN_DIR)"
        )
    from harness.models.resolve import resolve_model

    monkeypatch.setenv("SLM_BENCH_LLAMA_BENCH", str(bench))
    runner = LlamaBench(
        context(tmp_path, model=resolve_model("smollm2-135m-instruct", log=lambda *_: None))
    )
    runner.placement = one_thread()  # this host's 2 cores are shared
    provenance = runner.setup()
    # used in place
    assert provenance["binary"]["path"] == str(bench.resolve()) and provenance["bytes_pushed"] == 0
    raw = runner.request({"op": "run", "prompt_id": "d01-qa-L200", "repeat": 0, "warmup": False})
    rec = Record.model_validate(raw)
    assert (rec.runner, rec.input_tokens, rec.runner_input_tokens, rec.output_tokens) == (
        "llama-bench",
        16,
        16,
        3,
    )
    assert rec.ttft_estimated and rec.itps == pytest.approx(16 / rec.prefill_s)
    assert (
        rec.runner_stats["n_threads"] == 1
        and rec.runner_stats["cpu_mask"] == f"0x{runner.placement.mask}"
    )
    # read back from the pinned shell (taskset -p $$) and llama-bench's own report
    ran = runner.readback(local_topology())
    assert (ran["threads"], ran["cpu_mask"], ran["placement_mismatch"]) == (
        1,
        runner.placement.mask,
        None,
    )
    # llama-bench's own CPU time, from its pinned shell's /proc/$$/stat
    assert runner.ticks_seen > 0
    assert runner.close() == {"runner": "llama-bench", "requests": 1, "timed_s": rec.runtime_s}


def test_llama_bench_runs_the_llama_cpp_engines_q4_0_bundle(tmp_path, monkeypatch):
    """A model that is not a GGUF file (here dummy weights) reaches llama-bench as the GGUF Q4_0
    that ``--engine llama.cpp`` builds."""
    bench = llama_bin("llama-bench")
    if bench is None:
        pytest.skip(
            "llama-bench is not built here (slm-bench kit llama.cpp "
            "--arch x86_64, or set SLM_BENCH_LLAMA_BIN_DIR)"
        )
    from tests.engines.test_llamacpp import WHY_NOT

    if WHY_NOT:
        pytest.skip(WHY_NOT)
    from harness.engines import get_engine
    from harness.models.resolve import resolve_model
    from harness.quantization import get_preset

    model = resolve_model("dummy:tiny-llama", log=lambda *_: None)
    bundle = get_engine("llama.cpp").build(
        model, get_preset("q4f16_1"), "llvm", log=lambda *_: None
    )
    monkeypatch.setenv("SLM_BENCH_LLAMA_BENCH", str(bench))
    runner = LlamaBench(context(tmp_path, model=model, bundle=bundle))
    runner.placement = one_thread()
    assert runner.setup()["model_file"] == str(bundle / "model.gguf")
    rec = Record.model_validate(
        runner.request({"op": "run", "prompt_id": "d01-qa-L200", "repeat": 0, "warmup": False})
    )
    assert rec.runner_stats["model_type"].endswith("Q4_0") and rec.output_tokens == 3
    from harness.runners.tvm_rpc import TvmRpc

    with pytest.raises(
        UserError, match=r"--runner tvm-rpc runs TVM bundles, not llama.cpp ones; use --engine tvm"
    ):
        TvmRpc(context(tmp_path, model=model, bundle=bundle)).setup()


def test_an_openmp_build_is_detected_the_harness_built_one_is_not(tmp_path):
    """llama.cpp threaded by OpenMP ignores its -C mask: the adapter says so (run.json: openmp)."""
    import shutil
    import subprocess

    from harness.runners.llama_cpp import uses_openmp

    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("no C compiler (apt-get install -y gcc)")
    src = tmp_path / "omp.c"
    src.write_text(
        '#include <stdio.h>\nint main(void) {\n#pragma omp parallel\n puts("x");\n return 0;\n}\n'
    )
    subprocess.run([gcc, "-fopenmp", str(src), "-o", str(tmp_path / "omp")], check=True)
    subprocess.run([gcc, str(src), "-o", str(tmp_path / "plain")], check=True)
    assert uses_openmp([tmp_path / "omp"]) and not uses_openmp([tmp_path / "plain"])
    bench = llama_bin("llama-bench")
    if bench is not None:
        # the harness builds without OpenMP
        assert not uses_openmp([bench, *bench.parent.glob("lib*.so*")])


def test_a_runner_looks_the_kit_up_once_per_setup(tmp_path, no_runner_env, monkeypatch):
    """The kit's path costs a compiler run and a hash: a setup finding a built kit computes it
    once, and says nothing about building."""
    from harness.kits import llamacpp
    from harness.runners.base import Target

    bin_dir = fake_kit(tmp_path, 0xB7)
    (bin_dir.parent / "kit.json").write_text("{}")
    calls = []
    monkeypatch.setattr(
        llamacpp, "kit_path", lambda arch: calls.append(arch) or (bin_dir.parent, [], ("cc", "c++"))
    )
    monkeypatch.setattr(Target, "arch", lambda self: "aarch64")
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    model = types.SimpleNamespace(name="m", source=str(gguf))
    logs = []
    provenance = LlamaBench(context(tmp_path, model=model, log=logs.append)).setup()
    assert provenance["binary"]["path"] == str(bin_dir / "llama-bench")
    assert calls == ["aarch64"] and not any("building" in line for line in logs)
