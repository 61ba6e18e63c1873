"""The measured gain of transfer learning -> benchmarks/transfer.json and benchmarks/transfer.md.

1. MNIST (../shared/datasets/mnist, the 60,000 training images): LeNet-5 is pretrained on the digits
   0-4 of the first 50,000 images, then learns the digits 5-9 from N labelled images per class
   (N = 5, 10, 50, drawn from the first 50,000; a different draw per seed) three ways: from scratch,
   frozen pretrained features + a new head (--freeze backbone), frozen convolution blocks with the three
   fully connected layers training (--freeze 3), and full fine-tuning (--freeze none --backbone-lr-mult 0.1).
   Every model is scored by `zoo evaluate` on ALL the digits 5-9 of the last
   10,000 images (never seen by any training). Mean and spread (min-max) over the seeds.
2. Hymenoptera (--hymenoptera, default on): `zoo train resnet18` on ants/bees at a reduced input size,
   from scratch and `--pretrained` from a resnet18 this package trained here first on MNIST digits (as
   3-channel images at the same size): the only other data on this machine. Val accuracy of both.

Every model is trained and scored by the real commands (`python -m zoo train / evaluate` as children) on
data written to a temp dir: an MNIST IDX directory for pretraining, PNG class folders (classes "5".."9")
for the few-shot sets and the test set.

    python scripts/transfer_demo.py [--seeds 3] [--shots 5,10,50] [--no-hymenoptera]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
# One thread per child: on a shared machine two multi-threaded torch processes slow each other down many
# times over; LeNet does not need more. Set OMP_NUM_THREADS to override.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from zoo import atomic, rundir  # noqa: E402
from zoo.child import run_zoo  # noqa: E402
from zoo.data import mnist  # noqa: E402

MNIST_DIR = ROOT.parent / "shared" / "datasets" / "mnist"
HYMENOPTERA = ROOT.parent / "shared" / "datasets" / "hymenoptera"
POOL = 50_000  # training draws come from the first 50,000 images, the test set is the rest
OLD, NEW = range(0, 5), range(5, 10)

PRETRAIN = ["--epochs", "3", "--val-split", "0.1"]
# Few-shot: no validation (5 images per class leave none to spare), a fixed number of epochs, small batches.
FEW = ["--val-split", "0", "--epochs", "30", "--batch-size", "16", "--workers", "0"]
METHODS = {
    "scratch": [],
    "frozen features + new head": ["--pretrained", "{pretrained}", "--freeze", "backbone"],
    "frozen conv blocks": ["--pretrained", "{pretrained}", "--freeze", "3"],
    "full fine-tune": ["--pretrained", "{pretrained}", "--freeze", "none", "--backbone-lr-mult", "0.1"],
}
HYM_SIZE = 64
HYM_PRETRAIN = [
    "--input-size",
    str(HYM_SIZE),
    "--in-channels",
    "3",
    "--epochs",
    "2",
    "--val-split",
    "0.1",
    "--batch-size",
    "64",
    "--workers",
    "0",
]
HYM_TRAIN = [
    "--input-size",
    str(HYM_SIZE),
    "--epochs",
    "10",
    "--batch-size",
    "32",
    "--lr",
    "0.01",
    "--augment",
    "hflip,crop=4",
    "--workers",
    "0",
]


def write_idx(directory: pathlib.Path, images: np.ndarray, labels: np.ndarray) -> None:
    """An MNIST IDX directory (uncompressed train files) holding these digits."""

    def idx(arr: np.ndarray) -> bytes:
        header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
        return header + arr.astype(np.uint8).tobytes()

    atomic.write_bytes(directory / "train-images-idx3-ubyte", idx(images))
    atomic.write_bytes(directory / "train-labels-idx1-ubyte", idx(labels))


def write_folder(directory: pathlib.Path, images: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> None:
    """PNG class folders: directory/DIGIT/INDEX.png (INDEX: the image's place in the MNIST file)."""
    from PIL import Image

    for img, label, i in zip(images, labels, ids):
        (directory / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(directory / str(label) / f"{i:05d}.png")


def accuracy(run: pathlib.Path, data: pathlib.Path, tmp: pathlib.Path) -> dict:
    out = run_zoo(["evaluate", str(run), "--data", str(data), "--format", "json", "--workers", "0"], cwd=tmp)
    result = json.loads(out["output"][out["output"].index("{") :])
    return {"accuracy": result["accuracy"], "n": result["n"]}


def spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values), "all": values}


