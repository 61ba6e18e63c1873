"""Run files on disk: a damaged one ends every command in one line that names it (never a traceback,
never advice to load unsafely), a run killed before its test evaluation can be finished with --resume,
and every file of a run gets the mode of any file the user creates."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import traceback

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from test_train import tiny_mnist  # noqa: F401 (the fixture: 400 training and 200 test digits)

from zoo import rundir
from zoo.card import ONNX_METADATA_KEY
from zoo.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def cli(*args) -> tuple[int, str]:
    """`zoo ARGS` in this process: (exit code, output), with the traceback of an exception it let out."""
    r = CliRunner().invoke(main, [str(a) for a in args])
    escaped = r.exception is not None and not isinstance(r.exception, SystemExit)
    return r.exit_code, r.output + ("".join(traceback.format_exception(*r.exc_info)) if escaped else "")


def zoo_process(*args) -> tuple[int, str]:
    """The real `zoo` command in a process of its own (for `serve`, which would not return if it started)."""
    p = subprocess.run(
        [sys.executable, "-m", "zoo", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        env=ENV,
        timeout=120,
    )
    return p.returncode, p.stdout + p.stderr


@pytest.fixture(scope="module")
def trained(tiny_mnist, tmp_path_factory):  # noqa: F811
    """One real `zoo train` run (1 epoch on 360 digits, with a test split), exported to ONNX, and a digit
    image. Tests copy what they change."""
    root = tmp_path_factory.mktemp("trained")
    run = root / "lenet5-tiny"
    code, out = cli(
        "train", "lenet", "--data", tiny_mnist, "--epochs", 1, "--batch-size", 16, "--workers", 0, "--output", run
    )
    assert code == 0, out
    onnx = root / "exported"
    shutil.copytree(run, onnx)
    code, out = cli("export", onnx)
    assert code == 0, out
    image = root / "digit.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
    return run, onnx, image, tiny_mnist


def truncated_weights(run: pathlib.Path) -> pathlib.Path:
    f = run / rundir.WEIGHTS
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return f


def card_a_list(run: pathlib.Path) -> pathlib.Path:
    (run / rundir.CARD).write_text("[1, 2]\n")
    return run / rundir.CARD


def card_not_json(run: pathlib.Path) -> pathlib.Path:
    (run / rundir.CARD).write_text("{not json\n")
    return run / rundir.CARD


def card_without_num_classes(run: pathlib.Path) -> pathlib.Path:
    card = json.loads((run / rundir.CARD).read_text())
    del card["num_classes"]
    (run / rundir.CARD).write_text(json.dumps(card))
    return run / rundir.CARD


def card_with_wrong_types(run: pathlib.Path) -> pathlib.Path:
    card = json.loads((run / rundir.CARD).read_text())
    card["num_classes"], card["class_names"] = "ten", 10
    (run / rundir.CARD).write_text(json.dumps(card))
    return run / rundir.CARD


def card_of_another_model(run: pathlib.Path) -> pathlib.Path:
    """A card that reads well but describes a model these weights do not fit (5 classes, not 10)."""
    card = json.loads((run / rundir.CARD).read_text())
    card["num_classes"], card["class_names"] = 5, list("abcde")
    (run / rundir.CARD).write_text(json.dumps(card))
    return run / rundir.WEIGHTS


def card_of_an_unknown_model(run: pathlib.Path) -> pathlib.Path:
    card = json.loads((run / rundir.CARD).read_text())
    card["architecture"] = "lenet6"
    (run / rundir.CARD).write_text(json.dumps(card))
    return run / rundir.CARD


CORRUPTIONS = [
    truncated_weights,
    card_a_list,
    card_not_json,
    card_without_num_classes,
    card_with_wrong_types,
    card_of_another_model,
    card_of_an_unknown_model,
]

COMMANDS = {  # name -> the arguments after `zoo`, for a run directory
    "evaluate": lambda run, image, data, tmp: ["evaluate", run],
    "export": lambda run, image, data, tmp: ["export", run],
    "classify": lambda run, image, data, tmp: ["classify", run, image],
    "visualize": lambda run, image, data, tmp: ["visualize", run, image, "--output", tmp / "viz"],
    "features": lambda run, image, data, tmp: ["features", run, data, "--output", tmp / "f.npz"],
    "serve": lambda run, image, data, tmp: ["serve", run, "--port", 0],
}


def assert_one_line(code: int, output: str, file: pathlib.Path) -> None:
    assert code != 0, output
    assert "Traceback" not in output and "weights_only=False" not in output, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    assert str(file) in lines[0], output


def assert_ends_in_one_line(code: int, output: str, file: pathlib.Path) -> None:
    """`zoo serve` listens before its model loads (issue 22: live and not ready while a big model loads),
    so a model that fails to load is found after its start-up lines (the runtime chosen, where it listens)
    and uvicorn's own: it ends in one line naming the file, the only error, with no traceback."""
    assert code != 0, output
    assert "Traceback" not in output and "weights_only=False" not in output, output
    lines = output.strip().splitlines()
    assert lines[-1].startswith("Error: ") and str(file) in lines[-1], output
    assert [line for line in lines if "error" in line.lower()] == lines[-1:], output


