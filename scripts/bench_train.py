"""Training benchmarks -> benchmarks/train.json and benchmarks/train.md.

Parts (`--parts`, comma-separated; each replaces its own entry of train.json, the others keep their last
results, and train.md is redrawn from all of them):

- default: `zoo train lenet` (MNIST-small, the defaults) `--default-repeats` times, alternated with the
  code of commit `--before REV` where given: wall time, test accuracy, peak RSS.
- recipe: the LeNet-on-MNIST recipe ablation (RECIPE_ROWS x RECIPE_SEEDS) on the full MNIST training
  file, its last 10,000 images held out as the test; `--jobs` runs at a time, one thread each, every
  finished run saved at once (an interrupted ablation goes on where it stopped). About an hour on 2 cores.
- target: time to accuracy: `zoo train lenet --data MNIST --test-split 10000 --target-accuracy 0.99`
  (the recipe's defaults), the wall time of the command and of the epochs until validation first
  reached 99.0 %.
- amp: float32 against bfloat16 autocast, accuracy over AMP_SEEDS (LeNet on MNIST-small, resnet18 on
  ants/bees), emulated where the CPU has no native BF16.
- speed: training steps per second of one model per family, float32 and bfloat16 autocast, contiguous
  and channels_last, measured in one run with zoo.train.precision.probe (the --amp auto probe).
- throughput: the trainer at batch 128 against a minimal hand-written PyTorch loop over the same
  in-memory tensors (same model, optimizer, batch size and threads), alternated in one process; the ratio
  is the trainer's overhead, for its training loop and for the whole `train()` call of a 1-epoch run.

    python scripts/bench_train.py --parts default,target,speed,throughput --before fd9230d
    python scripts/bench_train.py --parts recipe,amp      # long: accuracy over seeds

Every part records the CPU (name, cores, the flags that decide reduced precision) and the load average.
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

from zoo import atomic, hardware, rundir
from zoo.child import checkout_of, run_zoo

ROOT = pathlib.Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "datasets" / "mnist"


def bench_default(tmp: pathlib.Path, repeats: int, before: str | None) -> dict:
    """`zoo train lenet` `repeats` times, alternated with the code of commit `before` (where given): the
    median wall time, every wall time, test accuracy and peak RSS of each (the result is deterministic;
    the wall time is not, on a shared machine)."""
    codes = {"now": None}
    if before:
        codes[before] = checkout_of(before, tmp / f"checkout-{before}")
    runs: dict[str, list[dict]] = {name: [] for name in codes}
    for k in range(repeats):
        for name, code in codes.items():
            out = tmp / f"default-{name}-{k}"
            r = run_zoo(["train", "lenet", "--output", str(out)], cwd=tmp, code=code)
            runs[name].append({**r, "prov": rundir.read_card(out).provenance})
    result = {"command": "zoo train lenet", "goal": "wall <= 60 s and not slower than before, test accuracy >= 98 %"}
    for name, rs in runs.items():
        prov = rs[0]["prov"]
        assert all(r["prov"]["metrics"] == prov["metrics"] for r in rs), "training was not deterministic"
        result[name] = {
            "wall_s": statistics.median(r["wall_s"] for r in rs),
            "wall_s_all": [r["wall_s"] for r in rs],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
            "test_acc": prov["metrics"]["test_acc"],
            "test_n": prov["metrics"]["test_n"],
            "epochs": prov["epochs"],
        }
    return result


def bench_target(tmp: pathlib.Path, mnist_dir: pathlib.Path) -> dict:
    """Time to 99.0 % validation accuracy: `zoo train lenet` on the full MNIST with --target-accuracy."""
    out = tmp / "target"
    args = ["train", "lenet", "--data", str(mnist_dir), "--test-split", "10000", "--target-accuracy", "0.99"]
    r = run_zoo([*args, "--output", str(out)], cwd=tmp)
    prov = rundir.read_card(out).provenance
    history = json.loads((out / "history.json").read_text())
    return {
        "command": "zoo " + " ".join(args).replace(str(mnist_dir), "../shared/datasets/mnist"),
        "wall_s": r["wall_s"],
        "epochs_s": round(sum(h["seconds"] for h in history), 1),
        "epoch": prov["epochs"],
        "of_epochs": prov["training"]["epochs"],
        "val_acc": history[-1]["val_acc"],
        "test_acc": prov["metrics"]["test_acc"],
        "threads": prov["threads"],
        "first_line": r["output"].splitlines()[0],
    }


SPEED_MODELS = (("lenet5", 28, 64), ("alexnet", 112, 16), ("zfnet", 112, 16), ("vgg11", 112, 16))
SPEED_MODELS += (("googlenet", 112, 16), ("resnet18", 112, 16))


SPEED_STEPS = 6  # timed steps per cell (the --amp auto probe times 3)
EMULATED_FLOOR = 100.0  # img/s in float32 below which emulated bfloat16 (20x slower for AlexNet) is not timed


def bench_speed() -> dict:
    """Training steps (forward, loss, backward) per second of each SPEED_MODELS entry (model, input side,
    batch) in float32 and bfloat16 autocast, contiguous and channels_last, with the --amp auto probe."""
    import torch

    from zoo.models import create, get_spec
    from zoo.train import precision

    native = precision.native(torch.device("cpu"))[0] == "bfloat16"
    rows = []
    for name, side, batch in SPEED_MODELS:
        spec = get_spec(name)
        row = {"model": name, "input": side, "batch": batch, "channels_last_in_spec": spec.channels_last}
        for fmt_name, fmt in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
            torch.manual_seed(0)
            model = create(name, num_classes=10, in_channels=spec.input_size[0]).to(memory_format=fmt)
            x = torch.randn(batch, spec.input_size[0], side, side).contiguous(memory_format=fmt)
            y = torch.randint(0, 10, (batch,))
            criterion = torch.nn.CrossEntropyLoss()
            for dtype in ("float32", "bfloat16"):
                if dtype == "bfloat16" and not native and row[f"float32_{fmt_name}_img_s"] < EMULATED_FLOOR:
                    row[f"{dtype}_{fmt_name}_img_s"] = None  # emulated: minutes a step, and not a choice here
                    continue
                dt = None if dtype == "float32" else torch.bfloat16
                seconds = precision.probe(model, (x, y), criterion, dt, steps=SPEED_STEPS)
                row[f"{dtype}_{fmt_name}_img_s"] = round(batch / seconds, 1)
        rows.append(row)
        print(row, flush=True)
    bf16 = precision.native(torch.device("cpu"))[0]
    return {"rows": rows, "threads": torch.get_num_threads(), "bf16_native": bf16, "steps": SPEED_STEPS}


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
    "10 epochs": {"--epochs": "10"},
    "20 epochs, no augmentation": {"--augment": "none"},
}
RECIPE_SEEDS = (0, 1, 2)


def recipe_rows(mnist_dir: pathlib.Path) -> dict[str, list[str]]:
    """Each row's whole `zoo train` arguments."""
    data = ["lenet", "--data", str(mnist_dir), "--test-split", "10000"]
    return {row: data + [a for k, v in {**_BASE, **o}.items() for a in (k, v)] for row, o in RECIPE_ROWS.items()}


