"""The one CPU count (zoo.hardware.usable_cpu_count): affinity, then the cgroup CPU quota, read from fake
cgroup trees (v2, v1, unlimited, nested) built under tmp_path, and every user of a CPU count on it."""

import ast
import math
import os
import pathlib

import pytest

from zoo import hardware

ROOT = pathlib.Path(__file__).resolve().parents[1]
AFFINITY = len(os.sched_getaffinity(0))


def cgroup_tree(root: pathlib.Path, proc_self_cgroup: str, files: dict[str, str]) -> pathlib.Path:
    """A fake /proc/self/cgroup and /sys/fs/cgroup under `root`: `files` maps paths below
    sys/fs/cgroup to their text."""
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text(proc_self_cgroup)
    for name, text in files.items():
        path = root / "sys/fs/cgroup" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    "proc_self_cgroup, files, quota",
    [
        # v2 in a container (its own cgroup namespace): the limit at the mount's root
        ("0::/\n", {"cpu.max": "200000 100000\n"}, 2.0),
        ("0::/\n", {"cpu.max": "max 100000\n"}, None),
        ("0::/\n", {"cpu.max": "150000 100000\n"}, 1.5),
        # v2 nested: the pod's limit on a parent, a looser one on the container; the smallest holds
        (
            "0::/kubepods/pod1/ctr\n",
            {
                "cpu.max": "max 100000\n",
                "kubepods/pod1/cpu.max": "50000 100000\n",
                "kubepods/pod1/ctr/cpu.max": "400000 100000\n",
            },
            0.5,
        ),
        # v2, the named cgroup not visible (no cgroup namespace): its mount's root still says the limit
        ("0::/docker/abc\n", {"cpu.max": "300000 100000\n"}, 3.0),
        # v1: cpu,cpuacct with the quota and its period; -1 is no limit
        (
            "12:memory:/x\n4:cpu,cpuacct:/docker/abc\n",
            {
                "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "250000\n",
                "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
            },
            2.5,
        ),
        (
            "4:cpu,cpuacct:/\n",
            {"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
            None,
        ),
        # hybrid (v1 controllers beside v2's unified mount, as on this machine): v2's limit counts too
        ("1:cpu:/\n0::/svc\n", {"unified/svc/cpu.max": "100000 100000\n"}, 1.0),
        # no cgroup files at all, or only other controllers
        ("0::/\n", {}, None),
        ("5:memory:/x\n", {"memory/x/memory.limit_in_bytes": "1000\n"}, None),
    ],
)
def test_cgroup_quota_from_a_fake_tree(tmp_path, proc_self_cgroup, files, quota):
    root = cgroup_tree(tmp_path, proc_self_cgroup, files)
    assert hardware.cgroup_cpu_quota(root) == quota
    # the count: the affinity capped by the quota, rounded up, at least 1
    expected = AFFINITY if quota is None else max(1, min(AFFINITY, math.ceil(quota)))
    assert hardware.usable_cpu_count(root) == expected


def test_a_quota_caps_the_count_and_a_fraction_rounds_up(tmp_path):
    root = cgroup_tree(tmp_path, "0::/\n", {"cpu.max": "10000 100000\n"})  # a tenth of a CPU
    assert hardware.usable_cpu_count(root) == 1
    big = cgroup_tree(tmp_path / "big", "0::/\n", {"cpu.max": f"{100000 * (AFFINITY + 8)} 100000\n"})
    assert hardware.usable_cpu_count(big) == AFFINITY  # a quota above the affinity does not add CPUs


def test_no_proc_is_no_quota(tmp_path):
    assert hardware.cgroup_cpu_quota(tmp_path) is None
    assert hardware.usable_cpu_count(tmp_path) == AFFINITY


def test_this_machine():
    assert 1 <= hardware.usable_cpu_count() <= AFFINITY
    assert hardware.cpu().cores == hardware.usable_cpu_count()


def test_nothing_else_counts_cpus():
    """os.cpu_count() is read by zoo.hardware alone (where the affinity cannot be read; and by zoo.threads
    for the machine-wide load average's share): every other count is usable_cpu_count."""
    allowed = {"zoo/hardware.py", "zoo/threads.py"}
    found = []
    for package in ("zoo", "infer", "export", "serve"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr == "cpu_count":
                    found.append(str(path.relative_to(ROOT)))
    assert set(found) <= allowed, found