def run_command(command: str, args: list) -> tuple[int, str]:
    return zoo_process(*args) if command == "serve" else cli(*args)


def matrix():
    """Every command with every corruption; in the fast subset, every command with a truncated weights
    file and every corruption with `zoo evaluate` (the rest is marked slow)."""
    for command in COMMANDS:
        for corrupt in CORRUPTIONS:
            fast = command == "evaluate" or corrupt is truncated_weights
            yield pytest.param(
                command, corrupt, id=f"{command}-{corrupt.__name__}", marks=() if fast else pytest.mark.slow
            )


@pytest.mark.parametrize(("command", "corrupt"), list(matrix()))
def test_a_damaged_run_file_ends_a_command_in_one_line(trained, tmp_path, command, corrupt):
    run, _, image, data = trained
    damaged = tmp_path / "damaged"
    shutil.copytree(run, damaged)
    file = corrupt(damaged)
    check = assert_ends_in_one_line if command == "serve" else assert_one_line
    check(*run_command(command, COMMANDS[command](damaged, image, data, tmp_path)), file)


@pytest.mark.parametrize("corrupt", [truncated_weights, card_a_list, card_not_json], ids=lambda f: f.__name__)
def test_a_damaged_run_as_pretrained_weights_ends_train_in_one_line(trained, tmp_path, corrupt):
    run, _, _, data = trained
    damaged = tmp_path / "damaged"
    shutil.copytree(run, damaged)
    file = corrupt(damaged)
    assert_one_line(
        *cli(
            "train",
            "lenet",
            "--pretrained",
            damaged,
            "--data",
            data,
            "--epochs",
            1,
            "--workers",
            0,
            "--output",
            tmp_path / "new",
        ),
        file,
    )
    assert not (tmp_path / "new").exists()


def garbage(path: pathlib.Path) -> None:
    path.write_bytes(b"this is not a checkpoint\n" * 8)