HYMENOPTERA = ROOT.parent / "shared" / "datasets" / "hymenoptera"
_RESNET = ["resnet18", "--data", str(HYMENOPTERA / "train"), "--val", str(HYMENOPTERA / "val"), "--input-size", "64"]
_RESNET += ["--epochs", "10", "--batch-size", "32", "--augment", "hflip,crop=4"]
AMP_ROWS = {  # float32 against bfloat16 autocast (emulated where the CPU has no native BF16)
    "lenet5, MNIST-small (the defaults), float32": ["lenet", "--amp", "off"],
    "lenet5, MNIST-small (the defaults), bfloat16": ["lenet", "--amp", "bfloat16"],
    "resnet18 from scratch, ants/bees at 64x64, 10 epochs, float32": [*_RESNET, "--amp", "off"],
    "resnet18 from scratch, ants/bees at 64x64, 10 epochs, bfloat16": [*_RESNET, "--amp", "bfloat16"],
}
AMP_SEEDS = (0, 1, 2)
# resnet18's rows with one seed: emulated bfloat16 takes about 3x float32's time on a CPU without native
# BF16, and three seeds of it did not fit the session that measured them (a CPU with AMX runs them all)
AMP_ROW_SEEDS = {row: (0,) for row in AMP_ROWS if row.startswith("resnet18")}


