"""`zoo train` across torchrun nodes on this machine, against one process: writes benchmarks/torchrun.md
(+ .json).

    python scripts/bench_torchrun.py [--epochs 3] [--repeats 2]

LeNet-5 on MNIST-small (9,000 training images), a global batch of 128, float32, no augmentation, no
TensorBoard, in four settings, each `--repeats` times (the median is reported):
  one-2t   one process, 2 threads (`zoo train lenet --batch-size 128 --threads 2`)
  one-1t   one process, 1 thread: a node's share of this machine in the settings below
  local    `torchrun --standalone --nproc-per-node 2`, 1 thread each, --batch-size 64
  2-nodes  two torchrun launchers on 127.0.0.1 (c10d rendezvous, --nnodes 2 --nproc-per-node 1), 1 thread
           each, --batch-size 64: what two machines run, squeezed onto this one's cores
Throughput is the images per second of the training epochs after the first (history.json, all processes
together); wall is the whole command, start-up and rendezvous included. Both "nodes" share this
machine's 2 cores and memory, so nothing here measures a network: the projection for N real nodes below
is arithmetic on the measured per-node rate and an assumed link, labelled as such.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo import __version__, rundir  # noqa: E402
from zoo.child import free_port  # noqa: E402
from zoo.hardware import cpu  # noqa: E402
from zoo.train.elastic import torchrun_command  # noqa: E402

GLOBAL_BATCH = 128
LENET_PARAMS = 61_706  # LeNet-5 on 10 classes (`zoo summary lenet`): float32 gradients all-reduced per step
LINKS_GBIT = (10, 100)  # the links of the projection, in Gbit/s
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "GLOO_SOCKET_IFNAME": "lo"}


def train_args(epochs: int, batch: int, output: pathlib.Path) -> list[str]:
    return [
        "train",
        "lenet",
        "--epochs",
        str(epochs),
        "--batch-size",
        str(batch),
        "--amp",
        "off",
        "--augment",
        "none",
        "--no-tensorboard",
        "--workers",
        "0",
        "--output",
        str(output),
    ]


def launchers(setting: str, args: list[str]) -> list[list[str]]:
    """The command lines of one setting (one per launcher)."""
    zoo = [sys.executable, "-m", "zoo", *args]
    if setting == "one-2t":
        return [[*zoo, "--threads", "2"]]
    if setting == "one-1t":
        return [[*zoo, "--threads", "1"]]
    run = [sys.executable, "-m", "torch.distributed.run"]
    if setting == "local":
        return [[*run, "--standalone", "--nproc-per-node", "2", "-m", "zoo", *args]]
    endpoint = f"127.0.0.1:{free_port()}"
    return [
        torchrun_command(args, nodes=2, per_node=1, endpoint=endpoint, is_host=i == 0, local_addr="127.0.0.1")
        for i in range(2)
    ]


def measure(setting: str, epochs: int, folder: pathlib.Path) -> dict:
    """One run of `setting`: wall seconds and images/s of the epochs after the first."""
    run = folder / f"{setting}-{time.monotonic_ns()}"
    batch = GLOBAL_BATCH if setting.startswith("one") else GLOBAL_BATCH // 2
    env = {**ENV, "OMP_NUM_THREADS": "2" if setting == "one-2t" else "1"}
    start = time.perf_counter()
    procs = [
        subprocess.Popen(c, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for c in launchers(setting, train_args(epochs, batch, run))
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    wall = time.perf_counter() - start
    if any(p.returncode for p in procs):
        raise SystemExit(f"{setting} failed:\n" + "\n".join(o[-3000:] for o in outputs))
    history = json.loads((run / rundir.HISTORY_JSON).read_text())
    first = next(line for line in outputs[0].splitlines() if line.startswith("training "))
    return {
        "wall_s": round(wall, 2),
        "images_per_s": round(statistics.mean(r["images_per_s"] for r in history[1:]), 1),
        "first_line": first,
    }


def projection(per_node: float, batch: int) -> list[dict]:
    """Images/s of N nodes at `per_node` images/s each, where every step waits for a ring all-reduce of
    LeNet's gradients (2 (N-1)/N x the gradient bytes through each node's link) without overlapping it:
    arithmetic, not a measurement."""
    compute_s = batch / per_node
    rows = []
    for nodes in (2, 4, 8, 16):
        for gbit in LINKS_GBIT:
            allreduce_s = 2 * (nodes - 1) / nodes * LENET_PARAMS * 4 / (gbit * 1e9 / 8)
            rate = nodes * batch / (compute_s + allreduce_s)
            rows.append(
                {
                    "nodes": nodes,
                    "link_gbit": gbit,
                    "images_per_s": round(rate),
                    "efficiency": rate / (nodes * per_node),
                }
            )
    return rows


def run(epochs: int, repeats: int) -> dict:
    load_start = os.getloadavg()[0]
    settings = ("one-2t", "one-1t", "local", "2-nodes")
    results = {s: [] for s in settings}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            for setting in settings:  # interleaved, so that a busier minute does not fall on one setting
                results[setting].append(measure(setting, epochs, pathlib.Path(tmp)))
    summary = {
        s: {
            "wall_s": statistics.median(r["wall_s"] for r in rs),
            "images_per_s": statistics.median(r["images_per_s"] for r in rs),
            "runs": rs,
        }
        for s, rs in results.items()
    }
    per_node = summary["one-1t"]["images_per_s"]
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M"),
        "cpu": cpu().to_dict(),
        "python": sys.version.split()[0],
        "torch": __import__("torch").__version__,
        "cnnzoo": __version__,
        "epochs": epochs,
        "repeats": repeats,
        "global_batch": GLOBAL_BATCH,
        "loadavg_start": round(load_start, 2),
        "loadavg_end": round(os.getloadavg()[0], 2),
        "settings": summary,
        "projection": projection(per_node, GLOBAL_BATCH // 2),
    }


def markdown(r: dict) -> str:
    c, s = r["cpu"], r["settings"]
    base = s["one-2t"]["images_per_s"]
    lines = [
        "# `zoo train` across torchrun nodes",
        "",
        f"Written by `python scripts/bench_torchrun.py --epochs {r['epochs']} --repeats {r['repeats']}` on "
        f"{r['when']}: {c['name']} ({c['machine']}, flags: {', '.join(c['flags']) or 'none of note'}), "
        f"{c['cores']} usable CPUs, Python {r['python']}, torch {r['torch']}.",
        "",
        f"LeNet-5 on MNIST-small, global batch {r['global_batch']}, float32, no augmentation, {r['epochs']} "
        f"epochs; median of {r['repeats']} runs each, the settings interleaved. Load average (1 min) "
        f"{r['loadavg_start']} at the start, {r['loadavg_end']} at the end (other sessions share this CPU).",
        "",
        "| setting | processes x threads | training images/s | vs one process, 2 threads | wall (s) |",
        "| --- | --- | --- | --- | --- |",
    ]
    shapes = {"one-2t": "1 x 2", "one-1t": "1 x 1", "local": "2 x 1 (one torchrun)", "2-nodes": "2 x 1 (two torchruns)"}
    for name, row in s.items():
        lines.append(
            f"| {name} | {shapes[name]} | {row['images_per_s']:,.0f} | {row['images_per_s'] / base:.2f}x | "
            f"{row['wall_s']:.1f} |"
        )
    lines += [
        "",
        f"The two nodes' first line: `{s['2-nodes']['runs'][0]['first_line']}`",
        "",
        "Every setting shares this machine's two cores with the other sessions' processes, and a process",
        "computing with 2 threads suffers most from them (OpenMP's threads wait for one another at every",
        "operation: `benchmarks/contention.md`), so these ratios say little about scaling. What they do show:",
        "the two-node path (c10d rendezvous between two launchers, DDP's all-reduce over gloo, the",
        "shared-storage check) trains at the speed of the one-launcher one; its wall time holds the second",
        "launcher's start and the rendezvous.",
        "",
        "## Projection for N nodes (arithmetic, not measured)",
        "",
        f"Each node at the measured one-thread rate ({s['one-1t']['images_per_s']:,.0f} images/s: one core of "
        "this CPU; a real node has more), each step waiting for a ring all-reduce of LeNet's "
        f"{LENET_PARAMS:,} float32 gradients (2 (N-1)/N x {LENET_PARAMS * 4 / 1e6:.2f} MB through each "
        "node's link, not overlapped with the backward pass as DDP does, so conservative), batch "
        f"{GLOBAL_BATCH // 2} per node:",
        "",
        "| nodes | link | images/s | of N x one node |",
        "| --- | --- | --- | --- |",
    ]
    for p in r["projection"]:
        lines.append(f"| {p['nodes']} | {p['link_gbit']} Gbit/s | {p['images_per_s']:,} | {p['efficiency']:.0%} |")
    lines += [
        "",
        "What limits it beyond this arithmetic: the link's latency per all-reduce bucket (a LeNet step",
        "is short, so latency, not bandwidth, dominates on real networks), the slowest node (every step",
        "waits for it), reading the data on every node (each rank reads --data itself), and rank 0's",
        "checkpoint writes to the shared storage after each epoch. A larger model all-reduces more",
        "(ResNet-18: 11.7 M parameters, 47 MB a step) and computes longer per step.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "torchrun.md"))
    parser.add_argument("--render", action="store_true", help="Write the .md again from the .json, measuring nothing.")
    a = parser.parse_args()
    out = pathlib.Path(a.output)
    if a.render:
        result = json.loads(out.with_suffix(".json").read_text())
    else:
        result = run(a.epochs, a.repeats)
        out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
