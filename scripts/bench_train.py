"""Training benchmarks -> benchmarks/train.json and benchmarks/train.md.

1. `zoo train lenet` with no options (MNIST-small): wall time, test accuracy, peak RSS of the process.
2. With --full: LeNet on the full MNIST training set, the last 10,000 images held out as test
   (FULL_COMMAND below), 15 epochs: test accuracy and wall time. Several minutes on 2 cores.
3. Throughput of the trainer at batch 128 against a minimal hand-written PyTorch loop over the same
   in-memory tensors (same model, optimizer, batch size and threads), alternated in one process;
   the ratio is the trainer's overhead.

    python scripts/bench_train.py [--full] [--parts default,full,throughput] [--repeats 3]

Each part replaces its own entry of benchmarks/train.json; the parts not run keep their last results
(so the minutes-long full-MNIST run need not be repeated), and train.md is redrawn from all of them.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import pathlib
import platform
import statistics
import tempfile
import threading
import time
from typing import Callable

from zoo import atomic, rundir
from zoo.child import run_zoo

ROOT = pathlib.Path(__file__).resolve().parents[1]

FULL_OPTIONS = ["--test-split", "10000", "--epochs", "15"]  # and the defaults of `zoo train`


def bench_default(tmp: pathlib.Path, repeats: int) -> dict:
    """`zoo train lenet` `repeats` times (the result is deterministic; the wall time is not, on a shared
    machine): the median wall time, every wall time, and the seconds each epoch's loop took."""
    runs = []
    for k in range(repeats):
        r = run_zoo(["train", "lenet", "--output", str(tmp / f"default{k}")], cwd=tmp)
        history = json.loads((tmp / f"default{k}" / "history.json").read_text())
        runs.append(
            {
                **r,
                "prov": rundir.read_card(tmp / f"default{k}").provenance,
                "train_seconds": [h["train_seconds"] for h in history],
            }
        )
    walls = sorted(r["wall_s"] for r in runs)
    prov = runs[0]["prov"]
    assert all(r["prov"]["metrics"] == prov["metrics"] for r in runs), "training was not deterministic"
    return {
        "command": "zoo train lenet",
        "wall_s": walls[len(walls) // 2],
        "wall_s_all": [r["wall_s"] for r in runs],
        "train_seconds_by_epoch": [r["train_seconds"] for r in runs],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "test_acc": prov["metrics"]["test_acc"],
        "test_n": prov["metrics"]["test_n"],
        "best_val_acc": prov["metrics"]["best_val_acc"],
        "epochs": prov["epochs"],
        "goal": "wall <= 60 s, test accuracy >= 98 %, peak RSS < 1.5 GB",
    }


def bench_full(tmp: pathlib.Path, mnist_dir: pathlib.Path) -> dict:
    args = ["train", "lenet", "--data", str(mnist_dir), *FULL_OPTIONS, "--output", str(tmp / "full")]
    r = run_zoo(args, cwd=tmp)
    prov = rundir.read_card(tmp / "full").provenance
    history = json.loads((tmp / "full" / "history.json").read_text())
    return {
        "command": "zoo " + " ".join(a if a != str(mnist_dir) else "../shared/datasets/mnist" for a in args[:-2]),
        "data": prov["data"],
        "wall_s": r["wall_s"],
        "test_acc": prov["metrics"]["test_acc"],
        "test_n": prov["metrics"]["test_n"],
        "best_val_acc": prov["metrics"]["best_val_acc"],
        "best_epoch": prov["metrics"]["best_epoch"],
        "val_acc_by_epoch": [h["val_acc"] for h in history],
        "goal": "test accuracy >= 99.2 % within 15 epochs",
    }


# The LeNet-on-MNIST recipe ablation: every option written out, so that a row means the same whatever the
# defaults are. Each row is trained RECIPE_SEEDS times on the full MNIST training file, the last 10,000
# images held out as the test (never seen: neither trained on nor used to pick the weights).
_BASE = {
    "--epochs": "20",
    "--batch-size": "64",
    "--lr": "0.05",
    "--schedule": "cosine",
    "--weight-decay": "5e-4",
    "--label-smoothing": "0.1",
    "--augment": "rotate=10,shift=0.1,zoom=0.1",
}
RECIPE_ROWS = {
    "the defaults, 15 epochs (the issue's baseline)": {"--epochs": "15"},
    "the defaults, 20 epochs (before: `--data mnist`'s default)": {},
    "30 epochs": {"--epochs": "30"},
    "20 epochs, batch 128, lr 0.1": {"--batch-size": "128", "--lr": "0.1"},
}
RECIPE_SEEDS = (0, 1, 2)


def recipe_args(row: str) -> list[str]:
    options = {**_BASE, **RECIPE_ROWS[row]}
    return [a for k, v in options.items() for a in (k, v)]


def bench_recipe(tmp: pathlib.Path, mnist_dir: pathlib.Path, done: dict, save: Callable[[dict], None], jobs: int):
    """Every row of RECIPE_ROWS with every seed, `jobs` runs at a time (one thread each); each finished run
    is saved at once (`save`), and the runs in `done` are not repeated (an interrupted ablation goes on)."""
    lock = threading.Lock()
    results = {row: dict(done.get(row, {})) for row in RECIPE_ROWS}

    def one(row: str, seed: int) -> None:
        out = tmp / f"recipe-{list(RECIPE_ROWS).index(row)}-{seed}"
        args = ["train", "lenet", "--data", str(mnist_dir), "--test-split", "10000", "--threads", "1"]
        r = run_zoo([*args, *recipe_args(row), "--seed", str(seed), "--output", str(out)], cwd=tmp)
        prov = rundir.read_card(out).provenance
        history = json.loads((out / "history.json").read_text())
        with lock:
            results[row][str(seed)] = {
                "test_acc": prov["metrics"]["test_acc"],
                "best_val_acc": prov["metrics"]["best_val_acc"],
                "best_epoch": prov["metrics"]["best_epoch"],
                "wall_s": r["wall_s"],
                "first_epoch_val_99": next((h["epoch"] for h in history if (h["val_acc"] or 0) >= 0.99), None),
            }
            save(results)
        print(row, seed, results[row][str(seed)], flush=True)

    todo = [(row, s) for s in RECIPE_SEEDS for row in RECIPE_ROWS if str(s) not in results[row]]
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for f in [pool.submit(one, row, s) for row, s in todo]:
            f.result()
    return results


def bench_throughput(tmp: pathlib.Path, repeats: int, epochs: int) -> dict:
    """Images per second of a minimal loop and of the trainer, alternated, over MNIST-small's 10,000."""
    import torch
    import torch.nn.functional as F

    from zoo.card import ModelCard
    from zoo.data.datasets import open_source, standardize, to_unit
    from zoo.models import create
    from zoo.train.trainer import TrainConfig, train

    batch = 128
    card = ModelCard.for_model("lenet")
    images = open_source("mnist-small").load(card, progress=False)[0]["train"]
    x_all, y_all = standardize(to_unit(images.images), card), images.labels  # float, normalized once

    def minimal_loop() -> float:
        torch.manual_seed(0)
        model = create("lenet")
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        model.train()
        start = time.perf_counter()
        for epoch in range(epochs):
            order = torch.randperm(len(x_all))
            for i in range(0, len(order) - batch + 1, batch):
                idx = order[i : i + batch]
                loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return (len(x_all) // batch * batch * epochs) / (time.perf_counter() - start)

    def trainer(k: int) -> tuple[float, float]:
        cfg = TrainConfig(
            data="mnist-small",
            val_split=0,
            epochs=epochs,
            batch_size=batch,
            lr=0.05,
            schedule="constant",
            augment="none",
            label_smoothing=0.0,
            workers=0,
            output=str(tmp / f"throughput{k}"),
        )
        start = time.perf_counter()
        result = train(cfg, log=lambda s: None)
        whole = time.perf_counter() - start
        seen = sum(h["images_per_s"] * h["train_seconds"] for h in result.history)
        loop_seconds = sum(h["train_seconds"] for h in result.history)
        return seen / loop_seconds, seen / whole

    minimal_loop()  # warm up (first-call allocations, lazy imports) outside the measurement
    trainer(-1)
    base, loop, run = [], [], []
    for k in range(repeats):  # alternated, so each pair sees the same load on a shared machine
        base.append(minimal_loop())
        t_loop, t_run = trainer(k)
        loop.append(t_loop)
        run.append(t_run)
    median = statistics.median
    return {
        "batch_size": batch,
        "images": len(x_all),
        "epochs_per_measure": epochs,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "minimal_loop_img_s": round(max(base), 1),
        "trainer_loop_img_s": round(max(loop), 1),
        "trainer_run_img_s": round(max(run), 1),
        "ratio_loop": round(median(t / b for t, b in zip(loop, base)), 3),
        "ratio_run": round(median(t / b for t, b in zip(run, base)), 3),
        "ratio_best": round(max(loop) / max(base), 3),
        "all": {
            "minimal": [round(v) for v in base],
            "trainer_loop": [round(v) for v in loop],
            "trainer_run": [round(v) for v in run],
        },
        "goal": "trainer >= 0.9 x minimal loop",
    }


def _when(r: dict) -> str:
    return f"{r['measured']}, load average {r['loadavg_start']}-{r['loadavg_end']}"


def write_markdown(results: dict, path: pathlib.Path) -> None:
    d, t, f = results.get("default"), results.get("throughput"), results.get("full")
    cores = os.cpu_count() or 1
    loads = [r["loadavg_start"] for r in (d, t, f) if r] + [r["loadavg_end"] for r in (d, t, f) if r]
    lines = ["# Training benchmarks", "", f"Written by `python scripts/bench_train.py` ({results['machine']}).", ""]
    if max(loads, default=0) > 0.5 * cores:
        lines += [
            f"Some rows were measured while other jobs were running (load averages up to {max(loads)} on "
            f"{cores} cores; the measured column gives each row's): their times are pessimistic.",
            "",
        ]
    lines += ["| benchmark | result | goal | measured |", "| --- | --- | --- | --- |"]
    if d:
        lines += [
            f"| `{d['command']}`: wall time, median of {len(d['wall_s_all'])} | {d['wall_s']:.1f} s ({d['epochs']} "
            f"epochs; all: {', '.join(f'{w:.0f}' for w in d['wall_s_all'])} s) | <= 60 s | {_when(d)} |",
            f"| `{d['command']}`: MNIST-small test accuracy | {100 * d['test_acc']:.2f} % "
            f"({d['test_n']:,} images) | >= 98 % | same run |",
            f"| `{d['command']}`: peak RSS | {d['peak_rss_mb']:.0f} MB | < 1,500 MB | same run |",
        ]
    if f:
        lines.append(
            f"| LeNet, full MNIST (last 10,000 held out as test), 15 epochs: test accuracy "
            f"| {100 * f['test_acc']:.2f} % (best val at epoch {f['best_epoch']}; "
            f"{f['wall_s'] / 60:.1f} min) | >= 99.2 % | {_when(f)}, threads: {f['torch_threads_env']} |"
        )
    if t:
        lines += [
            f"| trainer throughput, batch {t['batch_size']}, vs a minimal PyTorch loop (training loop) | "
            f"{t['ratio_loop']:.2f}x (best: {t['trainer_loop_img_s']:,.0f} vs {t['minimal_loop_img_s']:,.0f} "
            f"img/s) | >= 0.9x | {_when(t)} |",
            f"| same, the whole `train()` call (start-up, per-epoch writes, final test) | "
            f"{t['ratio_run']:.2f}x ({t['trainer_run_img_s']:,.0f} img/s) | | same run |",
        ]
    lines.append("")
    if f:
        lines += ["The full-MNIST command:", "", "```", f["command"], "```", ""]
    if t:
        lines += [
            f"Throughput: the median ratio of {t['repeats']} alternated pairs of measurements of "
            f"{t['epochs_per_measure']} epoch(s) over MNIST-small's {t['images']:,} training images "
            f"({t['threads']} torch threads, "
            "no augmentation, constant learning rate). The trainer's loop figure covers what it does per "
            "batch (uint8 to float, standardize, forward, loss, backward, step, progress bar); the "
            "minimal loop indexes pre-normalized float tensors.",
            "",
        ]
    atomic.write_text(path, "\n".join(lines))


PARTS = ("default", "full", "throughput", "recipe")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="also train LeNet on the full MNIST (minutes)")
    p.add_argument(
        "--parts",
        default=None,
        help=f"comma-separated subset of {','.join(PARTS)} (default: default,throughput, "
        "plus full with --full); the others keep their last results",
    )
    p.add_argument("--mnist", type=pathlib.Path, default=ROOT.parent / "shared" / "datasets" / "mnist")
    p.add_argument("--repeats", type=int, default=9, help="throughput measurements")
    p.add_argument("--default-repeats", type=int, default=3, help="runs of `zoo train lenet`")
    p.add_argument("--epochs", type=int, default=1, help="epochs per throughput measurement")
    p.add_argument("--output", type=pathlib.Path, default=ROOT / "benchmarks")
    p.add_argument("--jobs", type=int, default=2, help="recipe runs at a time (one thread each)")
    a = p.parse_args()
    parts = a.parts.split(",") if a.parts else ["default", "throughput"] + (["full"] if a.full else [])
    json_path = a.output / "train.json"
    results = json.loads(json_path.read_text()) if json_path.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for part in PARTS:
            if part not in parts:
                continue
            context = {
                "measured": datetime.datetime.now().isoformat(timespec="minutes"),
                "loadavg_start": round(os.getloadavg()[0], 2),
                "torch_threads_env": os.environ.get("OMP_NUM_THREADS", "default"),
            }
            if part == "default":
                r = bench_default(tmp, a.default_repeats)
            elif part == "full":
                r = bench_full(tmp, a.mnist)
            elif part == "recipe":

                def save(runs: dict) -> None:
                    results["recipe"] = {**results.get("recipe", {}), **context, "runs": runs}
                    atomic.write_text(json_path, json.dumps(results, indent=2) + "\n")

                r = {"runs": bench_recipe(tmp, a.mnist, results.get("recipe", {}).get("runs", {}), save, a.jobs)}
            else:
                r = bench_throughput(tmp, a.repeats, a.epochs)
            results[part] = {**r, **context, "loadavg_end": round(os.getloadavg()[0], 2)}
            print(part, json.dumps(results[part]), flush=True)
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    atomic.write_text(json_path, json.dumps(results, indent=2) + "\n")
    write_markdown(results, a.output / "train.md")
    print(f"wrote {json_path} and {a.output / 'train.md'}")


if __name__ == "__main__":
    main()