def bench_runs(
    tmp: pathlib.Path,
    rows: dict[str, list[str]],
    seeds: tuple[int, ...],
    done: dict,
    save: Callable[[dict], None],
    jobs: int,
    row_seeds: dict[str, tuple[int, ...]] | None = None,
) -> dict:
    """`zoo train ARGS --seed S --threads 1` for every row's ARGS and every seed, `jobs` runs at a time:
    {row: {seed: metrics}}. Each finished run is saved at once (`save`), and the runs already in `done`
    are not repeated, so an interrupted ablation goes on where it stopped."""
    lock = threading.Lock()
    results = {row: dict(done.get(row, {})) for row in rows}

    def one(row: str, seed: int) -> None:
        out = tmp / f"run-{abs(hash(row))}-{seed}"
        r = run_zoo(["train", *rows[row], "--seed", str(seed), "--threads", "1", "--output", str(out)], cwd=tmp)
        prov = rundir.read_card(out).provenance
        history = json.loads((out / "history.json").read_text())
        with lock:
            results[row][str(seed)] = {
                "test_acc": prov["metrics"].get("test_acc"),
                "best_val_acc": prov["metrics"]["best_val_acc"],
                "best_epoch": prov["metrics"]["best_epoch"],
                "epochs": prov["epochs"],
                "precision": prov.get("precision"),
                "wall_s": r["wall_s"],
                "train_s": round(sum(h["train_seconds"] for h in history), 1),
                "first_epoch_val_99": next((h["epoch"] for h in history if (h["val_acc"] or 0) >= 0.99), None),
            }
            save(results)
        print(row, seed, results[row][str(seed)], flush=True)

    todo = [
        (row, s) for s in seeds for row in rows if str(s) not in results[row] and s in (row_seeds or {}).get(row, seeds)
    ]
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for f in [pool.submit(one, row, s) for row, s in todo]:
            f.result()
    return results


