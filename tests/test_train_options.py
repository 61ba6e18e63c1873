"""`zoo train --amp`, `--target-accuracy` and the TensorBoard event files: real (tiny) runs.

Whether the CPU computes bfloat16 natively is read from /proc/cpuinfo (`zoo.hardware.cpu`); the tests
that need one answer or the other give the trainer a CPU description with or without the flags, and
everything else is real: on a CPU without them, bfloat16 autocast runs emulated (slowly, but the same
arithmetic), which is what the resume test needs.
"""

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from test_train import quick, tiny_mnist  # noqa: F401 (the fixture)

from zoo import hardware, rundir
from zoo.card import ModelCard
from zoo.cli import main
from zoo.train import board
from zoo.train.trainer import TrainConfig, TrainError, train

NO_BF16 = hardware.Cpu("AMD EPYC (test)", frozenset({"avx2", "fma"}), 2)
AMX = hardware.Cpu("Intel Xeon (test)", frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_int8"}), 2)


@pytest.fixture
def cpu_is(monkeypatch):
    def use(cpu: hardware.Cpu) -> None:
        monkeypatch.setattr(hardware, "cpu", lambda: cpu)

    return use


def first_line(output: str) -> str:
    return output.splitlines()[0]


def test_amp_on_without_native_bf16_is_refused_and_auto_says_float32(cpu_is, tiny_mnist, tmp_path):  # noqa: F811
    cpu_is(NO_BF16)
    run = tmp_path / "run"
    args = ["train", "lenet", "--data", str(tiny_mnist), "--epochs", "1", "--output", str(run), "--workers", "0"]
    r = CliRunner().invoke(main, [*args, "--amp", "--device", "cpu"])
    assert r.exit_code == 1 and r.output.count("\n") == 1, r.output
    assert r.output.startswith("Error: --amp on: no native bfloat16 on this CPU, AMD EPYC (test)"), r.output
    assert "AVX512-BF16 or AMX-BF16" in r.output and not run.exists()
    r = CliRunner().invoke(main, args)  # --amp auto, the default
    assert r.exit_code == 0, r.output
    assert "float32 (--amp auto: no native bfloat16 on this CPU" in first_line(r.output)
    prov = ModelCard.load(run / rundir.CARD).provenance
    assert prov["precision"] == "float32" and prov["training"]["amp"] == "auto"


def test_amp_auto_probes_where_bf16_is_native(cpu_is, tiny_mnist, tmp_path):  # noqa: F811
    """Where the CPU says it has AMX, auto measures both precisions on the model and says what it found
    (on a CPU that only pretends, emulated bfloat16 is the slower one, and float32 is kept)."""
    cpu_is(AMX)
    lines = []
    result = quick(tiny_mnist, tmp_path, epochs=1, amp="auto", log=lines.append)
    assert "--amp auto: " in lines[0] and "x float32 in a probe" in lines[0], lines[0]
    chosen = result.card.provenance["precision"]
    assert chosen in ("float32", "bfloat16") and lines[0].split(", ")[3].startswith(chosen), lines[0]


class Killed(Exception):
    pass


@pytest.mark.slow  # three runs, in bfloat16 that is emulated where the CPU has no native BF16
def test_resume_with_bf16_autocast_reproduces_an_uninterrupted_run(cpu_is, tiny_mnist, tmp_path):  # noqa: F811
    cpu_is(AMX)
    kw = dict(epochs=3, amp="on", augment="rotate=10,shift=0.1", val_split=0.2, log_every=5)
    straight = quick(tiny_mnist, tmp_path, "straight", **kw)
    assert straight.card.provenance["precision"] == "bfloat16"

    def killer(line: str) -> None:
        if line.startswith("epoch 2/3"):  # after epoch 2's training, before its files: epoch 1 is saved
            raise Killed

    with pytest.raises(Killed):
        quick(tiny_mnist, tmp_path, "killed", log=killer, **kw)
    killed = tmp_path / "killed"
    assert torch.load(killed / rundir.CHECKPOINT, weights_only=True)["state"]["epoch"] == 1
    lines = []
    train(TrainConfig.resumed(killed), log=lines.append)
    assert "bfloat16 (as the run started)" in lines[0], lines[0]
    a, b = load_file(str(tmp_path / "straight" / rundir.LAST)), load_file(str(killed / rundir.LAST))
    # the same sums in the same order (the run's thread count taken again): exact, bit for bit
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    if board.available():  # what the killed run logged of epoch 2 is dropped: every step appears once
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(killed), size_guidance={"scalars": 0})
        events.Reload()
        # sorted: the event files are read in name order, and two that one process wrote in the same second
        # are ordered by a counter compared as text (...9 after ...10)
        assert sorted(e.step for e in events.Scalars("val/accuracy")) == [20, 40, 60]
        assert sorted(e.step for e in events.Scalars("step/loss")) == list(range(5, 61, 5))


