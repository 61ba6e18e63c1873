"""The trainer, `zoo train`, `zoo evaluate`, `zoo augment-preview`: real (tiny) data, real runs."""

import csv
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

from zoo import rundir
from zoo.card import ModelCard
from zoo.cli import main
from zoo.data import mnist
from zoo.train.trainer import TrainConfig, TrainError, lr_at, train

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r


def write_idx(directory, prefix, images, labels):
    directory.mkdir(parents=True, exist_ok=True)
    for kind, arr, rank in (("images", images, 3), ("labels", labels.astype(np.uint8), 1)):
        header = bytes([0, 0, 0x08, rank]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
        (directory / f"{prefix}-{kind}-idx{rank}-ubyte").write_bytes(header + arr.tobytes())


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory):
    """400 training and 200 test digits of MNIST-small, as an IDX directory."""
    d = tmp_path_factory.mktemp("mnist")
    small = mnist.load_small()
    (xt, yt), (xs, ys) = small["train"], small["test"]
    write_idx(d, "train", xt[::25], yt[::25])
    write_idx(d, "t10k", xs[::10], ys[::10])
    return d


def make_folder(root, classes=("ants", "bees", "wasps"), n=8, size=(40, 30)):
    rng = np.random.default_rng(len(classes) + n)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = rng.integers(0, 120, (size[1], size[0], 3), dtype=np.uint8)
            arr[..., c % 3] += 120  # a colour per class: learnable
            Image.fromarray(arr).save(root / name / f"{i}.{'jpg' if i % 2 else 'png'}")
    return root


def quick(tiny_mnist, tmp_path, name="run", **kw):
    options = dict(
        data=str(tiny_mnist),
        epochs=2,
        batch_size=16,
        optimizer="adam",
        lr=3e-3,
        workers=0,
        augment="none",
        label_smoothing=0.0,
        output=str(tmp_path / name),
    )
    log = kw.pop("log", lambda s: None)
    options.update(kw)
    return train(TrainConfig(**options), log=log)


def test_run_directory_is_complete(tiny_mnist, tmp_path):
    result = quick(tiny_mnist, tmp_path, val_split=0.25, snapshot_every=1)
    run = tmp_path / "run"
    for name in (
        rundir.CARD,
        rundir.WEIGHTS,
        rundir.LAST,
        rundir.CHECKPOINT,
        rundir.HISTORY_CSV,
        rundir.HISTORY_JSON,
        rundir.CURVES,
        "epoch-001.safetensors",
        "epoch-002.safetensors",
    ):
        assert (run / name).is_file(), name
    assert not list(run.glob(".*.tmp"))  # no temporary file left by the atomic writes
    ckpt = torch.load(run / rundir.CHECKPOINT, weights_only=True)
    assert ckpt["state"]["epoch"] == 2 and ckpt["config"]["data"] == str(tiny_mnist)
    history = json.loads((run / rundir.HISTORY_JSON).read_text())
    rows = list(csv.DictReader(open(run / rundir.HISTORY_CSV)))
    assert [r["epoch"] for r in history] == [1, 2] and len(rows) == 2
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert {"train_loss", "val_loss", "val_acc", "lr", "seconds"} <= set(rows[0])
    card = ModelCard.load(run / rundir.CARD)
    prov = card.provenance
    assert card.class_names == [str(d) for d in range(10)] and card.input_size == [28, 28]
    assert prov["data"] == {
        "source": str(tiny_mnist),
        "train": 300,
        "val": 100,
        "test": 200,
        "val_split": "100 random of train (seed 0)",
    }
    assert prov["epochs"] == 2 and prov["seed"] == 0 and prov["finished"] is True
    assert prov["metrics"]["best_val_acc"] == max(r["val_acc"] for r in history)
    assert prov["metrics"]["test_acc"] == result.test.accuracy and result.test.n == 200
    assert result.test.accuracy > 0.25  # 2 short epochs on 300 digits: well above chance (0.1)
    model, _ = rundir.load_model(run)
    best = history.index(max(history, key=lambda r: r["val_acc"])) + 1
    snap = load_file(str(run / f"epoch-{best:03d}.safetensors"))
    assert all(torch.equal(v, snap[k]) for k, v in model.state_dict().items())  # best = that epoch


