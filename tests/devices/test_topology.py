"""Topology from a device's files, core sets and placements (harness.devices.topology/placement)."""

from __future__ import annotations

import pytest

from harness.devices.placement import plan_placements, readback
from harness.devices.topology import (
    build_topology,
    cores_of_mask,
    format_list,
    local_topology,
    mask_of,
    parse_core_set,
    parse_list,
)
from harness.errors import UserError

# An Exynos 2400 as its kernel numbers it: cpu0-3 A520, cpu4-6 A720 (2.6), cpu7-8 A720 (2.9),
# cpu9 X4.
PARTS = ["0xd80"] * 4 + ["0xd81"] * 5 + ["0xd82"]
FREQS = dict(enumerate([1950000] * 4 + [2600000] * 3 + [2900000] * 2 + [3207000]))
CPUINFO = "".join(
    f"processor\t: {i}\nFeatures\t: fp asimd asimddp i8mm\n"
    f"CPU implementer\t: 0x41\nCPU part\t: {p}\n\n"
    for i, p in enumerate(PARTS)
)


@pytest.fixture
def exynos():
    return build_topology("0-9\n", "0-9\n", CPUINFO, FREQS)


def test_clusters_named_by_rank_fastest_first(exynos):
    assert exynos.clusters == {
        "prime": [9],
        "big": [7, 8],
        "mid": [4, 5, 6],
        "little": [0, 1, 2, 3],
    }
    assert exynos.cores[9].part == "Cortex-X4" and exynos.cores[0].part == "Cortex-A520"
    assert "i8mm" in exynos.cores[0].features
    assert exynos.describe().startswith("10 cores: prime 9 (Cortex-X4, 3.21 GHz), big 7-8")


def test_two_and_one_cluster_names():
    two = build_topology("0-3", "0-3", "", {0: 1000, 1: 1000, 2: 2000, 3: 2000})
    assert two.clusters == {"big": [2, 3], "little": [0, 1]}
    assert build_topology("0-1", "0-1", "", {}).clusters == {"big": [0, 1]}


def test_intel_hybrid_uses_the_kernels_p_and_e_lists():
    topo = build_topology("0-3", "0-3", "", {}, hybrid={"big": "0-1", "little": "2-3"})
    assert topo.clusters == {"big": [0, 1], "little": [2, 3]}


def test_masks_as_taskset_takes_them():
    assert mask_of([0, 1, 2, 3]) == "f" and mask_of([7, 8, 9]) == "380"
    assert cores_of_mask("00000000,00000380") == [7, 8, 9]
    assert format_list([0, 1, 2, 3, 7]) == "0-3,7" and parse_list("0-3,7") == [0, 1, 2, 3, 7]


def test_core_sets(exynos):
    assert parse_core_set("little", exynos, "phone") == [0, 1, 2, 3]
    assert parse_core_set("prime+big", exynos, "phone") == [7, 8, 9]
    assert parse_core_set("4-9", exynos, "phone") == [4, 5, 6, 7, 8, 9]
    assert parse_core_set("0-1+9", exynos, "phone") == [0, 1, 9]
    assert parse_core_set("all", exynos, "phone") == list(range(10))


@pytest.mark.parametrize(
    "text, message",
    [
        ("12", "has no core 12 (its cores: 0-9)"),
        ("huge", "has no cluster 'huge' (its clusters: prime, big, mid, little)"),
        ("5-3", "runs backwards"),
    ],
)
def test_bad_core_sets_name_the_fix(exynos, text, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_core_set(text, exynos, "phone")


def test_an_offline_core_is_refused():
    # cpu3: no block
    blocks = "".join(
        f"processor\t: {i}\nCPU implementer\t: 0x41\nCPU part\t: 0xd80\n\n" for i in range(3)
    )
    topo = build_topology("0-3", "0-2", blocks, {})
    assert [(c.online, c.part) for c in topo.cores] == [(True, "Cortex-A520")] * 3 + [(False, "")]
    with pytest.raises(UserError, match="core 3 of phone is offline"):
        parse_core_set("3", topo, "phone")


def test_default_is_every_core_but_the_slowest_cluster_on_a_phone(exynos):
    [default] = plan_placements(None, None, exynos, phone=True, where="phone")
    assert (default.cores, default.threads, default.mask, default.default) == (
        (4, 5, 6, 7, 8, 9),
        6,
        "3f0",
        True,
    )
    assert default.clusters == ("prime", "big", "mid")
    [desktop] = plan_placements(None, None, exynos, phone=False, where="desktop")
    assert desktop.threads == 10


def test_sweep_is_cores_outer_threads_inner_and_flags_oversubscription(exynos):
    plan = plan_placements([1, 4], ["little", "prime+big"], exynos, phone=True, where="phone")
    assert [(p.cores_asked, p.threads, p.mask) for p in plan] == [
        ("little", 1, "f"),
        ("little", 4, "f"),
        ("prime+big", 1, "380"),
        ("prime+big", 4, "380"),
    ]
    assert [p.oversubscribed for p in plan] == [False, False, False, True]
    assert not any(p.default for p in plan)
    with pytest.raises(UserError, match="at least one thread"):
        plan_placements([0], None, exynos, phone=True, where="phone")


def test_readback_records_a_mismatch_instead_of_hiding_it(exynos):
    [little] = plan_placements(None, ["little"], exynos, phone=True, where="phone")
    same = readback(
        little,
        exynos,
        "Name:\tpython\nThreads:\t6\nCpus_allowed:\t00f\nCpus_allowed_list:\t0-3\n",
        4,
    )
    assert same == {
        "threads": 4,
        "os_threads": 6,
        "cpu_mask": "f",
        "cpu_list": "0-3",
        "cpu_clusters": ["little"],
        "placement_mismatch": None,
    }
    moved = readback(little, exynos, "Threads:\t3\nCpus_allowed:\t3f0\n", 1)
    assert moved["cpu_clusters"] == ["prime", "big", "mid"]
    assert (
        moved["placement_mismatch"]
        == "asked cores 0-3, the runner was allowed 4-9; asked 4 threads, the engine ran 1"
    )


def test_this_hosts_topology_covers_the_cores_this_process_may_use():
    import os

    topo = local_topology()
    assert set(topo.online) == os.sched_getaffinity(0)
    assert sum(len(ids) for ids in topo.clusters.values()) == len(topo.cores)