def truncated_zip(path: pathlib.Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("corrupt", [garbage, truncated_zip], ids=lambda f: f.__name__)
def test_a_damaged_checkpoint_ends_resume_in_one_line(trained, tmp_path, corrupt):
    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    corrupt(run / rundir.CHECKPOINT)
    assert_one_line(*cli("train", "--resume", run), run / rundir.CHECKPOINT)


@pytest.mark.parametrize("card", ["[1, 2]", "{not json", '{"format": "cnnzoo.card/1", "architecture": "lenet5"}'])
@pytest.mark.parametrize("command", ["classify", "serve"])
def test_an_onnx_file_with_a_broken_card_ends_in_one_line(trained, tmp_path, command, card):
    import onnx

    _, exported, image, _ = trained
    proto = onnx.load(str(exported / "model.onnx"))
    for prop in proto.metadata_props:
        if prop.key == ONNX_METADATA_KEY:
            prop.value = card
    file = tmp_path / "model.onnx"
    onnx.save(proto, str(file))
    args = ["classify", file, image] if command == "classify" else ["serve", file, "--port", 0]
    assert_one_line(*run_command(command, args), file)


def killed_before_the_test(run: pathlib.Path) -> None:
    """The run directory as a run killed after its last epoch's writes, before its test evaluation, leaves
    it: the card is the one each epoch writes (not finished, no test metrics)."""
    card = json.loads((run / rundir.CARD).read_text())
    metrics = card["provenance"]["metrics"]
    card["provenance"]["metrics"] = {k: v for k, v in metrics.items() if not k.startswith("test_")}
    card["provenance"]["finished"] = False
    (run / rundir.CARD).write_text(json.dumps(card, indent=2) + "\n")


def killed_before_the_card(run: pathlib.Path) -> None:
    """Killed in the first (and last) epoch right after the checkpoint was written: no history, card or
    curves yet."""
    for name in (rundir.CARD, rundir.HISTORY_CSV, rundir.HISTORY_JSON, rundir.CURVES):
        (run / name).unlink()


@pytest.mark.parametrize("kill", [killed_before_the_test, killed_before_the_card], ids=lambda f: f.__name__)
def test_resume_finishes_a_run_killed_after_its_last_epoch(trained, tmp_path, kill):
    finished = trained[0]
    run = tmp_path / "killed"
    shutil.copytree(finished, run)
    want = json.loads((finished / rundir.CARD).read_text())
    kill(run)
    if (run / rundir.CARD).exists():
        code, out = cli("train", "--resume", run)  # the card's thread count is taken again
    else:  # the thread count went with the card (it sums floats in its order): the run says so, --threads gives it
        code, out = cli("train", "--resume", run, "--threads", want["provenance"]["threads"])
        assert "pass --threads N" not in out
        no_count = tmp_path / "no-count"
        shutil.copytree(finished, no_count)
        kill(no_count)
        code_, out_ = cli("train", "--resume", no_count)
        assert code_ == 0 and "records no thread count" in out_ and "pass --threads N" in out_, out_
    assert code == 0, out
    card = json.loads((run / rundir.CARD).read_text())
    assert card["provenance"]["finished"] is True
    assert card["provenance"]["metrics"]["test_acc"] == want["provenance"]["metrics"]["test_acc"]
    assert card == want  # everything an uninterrupted run writes in its card
    for name in (rundir.HISTORY_CSV, rundir.HISTORY_JSON, rundir.WEIGHTS, rundir.LAST):
        assert (run / name).read_bytes() == (finished / name).read_bytes(), name
    assert (run / rundir.CURVES).is_file()
    code, out = cli("train", "--resume", run)  # a finished run needs more epochs to go on
    assert code != 0 and "already has 1 epochs" in out


def test_every_run_file_gets_the_mode_of_a_new_file(trained):
    umask = os.umask(0)
    os.umask(umask)
    run, exported, _, _ = trained
    modes = {f.name: oct(f.stat().st_mode & 0o777) for f in [*run.iterdir(), exported / "model.onnx"]}
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes


def test_run_files_follow_the_umask(tmp_path):
    """Written under umask 007 (a group-shared machine), weights, card and checkpoint are all 0660."""
    code = (
        "import torch; from zoo import atomic, rundir; from zoo.card import ModelCard\n"
        "from zoo.models import create\n"
        "import sys; run = sys.argv[1]\n"
        "rundir.save_weights(run + '/model.safetensors', create('lenet'))\n"
        "ModelCard.for_model('lenet').save(run + '/card.json')\n"
        "atomic.write_with(run + '/checkpoint.pt', lambda tmp: torch.save({'epoch': 1}, tmp))\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        env=ENV,
        check=True,
        timeout=120,
        preexec_fn=lambda: os.umask(0o007),
    )
    modes = {f.name: oct(f.stat().st_mode & 0o777) for f in tmp_path.iterdir()}
    assert modes == dict.fromkeys(["model.safetensors", "card.json", "checkpoint.pt"], oct(0o660)), modes