def bench_throughput(tmp: pathlib.Path, repeats: int, epochs: int) -> dict:
    """Images per second of a minimal hand-written loop and of the trainer, alternated, over MNIST-small's
    10,000 training images: the training loops alone, and whole calls (the trainer's `train()`, with and
    without TensorBoard, against the minimal loop alone and against a minimal script doing the same job:
    load the data, train, evaluate the test split, save the weights)."""
    import torch

    from zoo.card import ModelCard
    from zoo.data.datasets import open_source, standardize, to_unit
    from zoo.models import create
    from zoo.train import board, precision
    from zoo.train.trainer import TrainConfig, train

    batch = 128
    fmt = precision.memory_format("lenet5")  # the trainer's: the minimal loop is given the same

    def minimal(job: bool) -> tuple[float, int]:
        """(seconds, images trained on) of the minimal loop, or of the minimal job around it."""
        start = time.perf_counter()
        card = ModelCard.for_model("lenet")
        sets = open_source("mnist-small").load(card, progress=False)[0]
        x_all, y_all = standardize(to_unit(sets["train"].images), card), sets["train"].labels
        torch.manual_seed(0)
        model = create("lenet").to(memory_format=fmt)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        model.train()
        if not job:
            start = time.perf_counter()  # the loop alone
        for _ in range(epochs):
            order = torch.randperm(len(x_all))
            for i in range(0, len(order) - batch + 1, batch):
                idx = order[i : i + batch]
                loss = torch.nn.functional.cross_entropy(model(x_all[idx].contiguous(memory_format=fmt)), y_all[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        if job:
            model.eval()
            with torch.no_grad():
                x_test = standardize(to_unit(sets["test"].images), card)
                correct = sum(
                    int((model(xb).argmax(1) == yb).sum())
                    for xb, yb in zip(x_test.split(256), sets["test"].labels.split(256))
                )
            assert correct > 0
            torch.save(model.state_dict(), tmp / "minimal.pt")
        return time.perf_counter() - start, len(x_all) // batch * batch * epochs

    def trainer(k: int, tensorboard: bool) -> tuple[float, float, int]:
        """(loop seconds, whole-call seconds, images trained on) of `train()`."""
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
            tensorboard=tensorboard,
            output=str(tmp / f"throughput{k}-{tensorboard}"),
        )
        start = time.perf_counter()
        result = train(cfg, log=lambda s: None)
        whole = time.perf_counter() - start
        seen = round(sum(h["images_per_s"] * h["train_seconds"] for h in result.history))
        return sum(h["train_seconds"] for h in result.history), whole, seen

    minimal(False), minimal(True), trainer(-1, True)  # warm up: first-call allocations, lazy imports
    m = {name: [] for name in ("loop", "job", "trainer_loop", "whole", "whole_tb")}
    for k in range(repeats):  # alternated, so each set sees the same load on a shared machine
        secs, n = minimal(False)
        m["loop"].append(n / secs)
        secs, n = minimal(True)
        m["job"].append(n / secs)
        loop_s, whole_s, n = trainer(k, False)
        m["trainer_loop"].append(n / loop_s)
        m["whole"].append(n / whole_s)
        m["whole_tb"].append(n / trainer(k, True)[1])
    ratio = lambda a, b: round(statistics.median(x / y for x, y in zip(m[a], m[b])), 3)  # noqa: E731
    return {
        "batch_size": batch,
        "images": 10_000,
        "epochs_per_measure": epochs,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "memory_format": "channels_last" if fmt == torch.channels_last else "contiguous",
        "tensorboard_installed": board.available(),
        "img_s_best": {k: round(max(v), 1) for k, v in m.items()},
        "ratio_loop": ratio("trainer_loop", "loop"),
        "ratio_run": ratio("whole", "loop"),
        "ratio_run_tb": ratio("whole_tb", "loop"),
        "ratio_run_vs_job": ratio("whole", "job"),
        "ratio_run_tb_vs_job": ratio("whole_tb", "job"),
        "all": {k: [round(x) for x in v] for k, v in m.items()},
    }


def _when(r: dict) -> str:
    cpu = r.get("cpu") or {}
    where = f"{cpu.get('name', '?')}, {cpu.get('cores', '?')} cores" if cpu else "CPU not recorded"
    return f"{r['measured']}, {where}, load average {r['loadavg_start']}-{r['loadavg_end']}"


def _pct(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mean = 100 * statistics.mean(values)
    return f"{mean:.2f} % ({100 * min(values):.2f}-{100 * max(values):.2f})" if len(values) > 1 else f"{mean:.2f} %"


def _md_default(d: dict) -> list[str]:
    lines = [f"## `{d['command']}` (MNIST-small, the defaults)", "", f"Goal: {d['goal']}. {_when(d)}.", ""]
    lines += [
        "| code | wall time, median | all | epochs | test accuracy | peak RSS |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in [k for k in d if isinstance(d[k], dict) and "wall_s" in d[k]]:
        r = d[name]
        label = "this commit" if name == "now" else f"before ({name})"
        lines.append(
            f"| {label} | {r['wall_s']:.1f} s | {', '.join(f'{w:.1f}' for w in r['wall_s_all'])} s | {r['epochs']} "
            f"| {100 * r['test_acc']:.2f} % ({r['test_n']:,}) | {r['peak_rss_mb']:.0f} MB |"
        )
    return lines + [""]


def chosen_row() -> str | None:
    """The RECIPE_ROWS row that is LeNet-5's recipe for MNIST (zoo/models/lenet.py), if one is."""
    from zoo.models import get_spec

    def value(v: object) -> object:
        try:
            return float(v)
        except ValueError:
            return v

    recipe = {f"--{k.replace('_', '-')}": value(v) for k, v in get_spec("lenet").recipes.get("mnist", {}).items()}
    rows = {row: {k: value(v) for k, v in {**_BASE, **o}.items()} for row, o in RECIPE_ROWS.items()}
    return next((row for row, options in rows.items() if options == recipe), None)


def _md_runs(title: str, intro: str, r: dict, test_label: str, chosen: str | None = None) -> list[str]:
    lines = [title, "", intro, "", _when(r) + ".", ""]
    lines += [
        f"| run | seeds | {test_label} | best validation accuracy | best epoch | first epoch >= 99.0 % val "
        "| minutes (1 thread) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row, seeds in r["runs"].items():
        rs = list(seeds.values())
        if not rs:
            continue
        first = [x["first_epoch_val_99"] for x in rs]
        lines.append(
            f"| {f'**{row}: the recipe**' if row == chosen else row} | {len(rs)} "
            f"| {_pct([x['test_acc'] for x in rs])} | {_pct([x['best_val_acc'] for x in rs])} "
            f"| {', '.join(str(x['best_epoch']) for x in rs)} | {', '.join(str(f) if f else '-' for f in first)} "
            f"| {statistics.mean(x['wall_s'] for x in rs) / 60:.1f} |"
        )
    return lines + [""]


def _md_target(t: dict) -> list[str]:
    return [
        "## Time to 99.0 % validation accuracy (LeNet-5, full MNIST, the recipe's defaults)",
        "",
        f"`{t['command']}` ({t['threads']} threads; {_when(t)}):",
        "",
        "| validation reached 99.0 % | at epoch | epochs' wall time | whole command | test accuracy there |",
        "| --- | --- | --- | --- | --- |",
        f"| {100 * t['val_acc']:.2f} % | {t['epoch']} of {t['of_epochs']} | {t['epochs_s']:.1f} s "
        f"| {t['wall_s']:.1f} s | {100 * t['test_acc']:.2f} % |",
        "",
        f"Its first line: `{t['first_line']}`",
        "",
    ]


def _md_speed(sp: dict) -> list[str]:
    native = sp["bf16_native"] == "bfloat16"
    lines = [
        "## Training speed per family: float32 and bfloat16, contiguous and channels_last",
        "",
        f"Images per second of training steps (forward, loss, backward; `zoo.train.precision.probe`, the "
        f"--amp auto probe: 1 untimed step, then {sp.get('steps', 3)}), {sp['threads']} threads, {_when(sp)}. "
        "bfloat16 is "
        + (
            "native on this CPU."
            if native
            else "**emulated** on this CPU (no AVX512-BF16 or AMX-BF16): `--amp auto` keeps float32 here and "
            f"`--amp on` is refused; emulated bfloat16 is timed only where float32 runs {EMULATED_FLOOR:.0f} img/s "
            "or more (a step of the others takes minutes)."
        )
        + " The last column is what the model's spec says (zoo/models), from the float32 columns of this and "
        "other runs: AlexNet's ratio moved between 0.71x and 1.20x over five measurements (about 1.0x), so its "
        "spec keeps the contiguous format; LeNet, GoogLeNet and ResNet-18 gained in every one.",
        "",
        "| model | input, batch | float32 | float32 channels_last | ratio | bfloat16 | bfloat16 channels_last "
        "| best bfloat16 / best float32 | spec: channels_last |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in sp["rows"]:
        f32 = (r["float32_contiguous_img_s"], r["float32_channels_last_img_s"])
        b16 = (r["bfloat16_contiguous_img_s"], r["bfloat16_channels_last_img_s"])
        ratio = f"{max(b16) / max(f32):.2f}x" if None not in b16 else "-"
        cells = " | ".join("not timed" if v is None else f"{v:,.1f}" for v in b16)
        lines.append(
            f"| {r['model']} | {r['input']}x{r['input']}, {r['batch']} | {f32[0]:,.1f} | {f32[1]:,.1f} "
            f"| {f32[1] / f32[0]:.2f}x | {cells} | {ratio} | {'yes' if r['channels_last_in_spec'] else 'no'} |"
        )
    return lines + [""]


def _md_throughput(t: dict) -> list[str]:
    best = t["img_s_best"]
    tb = "" if t["tensorboard_installed"] else " (tensorboard not installed: nothing written)"
    lines = [
        "## The trainer against a minimal PyTorch loop",
        "",
        f"{_when(t)}. The median ratio of {t['repeats']} alternated measurements of {t['epochs_per_measure']} "
        f"epoch(s) over MNIST-small's {t['images']:,} training images (batch {t['batch_size']}, {t['threads']} "
        f"torch threads, {t['memory_format']} for both, no augmentation, constant learning rate, no "
        "validation split; the trainer's test split is MNIST-small's 2,000).",
        "",
        "| measure | trainer / baseline | best img/s, trainer vs baseline | goal |",
        "| --- | --- | --- | --- |",
        f"| training loop vs the minimal loop | {t['ratio_loop']:.2f}x | {best['trainer_loop']:,.0f} vs "
        f"{best['loop']:,.0f} | >= 0.95x |",
        f"| whole `train()` call vs the minimal loop, no TensorBoard | {t['ratio_run']:.2f}x | {best['whole']:,.0f} "
        f"vs {best['loop']:,.0f} | >= 0.9x |",
        f"| the same with TensorBoard{tb} | {t['ratio_run_tb']:.2f}x | {best['whole_tb']:,.0f} vs "
        f"{best['loop']:,.0f} | |",
        f"| whole `train()` call vs a minimal script doing the same job, no TensorBoard | "
        f"{t['ratio_run_vs_job']:.2f}x | {best['whole']:,.0f} vs {best['job']:,.0f} | |",
        f"| the same with TensorBoard | {t['ratio_run_tb_vs_job']:.2f}x | {best['whole_tb']:,.0f} vs "
        f"{best['job']:,.0f} | |",
        "",
        "The trainer's loop covers what it does per batch (uint8 to float, standardize, forward, loss, "
        "backward, step, running loss and accuracy, progress bar); the minimal loop indexes pre-normalized "
        "float tensors. The whole call adds start-up (data, model, checks), the epoch's files (weights, "
        "checkpoint, card, history, curves.png), the test evaluation with the best weights and the final "
        "card; with TensorBoard, its import, the model graph and the event files. The minimal job: load "
        "the same data, the same loop, evaluate the test split, `torch.save` the weights.",
        "",
    ]
    return lines


RECIPE_INTRO = (
    "Test: the last 10,000 images of MNIST's training file, held out (never trained on, never used to pick "
    "the weights); validation: 10 % of the other 50,000, picked by the seed. Accuracy: mean (min-max) over "
    "the seeds. Every option is written out (`RECIPE_ROWS` in the script)."
)
AMP_INTRO = (
    "Same options, same seeds, float32 against bfloat16 autocast (`--amp off` / `--amp bfloat16`); "
    "ants/bees has no test split, its validation folder is the measure."
)


def write_markdown(results: dict, path: pathlib.Path) -> None:
    lines = ["# Training benchmarks", "", "Written by `python scripts/bench_train.py` (see its docstring).", ""]
    if "default" in results and "now" in results["default"]:
        lines += _md_default(results["default"])
    if "recipe" in results:
        title = "## LeNet-5 on the full MNIST: the recipe ablation"
        lines += _md_runs(title, RECIPE_INTRO, results["recipe"], "held-out test accuracy", chosen_row())
    if "target" in results:
        lines += _md_target(results["target"])
    if "amp" in results:
        lines += _md_runs("## bfloat16 against float32: accuracy", AMP_INTRO, results["amp"], "test accuracy")
    if "speed" in results:
        lines += _md_speed(results["speed"])
    if "throughput" in results:
        lines += _md_throughput(results["throughput"])
    atomic.write_text(path, "\n".join(lines))


PARTS = ("default", "recipe", "target", "amp", "speed", "throughput")


def run_part(part: str, a: argparse.Namespace, tmp: pathlib.Path, results: dict, save: Callable) -> dict:
    if part == "default":
        return bench_default(tmp, a.default_repeats, a.before)
    if part == "target":
        return bench_target(tmp, a.mnist)
    if part == "speed":
        return bench_speed()
    if part == "throughput":
        return bench_throughput(tmp, a.repeats, a.epochs)
    rows, seeds = (recipe_rows(a.mnist), RECIPE_SEEDS) if part == "recipe" else (AMP_ROWS, AMP_SEEDS)
    done = results.get(part, {}).get("runs", {})
    return {"runs": bench_runs(tmp, rows, seeds, done, save, a.jobs, AMP_ROW_SEEDS if part == "amp" else None)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="default,target,speed,throughput", help=f"a subset of {','.join(PARTS)}")
    p.add_argument("--before", metavar="REV", help="default: also time the code of this commit, alternated")
    p.add_argument("--mnist", type=pathlib.Path, default=MNIST)
    p.add_argument("--repeats", type=int, default=9, help="throughput measurements")
    p.add_argument("--default-repeats", type=int, default=3, help="runs of `zoo train lenet`")
    p.add_argument("--epochs", type=int, default=1, help="epochs per throughput measurement")
    p.add_argument("--jobs", type=int, default=2, help="recipe and amp runs at a time (one thread each)")
    p.add_argument("--output", type=pathlib.Path, default=ROOT / "benchmarks")
    a = p.parse_args()
    json_path = a.output / "train.json"
    results = json.loads(json_path.read_text()) if json_path.is_file() else {}
    for old in ("full", "machine"):  # the entries of earlier versions of this script
        results.pop(old, None)
    with tempfile.TemporaryDirectory() as tmp:
        for part in [q for q in PARTS if q in a.parts.split(",")]:
            context = {
                "measured": datetime.datetime.now().isoformat(timespec="minutes"),
                "loadavg_start": round(os.getloadavg()[0], 2),
                "cpu": hardware.cpu().to_dict(),
                "python": platform.python_version(),
            }

            def save(runs: dict, part=part, context=context) -> None:
                results[part] = {**results.get(part, {}), **context, "runs": runs}
                atomic.write_text(json_path, json.dumps(results, indent=2) + "\n")

            r = run_part(part, a, pathlib.Path(tmp), results, save)
            results[part] = {**r, **context, "loadavg_end": round(os.getloadavg()[0], 2)}
            atomic.write_text(json_path, json.dumps(results, indent=2) + "\n")
            print(part, json.dumps(results[part])[:2000], flush=True)
    write_markdown(results, a.output / "train.md")
    print(f"wrote {json_path} and {a.output / 'train.md'}")


if __name__ == "__main__":
    main()
