"""The Devices table (topology and settings from run.json) and energy per token in the report."""

from __future__ import annotations

import pytest

from harness.report import plots as plots_module
from harness.report.render import write_report
from tests.report.test_noise import record, section, write_run

EMULATED = (
    "emulated from the galaxy-s24 profile: phone core:host CPU 0:0,1:1 (timings are the host's)"
)
TOPOLOGY = {
    "source": EMULATED,
    "clusters": {
        "prime": {"cores": "9", "mask": "200", "max_khz": 3207000, "part": "Cortex-X4"},
        "big": {"cores": "7-8", "mask": "180", "max_khz": 2900000, "part": "Cortex-A720"},
        "mid": {"cores": "4-6", "mask": "70", "max_khz": 2600000, "part": "Cortex-A720"},
        "little": {"cores": "0-3", "mask": "f", "max_khz": 1950000, "part": "Cortex-A520"},
    },
    "online": "0-9",
    "cores": 10,
    "features": ["asimddp", "i8mm"],
}
PLACEMENTS = [
    {
        "threads": 1,
        "cores": "7-8",
        "cpu_mask": "180",
        "clusters": ["big"],
        "threads_asked": 1,
        "cores_asked": "big",
        "placement_default": False,
        "oversubscribed": False,
    },
    {
        "threads": 6,
        "cores": "4-9",
        "cpu_mask": "3f0",
        "clusters": ["prime", "big", "mid"],
        "threads_asked": None,
        "cores_asked": None,
        "placement_default": True,
        "oversubscribed": False,
    },
]


@pytest.fixture(autouse=True)
def no_plots(monkeypatch):
    # plots: test_plots
    monkeypatch.setattr(plots_module, "write_plots", lambda *args, **kwargs: [])


def markdown(tmp_path, runs) -> str:
    return write_report(runs, tmp_path / "report").markdown.read_text()


def test_devices_table_shows_clusters_source_and_settings(tmp_path):
    run = write_run(
        tmp_path / "phone",
        [record(200, 20.0, i) for i in range(3)],
        topology=TOPOLOGY,
        placements=PLACEMENTS,
        idle_power_w=0.85,
    )
    devices = section(markdown(tmp_path, [run]), "Devices", "Overview")
    assert (
        "prime 9 (Cortex-X4, 3.21 GHz), big 7-8 (Cortex-A720, 2.90 GHz), "
        "mid 4-6 (Cortex-A720, 2.60 GHz), little 0-3 (Cortex-A520, 1.95 GHz)"
    ) in devices
    assert EMULATED in devices
    assert "1 thread · big (7-8); 6 threads · prime+big+mid (4-9) (default)" in devices
    assert "| idle power (W) |" in devices and "| 0.85 |" in devices


def test_runs_of_one_device_share_a_row_and_offline_cores_show(tmp_path):
    topology = {**TOPOLOGY, "source": "read from the device", "online": "0-7"}
    runs = [
        write_run(
            tmp_path / name,
            [record(200, 20.0, i) for i in range(3)],
            topology=topology,
            placements=PLACEMENTS[1:],
        )
        for name in ("a", "b")
    ]
    devices = section(markdown(tmp_path, runs), "Devices", "Overview")
    rows = [line for line in devices.splitlines() if line.startswith("| a")]
    assert len(rows) == 1 and rows[0].startswith("| a, b |")
    assert "; online: 0-7" in rows[0] and "idle power" not in devices  # no gauge: no column


def test_old_run_json_adds_no_devices_table(tmp_path):
    md = markdown(tmp_path, [write_run(tmp_path / "old", [record(200, 20.0, i) for i in range(3)])])
    assert "## Devices" not in md


def test_energy_columns_appear_only_with_energy(tmp_path):
    energy = dict(
        energy_j=1.0,
        energy_j_per_token=0.012,
        idle_power_w=0.8,
        energy_j_above_idle=0.5,
        energy_j_per_token_above_idle=0.008,
    )
    run = write_run(tmp_path / "gauge", [record(200, 20.0, i, **energy) for i in range(3)])
    overview = section(markdown(tmp_path, [run]), "Overview", "Per task")
    assert "| energy (mJ/token) | energy above idle (mJ/token) |" in overview
    # J -> mJ, medians of the three requests
    assert overview.splitlines()[-2].endswith("| 12 | 8 |")
    assert "per processed (input + output) token" in overview
    plain = write_run(tmp_path / "plain", [record(200, 20.0, i) for i in range(3)])
    md = write_report([plain], tmp_path / "plain-report").markdown.read_text()
    assert "energy" not in section(md, "Overview", "Plots")


def test_charging_run_says_its_energy_is_meaningless(tmp_path):
    run = write_run(
        tmp_path / "plugged",
        [record(200, 20.0, i, energy_j_per_token=0.01) for i in range(3)],
        charging=True,
    )
    problems = section(markdown(tmp_path, [run]), "Problems", "Runs")
    assert "plugged: the device was charging: this run's energy figures are meaningless" in problems
    unplugged = write_run(
        tmp_path / "unplugged", [record(200, 20.0, i) for i in range(3)], charging=False
    )
    md = write_report([unplugged], tmp_path / "r2").markdown.read_text()
    assert "charging" not in section(md, "Problems", "Runs")