def test_target_accuracy_stops_early_and_writes_a_complete_run(tiny_mnist, tmp_path):  # noqa: F811
    result = quick(tiny_mnist, tmp_path, epochs=6, val_split=0.25, target_accuracy=0.3)
    run = tmp_path / "run"
    history = json.loads((run / rundir.HISTORY_JSON).read_text())
    reached = next(i for i, r in enumerate(history, 1) if r["val_acc"] >= 0.3)
    assert len(history) == reached < 6
    prov = ModelCard.load(run / rundir.CARD).provenance
    assert prov["finished"] is True and prov["epochs"] == reached
    assert prov["stopped"].startswith("validation accuracy") and f"at epoch {reached} of 6" in prov["stopped"]
    assert prov["metrics"]["test_acc"] == result.test.accuracy and result.test.n == 200
    assert (run / rundir.WEIGHTS).is_file() and (run / rundir.CURVES).is_file()
    with pytest.raises(TrainError, match="stopped early and finished"):
        train(TrainConfig.resumed(run), log=lambda s: None)
    with pytest.raises(TrainError, match="--target-accuracy 30: needs validation data"):
        quick(tiny_mnist, tmp_path, "noval", val_split=0, target_accuracy=0.3)
    r = CliRunner().invoke(main, ["train", "lenet", "--target-accuracy", "101"])
    assert r.exit_code == 2 and "must be a fraction in (0, 1] or a percentage up to 100" in r.output


@pytest.mark.slow  # a training with TensorBoard, 4 s: the full suite runs it
def test_tensorboard_event_files_read_back(tiny_mnist, tmp_path):  # noqa: F811
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    quick(tiny_mnist, tmp_path, epochs=2, val_split=0.2, augment="rotate=10", log_every=5)
    run = tmp_path / "run"
    events = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    steps = len(json.loads((run / rundir.HISTORY_JSON).read_text()))
    for tag in ("train/loss", "train/accuracy", "val/loss", "val/accuracy", "lr", "images_per_s"):
        assert len(events.Scalars(tag)) == steps, tag
    per_epoch = 320 // 16  # 400 digits, a fifth held out, batches of 16
    assert [e.step for e in events.Scalars("val/accuracy")] == [per_epoch, 2 * per_epoch]
    assert [e.step for e in events.Scalars("step/loss")] == list(range(5, 2 * per_epoch + 1, 5))
    history = json.loads((run / rundir.HISTORY_JSON).read_text())
    assert [round(e.value, 5) for e in events.Scalars("val/accuracy")] == [round(r["val_acc"], 5) for r in history]
    assert tags["images"] == ["inputs/augmented"] and tags["graph"] is True
    quick(tiny_mnist, tmp_path, "quiet", epochs=1, tensorboard=False)
    assert not list((tmp_path / "quiet").glob(rundir.EVENTS_PREFIX + "*"))
    assert len(list(run.glob(rundir.EVENTS_PREFIX + "*"))) == 1


def test_the_mnist_recipe_is_the_default_for_mnist_and_given_options_win(tiny_mnist, tmp_path):  # noqa: F811
    """An MNIST IDX directory (here 400 digits of it) is "mnist": LeNet-5 takes its recipe (zoo/models) for
    every option not on the command line, says so on its second line, and the card records it."""
    from zoo.models import get_spec

    recipe = get_spec("lenet").recipes["mnist"]
    run = tmp_path / "run"
    args = ["train", "lenet", "--data", str(tiny_mnist), "--epochs", "1", "--batch-size", "16", "--workers", "0"]
    r = CliRunner().invoke(main, [*args, "--output", str(run)])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[1].startswith("recipe: lenet5 on mnist: --"), r.output
    training = ModelCard.load(run / rundir.CARD).provenance["training"]
    assert training["epochs"] == 1 and training["batch_size"] == 16 and training["recipe"].startswith("lenet5")
    assert all(training[k] == v for k, v in recipe.items() if k not in ("epochs", "batch_size"))
    assert TrainConfig(data="mnist-small").with_recipe() == TrainConfig(data="mnist-small")  # no recipe there