def mnist_part(tmp: pathlib.Path, seeds: int, shots: list[int]) -> dict:
    x, y = mnist.load_dir(MNIST_DIR)["train"]
    pool_idx = np.arange(POOL)
    old = pool_idx[np.isin(y[:POOL], OLD)]
    write_idx(tmp / "digits0-4", x[old], y[old])
    test = np.arange(POOL, len(y))[np.isin(y[POOL:], NEW)]
    write_folder(tmp / "test5-9", x[test], y[test], test)

    pretrain_args = ["train", "lenet", "--data", "{digits0-4}", *PRETRAIN, "--seed", "0"]
    r = run_zoo([*fill(pretrain_args, {"digits0-4": tmp / "digits0-4"}), "--output", str(tmp / "pre")], cwd=tmp)
    pre = rundir.read_card(tmp / "pre").provenance
    pretrained = {
        "command": "zoo " + " ".join(pretrain_args),
        "images": int(len(old)),
        "wall_s": r["wall_s"],
        "val_acc": pre["metrics"]["last_val_acc"],
    }
    print(f"pretrained on digits 0-4 ({len(old):,} images): val acc {pretrained['val_acc']:.4f}", flush=True)

    new = pool_idx[np.isin(y[:POOL], NEW)]
    commands, cells = {}, {}
    for n in shots:
        for seed in range(seeds):
            rng = np.random.default_rng(1000 + seed)
            pick = np.concatenate([rng.choice(new[y[new] == d], n, replace=False) for d in NEW])
            few = tmp / f"few{n}-seed{seed}"
            write_folder(few, x[pick], y[pick], pick)
            for k, (method, extra) in enumerate(METHODS.items()):
                args = ["train", "lenet", "--data", f"{{{n} per class}}", *extra, *FEW, "--seed", str(seed)]
                commands[method] = ("zoo " + " ".join(args[:-1]) + " {seed}").replace(
                    f"{{{n} per class}}", "{N per class}"
                )
                run = tmp / f"run-{n}-{seed}-{k}"
                start = time.perf_counter()
                run_zoo(
                    [*fill(args, {f"{n} per class": few, "pretrained": tmp / "pre"}), "--output", str(run)], cwd=tmp
                )
                score = accuracy(run, tmp / "test5-9", tmp)
                cells.setdefault((n, method), []).append(score["accuracy"])
                test_n = score["n"]
                print(
                    f"N={n} seed={seed} {method}: {100 * score['accuracy']:.2f}% on {test_n:,} "
                    f"({time.perf_counter() - start:.0f}s)",
                    flush=True,
                )
    table = {str(n): {m: spread(cells[(n, m)]) for m in METHODS} for n in shots}
    gain10 = (
        {m: table["10"][m]["mean"] - table["10"]["scratch"]["mean"] for m in METHODS if m != "scratch"}
        if "10" in table
        else None
    )
    return {
        "pretrain": pretrained,
        "commands": commands,
        "evaluate_command": "zoo evaluate {run} --data {digits 5-9 of the last 10,000} --format json",
        "test_n": test_n,
        "seeds": seeds,
        "shots": shots,
        "accuracy": table,
        "gain_at_10": gain10,
        "few_shot_options": " ".join(FEW),
        "goal": "transfer beats scratch by >= 10 points at N = 10",
    }


def fill(args: list[str], values: dict) -> list[str]:
    """Replace "{name}" placeholders (as the markdown shows them) by real paths."""
    return [str(values[a[1:-1]]) if a.startswith("{") and a[1:-1] in values else a for a in args]


def hymenoptera_part(tmp: pathlib.Path) -> dict:
    x, y = mnist.load_dir(MNIST_DIR)["train"]
    write_idx(tmp / "digits", x[:3000], y[:3000])
    pre_args = ["train", "resnet18", "--data", "{3,000 MNIST digits}", *HYM_PRETRAIN]
    r = run_zoo([*fill(pre_args, {"3,000 MNIST digits": tmp / "digits"}), "--output", str(tmp / "r18-mnist")], cwd=tmp)
    out = {
        "pretrain": {
            "command": "zoo " + " ".join(pre_args),
            "wall_s": r["wall_s"],
            "val_acc": rundir.read_card(tmp / "r18-mnist").provenance["metrics"]["last_val_acc"],
        }
    }
    base = ["train", "resnet18", "--data", str(HYMENOPTERA / "train"), "--val", str(HYMENOPTERA / "val"), *HYM_TRAIN]
    for name, extra in {
        "scratch": [],
        "pretrained on MNIST (full fine-tune)": ["--pretrained", "{resnet18 on MNIST}"],
    }.items():
        args = [*base, *extra]
        r = run_zoo([*fill(args, {"resnet18 on MNIST": tmp / "r18-mnist"}), "--output", str(tmp / name[:7])], cwd=tmp)
        m = rundir.read_card(tmp / name[:7]).provenance["metrics"]
        out[name] = {
            "command": "zoo " + " ".join(args).replace(str(HYMENOPTERA), "../shared/datasets/hymenoptera"),
            "last_val_acc": m["last_val_acc"],
            "best_val_acc": m["best_val_acc"],
            "best_epoch": m["best_epoch"],
            "wall_s": r["wall_s"],
        }
        print(f"hymenoptera {name}: last val {m['last_val_acc']:.4f} best {m['best_val_acc']:.4f}", flush=True)
    out["imagenet_command"] = (
        "zoo train resnet18 --data hymenoptera/train --val hymenoptera/val --pretrained imagenet --freeze backbone"
    )
    return out


