"""The profile's memory view: where a runner's resident memory goes, stage by stage.

A fresh process (``python -m harness.profiling.memory BUNDLE L STEPS``) does what the runner does
for one request at L, in the same order and with the same TVM library (the runtime only), and
reads its own ``/proc/self/status`` after each stage: the interpreter and numpy, TVM's runtime
library, the tokenizer, the model library, the weights, the KV cache, the first prefill (the
VM's workspace for L tokens), the decode steps. Each stage's share is the growth of VmRSS; the
peak is VmHWM, the number a record's ``peak_mem_bytes`` reports. Beside the measured growth, the
weights and the KV cache show the bytes they should take (the bundle's parameters; pages x
layers x 2 x KV heads x head size), so a gap between the two is visible, not inferred.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# the cache is sized as the runner sizes it (harness.runner imports nothing of TVM's: the stages
# below must see TVM arrive when they import it)
from harness.engines import with_huge_page_malloc
from harness.runner import KV_HEADROOM

from .schema import MemoryStage, MemoryView


def _status_kib() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0])
    return out


def expected_kv_bytes(config: dict, dtype_bytes: int, tokens: int) -> int:
    """What the paged cache allocates for ``tokens`` (whole pages), both K and V."""
    from harness.engines.tvm.runtime import PAGE_SIZE

    pages = -(-tokens // PAGE_SIZE)
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_heads"]
    return (
        pages
        * PAGE_SIZE
        * 2
        * config["num_layers"]
        * config["num_kv_heads"]
        * head_dim
        * (dtype_bytes)
    )


def measure_stages(bundle: Path, length: int, steps: int) -> dict:
    """Run in the fresh process: each stage's /proc/self/status, in order."""
    stages = [("start", _status_kib())]
    import numpy as np

    stages.append(("interpreter + numpy", _status_kib()))
    import harness.engines.tvm  # noqa: F401  (TVM as the runner imports it: torch hidden)

    stages.append(("TVM runtime library", _status_kib()))
    from harness.models.tokenizer import tokenizer_for_bundle

    config = json.loads((bundle / "config.json").read_text())
    tokenizer_for_bundle(bundle, config["vocab_size"])
    stages.append(("tokenizer", _status_kib()))
    import tvm
    from tvm.runtime.vm import VirtualMachine

    from harness.engines.tvm.runtime import TVMSession

    manifest = json.loads((bundle / "manifest.json").read_text())
    VirtualMachine(tvm.runtime.load_module(str(bundle / manifest["library"])), tvm.cpu())
    stages.append(("model library", _status_kib()))
    session = TVMSession(bundle, max_seq_len=length + steps + KV_HEADROOM)
    stages.append(("weights + KV cache", _status_kib()))
    ids = np.random.default_rng(0).integers(20, config["vocab_size"], length, dtype=np.int32)
    token = session.greedy(session.prefill(ids))
    stages.append((f"prefill of {length} tokens (workspace)", _status_kib()))
    for _ in range(steps):
        token = session.greedy(session.decode(token))
    stages.append((f"{steps} decode steps", _status_kib()))
    return {"stages": stages, "kv_tokens": length + steps + KV_HEADROOM}


def memory_view(bundle: Path, L: int, length: int, steps: int) -> MemoryView:
    """Measure the stages at the suite's ``L`` (a prompt of ``length`` tokens) in a fresh process,
    so that nothing the host loaded counts."""
    env = with_huge_page_malloc({**os.environ, "TVM_USE_RUNTIME_LIB": "1"})  # as the runner
    done = subprocess.run(
        [sys.executable, "-m", "harness.profiling.memory", str(bundle), str(length), str(steps)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"memory view at L={length} failed: {tail}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    manifest = json.loads((Path(bundle) / "manifest.json").read_text())
    config = json.loads((Path(bundle) / "config.json").read_text())
    kv_dtype = 2 if manifest["quantization"].startswith("q4f16") else 4
    expected = {
        "weights + KV cache": manifest["weight_bytes"]
        + expected_kv_bytes(config, kv_dtype, data["kv_tokens"])
    }
    rows, previous = [], 0
    for name, status in data["stages"][1:]:
        grown = (status["VmRSS"] - previous) * 1024 if previous else status["VmRSS"] * 1024
        previous = status["VmRSS"]
        rows.append(
            MemoryStage(
                stage=name,
                rss_bytes=status["VmRSS"] * 1024,
                grew_bytes=grown,
                expected_bytes=expected.get(name),
            )
        )
    last = data["stages"][-1][1]
    return MemoryView(
        L=L,
        input_tokens=length,
        stages=rows,
        peak_bytes=last["VmHWM"] * 1024,
        weight_bytes=manifest["weight_bytes"],
        kv_bytes=expected_kv_bytes(config, kv_dtype, data["kv_tokens"]),
    )


def main(argv: list[str]) -> int:
    bundle, length, steps = Path(argv[0]), int(argv[1]), int(argv[2])
    print(json.dumps(measure_stages(bundle, length, steps)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
