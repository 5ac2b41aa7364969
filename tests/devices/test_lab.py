"""A phone lab on this machine: two real adb servers on two loopback ports, two emulated Galaxy
S24s behind each, reached as ``adb:SERIAL@HOST:PORT`` and as ``pool:galaxy-s24``."""

from __future__ import annotations

import json
import threading
import time

import pandas as pd
import pytest

from harness.devices import open_device
from harness.devices.emulated.adbd import EmulatedDevice, load_profile
from harness.devices.lab import expand_pool, parse_device, survey
from harness.errors import UserError
from harness.grid import GridSpec, run_grid
from harness.report import plots as plots_module
from harness.report.render import write_report
from harness.results.journal import load

from .conftest import ADB, TIME_SCALE, adb, free_port, wait_online

pytestmark = pytest.mark.skipif(
    ADB is None, reason="Debian's adb is not installed (apt install adb)"
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """{server "127.0.0.1:PORT": [phones]}: two adb servers, two emulated S24s on each."""
    servers: dict[str, list[EmulatedDevice]] = {}
    for _ in range(2):
        port = free_port()
        assert adb(port, "start-server").returncode == 0
        phones = []
        for _ in range(2):
            phone = EmulatedDevice(
                load_profile("galaxy-s24"), tmp_path_factory.mktemp("phone"), time_scale=TIME_SCALE
            )
            phone.start()
            wait_online(port, phone.serial)
            phones.append(phone)
        servers[f"127.0.0.1:{port}"] = phones
    yield servers
    for server, phones in servers.items():
        for phone in phones:
            phone.stop()
        adb(int(server.rsplit(":", 1)[1]), "kill-server")


def test_device_specs_name_their_adb_server():
    assert parse_device("adb:127.0.0.1:5600@10.0.0.2:5037").serial == "127.0.0.1:5600"
    assert parse_device("adb:127.0.0.1:5600@10.0.0.2:5037").server == "10.0.0.2:5037"
    assert parse_device("adb:R5CX1234").server is None
    assert parse_device("adb:R5CX1234@h:5037").text == "adb:R5CX1234@h:5037"
    for bad, says in [
        ("adb:@h:5037", "names no serial"),
        ("adb:X@nohost", "must be HOST:PORT"),
        ("usb:X", "unknown device"),
    ]:
        with pytest.raises(UserError, match=says):
            parse_device(bad)
    with pytest.raises(UserError, match="is a pool of phones"):
        open_device("pool:galaxy-s24")


def test_a_pool_covers_the_phones_of_every_server(lab):
    servers = list(lab)
    attached = survey(servers)
    assert {(a.serial, a.server) for a in attached} == {
        (p.serial, s) for s, phones in lab.items() for p in phones
    }
    assert {a.profile for a in attached} == {"galaxy-s24"}
    assert expand_pool("pool:galaxy-s24", servers) == [a.spec for a in attached]
    # one phone through its own server, by the spelling a grid file uses
    phone = lab[servers[1]][0]
    device = open_device(f"adb:{phone.serial}@{servers[1]}")
    assert device.info().model == "SM-S921B"
    assert device.lock_name == f"{phone.serial}@{servers[1]}"


def test_devices_lists_every_servers_phones_by_the_name_device_takes(lab):
    from click.testing import CliRunner

    from harness.cli import cli

    servers = list(lab)
    args = ["devices", "--adb-server", servers[0], "--adb-server", servers[1], "--json"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = {r["device"]: r for r in json.loads(result.output)}
    assert set(rows) == {"local"} | {f"adb:{p.serial}@{s}" for s, ps in lab.items() for p in ps}
    assert {r["profile"] for name, r in rows.items() if name != "local"} == {"galaxy-s24"}


def test_lab_mistakes_are_one_line_errors(lab):
    servers = list(lab)
    with pytest.raises(UserError, match="matches no reachable phone .* attach one"):
        expand_pool("pool:galaxy-s24-snapdragon", servers)
    with pytest.raises(UserError, match="unknown device profile|no device profile"):
        expand_pool("pool:no-such-phone", servers)
    dead = f"127.0.0.1:{free_port()}"
    with pytest.raises(UserError, match=f"adb server at {dead} does not answer"):
        survey([servers[0], dead])
    # one phone connected to both servers: two grids would drive it at once
    phone, other = lab[servers[0]][0], int(servers[1].rsplit(":", 1)[1])
    wait_online(other, phone.serial)
    try:
        with pytest.raises(UserError, match="attached to two adb servers"):
            survey(servers)
    finally:
        adb(other, "disconnect", phone.serial)


@pytest.mark.slow
def test_queued_cells_bundles_are_compiled_while_the_first_cell_measures(
    lab, tmp_path, monkeypatch
):
    """One phone, three cells, an empty bundle cache: the second and third bundles are built
    ahead, so their cells find them."""
    monkeypatch.setenv("SLM_BENCH_CACHE", str(tmp_path / "cache"))
    server, phones = next(iter(lab.items()))
    grid = GridSpec(
        models=["dummy:tiny-llama", "dummy:tiny-qwen2", "dummy:tiny-slimlm"],
        devices=[f"adb:{phones[0].serial}@{server}"],
        target="llvm",
        tasks=["summ"],
        lengths=[200],
        repeats=1,
        warmup=0,
        max_new_tokens=4,
        idle_s=0,
    )
    lines: list[str] = []
    run_dirs = run_grid(grid, tmp_path / "grid", log=lines.append)
    assert run_dirs.failed == 0, "\n".join(lines)
    ready = [line for line in lines if line.startswith("compile ahead:")]
    assert ready == [
        "compile ahead: dummy:tiny-qwen2 q4f16_1 for llvm is ready",
        "compile ahead: dummy:tiny-slimlm q4f16_1 for llvm is ready",
    ], "\n".join(lines)
    # each later cell found its bundle built (or waited for the build in progress)
    hits = [line for line in lines if "bundle cache hit" in line or "built meanwhile" in line]
    assert len(hits) >= 2, "\n".join(lines)


@pytest.mark.slow
def test_a_grid_over_the_pool_keeps_every_phone_busy_and_survives_a_lost_one(
    lab, tmp_path, monkeypatch
):
    """Three tiny models on a pool of four phones: the cells run at once (their records
    interleave in time); one phone stopped mid-cell hands its cell to another, nothing lost. The
    grid's report has one row per device model and each phone's own rows beside them."""
    servers = list(lab)
    grid = GridSpec(
        models=["dummy:tiny-llama", "dummy:tiny-qwen2", "dummy:tiny-slimlm"],
        devices=["pool:galaxy-s24"],
        adb_servers=servers,
        target="llvm",
        tasks=["summ", "qa"],
        lengths=[200, 400],
        repeats=2,
        warmup=1,
        max_new_tokens=4,
        idle_s=0,
    )
    phones = {p.serial: (p, server) for server, ps in lab.items() for p in ps}
    lines: list[str] = []
    victim: list[tuple[EmulatedDevice, str]] = []

    def stop_the_first_to_measure():
        """Stop the phone that journals the grid's first measured request, mid-cell."""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            for records in (tmp_path / "grid").glob("*/records.jsonl"):
                for line in records.read_text().splitlines():
                    record = json.loads(line)
                    if not record["warmup"] and record["status"] == "ok":
                        phone, server = phones[record["device"]["serial"]]
                        phone.stop()
                        victim.append((phone, server))
                        return
            time.sleep(0.02)

    watcher = threading.Thread(target=stop_the_first_to_measure, daemon=True)
    watcher.start()
    run_dirs = run_grid(grid, tmp_path / "grid", log=lines.append)
    watcher.join(timeout=1)
    assert run_dirs.failed == 0, "\n".join(lines)
    spans, serials, by_victim = [], set(), 0
    for run_dir in run_dirs:
        records, problems = load(run_dir)
        measured = [r for r in records if not r.warmup and r.status == "ok"]
        # every prompt x repeat measured once, whichever phone did it
        assert not problems and len({(r.prompt_id, r.repeat) for r in measured}) == 2 * 2 * 2
        serials |= {r.device.serial for r in measured}
        by_victim += sum(r.device.serial == victim[0][0].serial for r in measured)
        spans.append((min(r.timestamp for r in records), max(r.timestamp for r in records)))
    # the cells ran at once: each started before another had finished
    spans.sort()
    assert all(spans[i + 1][0] < spans[i][1] for i in range(len(spans) - 1)), spans
    assert len(serials) == 4  # the victim's cell went on on the fourth phone
    # the victim measured part of its cell before it went; those records count, the rest was
    # measured elsewhere
    (phone, server), *_ = victim
    assert by_victim >= 1
    assert any(f"adb:{phone.serial}@{server} is gone" in line for line in lines), "\n".join(lines)
    # the report (as `slm-bench grid` renders it, without plots)
    monkeypatch.setattr(plots_module, "write_plots", lambda *args, **kwargs: [])
    outputs = write_report(list(run_dirs), tmp_path / "report")
    md = outputs.markdown.read_text()
    assert "## Unit-to-unit variation" in md
    units = pd.read_csv(outputs.units_csv, dtype={"serial": str})
    assert set(units["serial"]) == serials and units["device"].nunique() == 1
    assert set(outputs.summary["device"]) == set(units["device"])  # one device model


@pytest.mark.slow
def test_a_host_whose_adb_server_dies_hands_its_cells_to_the_other_host(tmp_path):
    """Two hosts with one phone each; one host's adb server is killed while its phone measures:
    that cell finishes on the other host's phone, nothing lost."""
    hosts = []
    for i in range(2):
        port = free_port()
        assert adb(port, "start-server").returncode == 0
        phone = EmulatedDevice(load_profile("galaxy-s24"), tmp_path / f"phone{i}")
        phone.start()
        wait_online(port, phone.serial)
        hosts.append((port, phone))
    (port_a, phone_a), (port_b, phone_b) = hosts
    grid = GridSpec(
        models=["dummy:tiny-llama", "dummy:tiny-qwen2"],
        devices=["pool:galaxy-s24"],
        adb_servers=[f"127.0.0.1:{port_a}", f"127.0.0.1:{port_b}"],
        target="llvm",
        tasks=["summ", "qa"],
        lengths=[200, 400],
        repeats=2,
        warmup=1,
        max_new_tokens=4,
        idle_s=0,
    )
    lines: list[str] = []

    def kill_host_b_once_its_phone_measures():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            for records in (tmp_path / "grid").glob("*/records.jsonl"):
                for line in records.read_text().splitlines():
                    record = json.loads(line)
                    ok = not record["warmup"] and record["status"] == "ok"
                    if ok and record["device"]["serial"] == phone_b.serial:
                        adb(port_b, "kill-server")
                        return
            time.sleep(0.02)

    watcher = threading.Thread(target=kill_host_b_once_its_phone_measures, daemon=True)
    watcher.start()
    try:
        run_dirs = run_grid(grid, tmp_path / "grid", log=lines.append)
    finally:
        for port, phone in hosts:
            phone.stop()
            adb(port, "kill-server")
    assert run_dirs.failed == 0, "\n".join(lines)
    assert any(f"adb:{phone_b.serial}@127.0.0.1:{port_b} is gone" in x for x in lines)
    for run_dir in run_dirs:
        records, _ = load(run_dir)
        measured = {(r.prompt_id, r.repeat) for r in records if not r.warmup and r.status == "ok"}
        assert len(measured) == 2 * 2 * 2