@pytest.mark.slow  # a training killed mid-run and resumed, 5-8 s: the full suite runs it
def test_killed_run_resumes_to_the_same_weights(tiny_mnist, tmp_path, monkeypatch):
    """Kill a run after its first epoch, resume it: the weights equal an uninterrupted run's, exactly
    (seeded shuffling and augmentation, optimizer state, the cosine schedule over all epochs)."""
    # --amp off in both: auto's choice is timed (a probe), and a busy machine may choose otherwise per run
    kw = dict(epochs=3, augment="rotate=10,shift=0.1,invert=0.3", val_split=0.2, amp="off")
    quick(tiny_mnist, tmp_path, "straight", **kw)
    killed = tmp_path / "killed"
    args = [
        "--data",
        tiny_mnist,
        "--epochs",
        3,
        "--batch-size",
        16,
        "--optimizer",
        "adam",
        "--lr",
        3e-3,
        "--workers",
        0,
        "--augment",
        kw["augment"],
        "--label-smoothing",
        0,
        "--val-split",
        0.2,
        "--amp",
        "off",
        "--output",
        killed,
        "--threads",
        torch.get_num_threads(),
    ]  # the straight run's count
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoo", "train", "lenet", *map(str, args)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not (killed / rundir.HISTORY_JSON).is_file() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    done = torch.load(killed / rundir.CHECKPOINT, weights_only=True)["state"]["epoch"]
    assert 1 <= done < 3, "the run finished before it could be killed"
    # the machine now says another count (as a busier machine's default would): the run's own is taken
    monkeypatch.setenv("OMP_NUM_THREADS", str(1 if torch.get_num_threads() > 1 else 2))
    r = cli("train", "--resume", killed)
    assert r.exit_code == 0, r.output
    assert f"epoch {done + 1}/3" in r.output and f"epoch {done}/3" not in r.output
    a = load_file(str(tmp_path / "straight" / rundir.LAST))
    b = load_file(str(killed / rundir.LAST))
    # the same sums in the same order (the run's thread count): exact, bit for bit
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ha = json.loads((tmp_path / "straight" / rundir.HISTORY_JSON).read_text())
    hb = json.loads((killed / rundir.HISTORY_JSON).read_text())
    assert [r["val_loss"] for r in ha] == [r["val_loss"] for r in hb]
    # resuming keeps the run's options; a finished run needs more epochs to go on
    r = cli("train", "--resume", killed, "--lr", 0.1)
    assert r.exit_code != 0 and "--lr is fixed" in r.output
    r = cli("train", "--resume", killed)
    assert r.exit_code != 0 and "already has 3 epochs" in r.output


def test_accumulate_equals_a_larger_batch(tiny_mnist, tmp_path):
    """Ten steps of batch 40 against ten of two accumulated batches of 20: the same updates up to float32
    rounding. Plain SGD, so an update is lr times the gradient (Adam divides by the gradient's own scale,
    which turns a rounding difference in a near-zero gradient into a step of up to lr: no bound holds).

    The tolerance, norm-wise per tensor on the update (w - w0): the two runs sum the same per-digit terms in
    another order (and with another thread count, another order again), and float32 rounds each sum to
    a relative error of order sqrt(K) u (u = 2^-24 = 6e-8, K the terms of one sum: 40 digits x up to
    28 x 28 positions for a conv weight's gradient, ~1e-5 at worst for random rounding); taking w - w0
    adds u |w| / |w - w0|. Measured: 0.4-2.6e-6 with 1 and 2 threads. 1e-4 stays above every such bound
    and far below a wrong accumulation: a missing 1/accumulate doubles the update (error 1.0), a lost
    half-batch is off by ~0.5."""
    kw = dict(epochs=1, schedule="constant", optimizer="sgd", lr=0.05, momentum=0.0, weight_decay=0.0)
    kw.update(val_split=0, amp="off")
    # lr 1e-30 leaves every weight as initialized: lr * g is below half an ulp of any weight
    start = quick(tiny_mnist, tmp_path, "start", batch_size=40, **{**kw, "lr": 1e-30}).model.state_dict()
    one = quick(tiny_mnist, tmp_path, "big", batch_size=40, **kw).model.state_dict()
    two = quick(tiny_mnist, tmp_path, "acc", batch_size=20, accumulate=2, **kw).model.state_dict()
    for k, w0 in start.items():
        if w0.dtype.is_floating_point:
            big, acc = one[k] - w0, two[k] - w0
            assert big.norm() > 0, k
            assert (acc - big).norm() <= 1e-4 * big.norm(), k