def markdown(res: dict) -> str:
    m = res["mnist"]
    lines = [
        "# Transfer learning: measured gain",
        "",
        f"Measured {res['date']} on {res['machine']} by `python scripts/transfer_demo.py` "
        f"({res['wall_s']:.0f} s in all, each child with OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}).",
        "",
        "## LeNet-5: digits 0-4 -> digits 5-9 from N labelled images per class",
        "",
        f"Pretraining: `{m['pretrain']['command']}` on the {m['pretrain']['images']:,} digits 0-4 of the "
        f"first 50,000 MNIST training images (an IDX directory); its val accuracy "
        f"{100 * m['pretrain']['val_acc']:.2f}%.",
        "",
        f"Test: all {m['test_n']:,} digits 5-9 of the last 10,000 MNIST training images (PNG class folders, "
        f"never trained on), `{m['evaluate_command']}`. Accuracy in %, mean over {m['seeds']} seeds "
        "(each seed a different draw of the N images per class from the first 50,000, and the training "
        "seed), min-max in brackets.",
        "",
        "| N per class | " + " | ".join(m["commands"]) + " |",
        "|---|" + "---|" * len(m["commands"]),
    ]
    for n, row in m["accuracy"].items():
        cells = [f"{100 * c['mean']:.1f} ({100 * c['min']:.1f}-{100 * c['max']:.1f})" for c in row.values()]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    if m["gain_at_10"]:
        lines += [
            "",
            "Gain over scratch at N = 10 (goal: >= 10 points): "
            + ", ".join(f"{k} {100 * v:+.1f} points" for k, v in m["gain_at_10"].items())
            + ".",
        ]
    lines += [
        "",
        f"Few-shot training: no validation split and a fixed 30 epochs for every method "
        f"(`{m['few_shot_options']}`; with 5 images per class there are none to spare), the other "
        "options `zoo train`'s defaults (SGD lr 0.05, cosine, label smoothing 0.1, augmentation "
        "rotate=10,shift=0.1,zoom=0.1). Commands ({N per class}: a PNG folder of the N images of each "
        "of the classes 5..9; {pretrained}: the pretraining run directory; {seed}: 0, 1, 2):",
        "",
    ]
    lines += [f"- {k}: `{v}`" for k, v in m["commands"].items()]
    h = res.get("hymenoptera")
    if h:
        lines += [
            "",
            "## ResNet-18 on hymenoptera (ants vs bees, 244 train / 153 val)",
            "",
            f"At {HYM_SIZE}x{HYM_SIZE} pixels and 10 epochs, so it runs in minutes on 2 CPU cores. The only "
            "checkpoint this machine can produce for it is a resnet18 trained on MNIST digits (3-channel, "
            f"{HYM_SIZE} px): `{h['pretrain']['command']}` (its val accuracy "
            f"{100 * h['pretrain']['val_acc']:.2f}%).",
            "",
            "| start | val acc, last epoch | best val acc (epoch) | wall s | command |",
            "|---|---|---|---|---|",
        ]
        for name, r in h.items():
            if isinstance(r, dict) and "last_val_acc" in r:
                lines.append(
                    f"| {name} | {100 * r['last_val_acc']:.1f}% | {100 * r['best_val_acc']:.1f}% "
                    f"({r['best_epoch']}) | {r['wall_s']:.0f} | `{r['command']}` |"
                )
        lines += [
            "",
            "The best val accuracy is picked on the val set itself (optimistic); the last epoch's is not.",
            "With ImageNet weights the PyTorch transfer-learning tutorial reaches about 94% on this val set; "
            f"that is what a user with internet gets from `{h['imagenet_command']}` (not runnable here: "
            "no internet).",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--shots", default="5,10,50")
    ap.add_argument("--no-hymenoptera", dest="hymenoptera", action="store_false")
    args = ap.parse_args()
    if not MNIST_DIR.is_dir():
        raise SystemExit(f"{MNIST_DIR}: missing (the shared datasets beside the clone)")
    start = time.perf_counter()
    res = {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores"}
    with tempfile.TemporaryDirectory(prefix="zoo-transfer-") as tmp:
        res["mnist"] = mnist_part(pathlib.Path(tmp), args.seeds, [int(s) for s in args.shots.split(",")])
        if args.hymenoptera:
            res["hymenoptera"] = hymenoptera_part(pathlib.Path(tmp))
    res["wall_s"] = time.perf_counter() - start
    atomic.write_text(ROOT / "benchmarks" / "transfer.json", json.dumps(res, indent=2) + "\n")
    atomic.write_text(ROOT / "benchmarks" / "transfer.md", markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