def test_lr_schedules():
    # the schedule's formula in Python floats (float64) both sides: approx's rel 1e-6 is ~1e10 roundings
    cfg = TrainConfig(lr=0.01, schedule="exp", epochs=10)
    assert lr_at(cfg, 3, 0, 10, 1.0) == pytest.approx(0.01 * 0.6**3)  # the lecture's decay
    cfg = TrainConfig(lr=0.1, schedule="step", step_size=2, gamma=0.5)
    assert [lr_at(cfg, e, 0, 1, 1.0) for e in range(5)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    cfg = TrainConfig(lr=0.1, schedule="cosine", epochs=4, min_lr=0.001, warmup=1)
    assert lr_at(cfg, 0, 0, 10, 1.0) < 0.011 and lr_at(cfg, 0, 9, 10, 1.0) == pytest.approx(
        0.001 + 0.099 * 0.5 * (1 + np.cos(np.pi * 0.9 / 4))
    )
    assert lr_at(cfg, 3, 9, 10, 1.0) == pytest.approx(0.001 + 0.099 * 0.5 * (1 + np.cos(np.pi * 3.9 / 4)))
    assert lr_at(TrainConfig(lr=0.1, schedule="plateau"), 7, 0, 10, 0.01) == pytest.approx(0.001)


def test_plateau_schedule_decays(tiny_mnist, tmp_path):
    # with lr so small nothing improves, the plateau schedule decays after `patience` epochs
    result = quick(tiny_mnist, tmp_path, epochs=4, lr=1e-9, schedule="plateau", patience=0, gamma=0.5, val_split=0.25)
    lrs = [r["lr"] for r in result.history]
    assert lrs[0] == pytest.approx(1e-9) and lrs[-1] < lrs[0]  # float64 lr as given: exact


def test_resnet_on_image_folders_and_evaluate(tmp_path):
    train_dir = make_folder(tmp_path / "train")
    make_folder(tmp_path / "val", n=3)
    make_folder(tmp_path / "test", n=4)
    run = tmp_path / "run"
    r = cli(
        "train",
        "resnet18",
        "--data",
        train_dir,
        "--val",
        tmp_path / "val",
        "--test",
        tmp_path / "test",
        "--input-size",
        32,
        "--epochs",
        1,
        "--batch-size",
        8,
        "--lr",
        0.01,
        "--workers",
        0,
        "--augment",
        "hflip,crop=2",
        "--output",
        run,
    )
    assert r.exit_code == 0, r.output
    card = ModelCard.load(run / rundir.CARD)
    assert card.input_size == [32, 32] and card.in_channels == 3 and card.class_names == ["ants", "bees", "wasps"]
    assert card.provenance["augment"] == "hflip=0.5,crop=2"
    r = cli("evaluate", run, "--data", tmp_path / "test", "--format", "json", "--workers", 0)
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert {"accuracy", "top5", "per_class", "confusion", "loss", "n"} <= set(d)
    assert d["n"] == 12 and d["top5"] is None and sum(map(sum, d["confusion"])) == 12
    # k / 12 both times (exact in float64) from two forward passes, which agree unless an image's top two
    # logits lie within rounding (~1e-6) of each other; a wrong image or class is 1/12 off
    assert d["accuracy"] == pytest.approx(card.provenance["metrics"]["test_acc"])
    assert set(d["per_class"]) == {"ants", "bees", "wasps"} and (run / "confusion.png").is_file()
    # a folder with only some of the classes is fine for evaluation
    make_folder(tmp_path / "only_bees", classes=("bees",), n=2)
    r = cli("evaluate", run, "--data", tmp_path / "only_bees")
    assert r.exit_code == 0 and "2 images" in r.output and "confusion matrix" in r.output


def test_googlenet_trains_with_aux_heads_and_saves_without(tmp_path):
    make_folder(tmp_path / "data", classes=("a", "b"), n=4)
    result = train(
        TrainConfig(
            arch="googlenet",
            data=str(tmp_path / "data"),
            input_size=32,
            epochs=1,
            batch_size=8,
            val_split=0,
            workers=0,
            output=str(tmp_path / "run"),
        ),
        log=lambda s: None,
    )
    weights = load_file(str(tmp_path / "run" / rundir.WEIGHTS))
    assert not any(k.startswith("aux") for k in weights)
    assert any(
        k.startswith("aux1.") for k in torch.load(tmp_path / "run" / rundir.CHECKPOINT, weights_only=True)["model"]
    )
    model, card = rundir.load_model(tmp_path / "run")  # strict load of the deployable model
    assert result.history[0]["train_loss"] > 0 and card.num_classes == 2


def one_line_error(r):
    return r.exit_code != 0 and r.output.startswith("Error: ") and r.output.strip().count("\n") == 0


@pytest.mark.parametrize(
    "make, args, match",
    [
        (lambda d: d.mkdir(), [], "empty folder"),
        (lambda d: make_folder(d, classes=("one",)), [], "only one class"),
        (
            lambda d: (make_folder(d, classes=("a",)), (d / "b").mkdir(), (d / "b" / "x.svg").write_bytes(b"<svg/>")),
            [],
            "only .svg files",
        ),
        (lambda d: make_folder(d), ["--batch-size", 0], "--batch-size 0"),
        (lambda d: make_folder(d), ["--in-channels", 4], "--in-channels 4"),
        (lambda d: make_folder(d), ["--input-size", 8], "lenet5 cannot take 1x8x8"),
        (lambda d: make_folder(d), ["--augment", "spin=3"], "unknown augmentation 'spin'"),
    ],
)
def test_bad_input_one_line_and_nothing_written(tmp_path, make, args, match):
    data = tmp_path / "data"
    make(data)
    r = cli("train", "lenet", "--data", data, "--output", tmp_path / "run", "--workers", 0, *args)
    assert one_line_error(r), r.output
    assert match in r.output
    assert not (tmp_path / "run").exists()


def test_undecodable_files_are_skipped_in_one_warning(tmp_path):
    data = make_folder(tmp_path / "data", classes=("a", "b"), n=4)
    (data / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (data / "b" / "empty.png").write_bytes(b"")
    (data / "b" / "notes.txt").write_text("not an image")
    r = cli(
        "train", "lenet", "--data", data, "--epochs", 1, "--val-split", 0, "--workers", 0, "--output", tmp_path / "run"
    )
    assert r.exit_code == 0, r.output
    assert r.output.count("warning:") == 1 and "warning: skipped 3 files that are not readable images" in r.output


def test_existing_output_and_unknown_model(tmp_path, tiny_mnist):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    r = cli("train", "lenet", "--data", tiny_mnist, "--output", tmp_path / "run")
    assert one_line_error(r) and "already exists" in r.output
    r = cli("train", "lenet7")
    assert r.exit_code == 2 and "lenet" in r.output
    with pytest.raises(TrainError, match="nothing to resume"):
        TrainConfig.resumed(tmp_path / "run")


def test_augment_preview(tmp_path, tiny_mnist):
    out = tmp_path / "grid.png"
    r = cli(
        "augment-preview",
        "mnist-small",
        "--augment",
        "rotate=20,invert",
        "--output",
        out,
        "--samples",
        3,
        "--per-sample",
        4,
    )
    assert r.exit_code == 0, r.output
    assert Image.open(out).size[0] > 200
    quick(tiny_mnist, tmp_path, epochs=1, augment="shift=0.2")
    r = cli("augment-preview", tmp_path / "run", "--output", tmp_path / "run.png")
    assert r.exit_code == 0 and "shift=0.2" in r.output and (tmp_path / "run.png").is_file()
    r = cli("augment-preview", "mnist-small", "--output", out)
    assert one_line_error(r) and "--augment" in r.output


DDP_WORKER = """
import os, sys
from safetensors.torch import save_file
from zoo.train.trainer import TrainConfig, train
data, out = sys.argv[1], sys.argv[2]
result = train(TrainConfig(data=data, epochs=2, batch_size=16, val_split=0.25, workers=0,
                           augment="rotate=10", output=os.path.join(out, "run")), log=print)
rank = os.environ["RANK"]
save_file({k: v.contiguous() for k, v in result.model.state_dict().items()},
          os.path.join(out, f"rank{rank}.safetensors"))
"""


@pytest.mark.slow  # two training processes and a rendezvous, 10 s: the full suite runs it
def test_ddp_two_cpu_processes_end_with_the_same_weights(tmp_path, tiny_mnist):
    script = tmp_path / "worker.py"
    script.write_text(DDP_WORKER)
    env = {**ENV, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            str(script),
            str(tiny_mnist),
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    a, b = (load_file(str(tmp_path / f"rank{i}.safetensors")) for i in (0, 1))
    assert all(torch.equal(a[k], b[k]) for k in a)  # every rank applies the same all-reduced gradient: exact
    last = load_file(str(tmp_path / "run" / rundir.LAST))
    assert all(torch.equal(a[k], last[k]) for k in a)
    assert "x 2 processes" in r.stdout and r.stdout.count("epoch 2/2") == 1  # rank 0 alone logs
    history = json.loads((tmp_path / "run" / rundir.HISTORY_JSON).read_text())
    assert history[1]["train_loss"] < history[0]["train_loss"]
