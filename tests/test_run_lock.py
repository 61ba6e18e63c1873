"""One writer per run directory (zoo.runlock): two `zoo train --output SAME` started together, `--resume`
and `zoo export` of a run in progress, and the lock a killed run leaves. Real processes, real runs."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner
from test_train import ENV, tiny_mnist  # noqa: F401  (a fixture)

from zoo import rundir, runlock
from zoo.cli import main
from zoo.train.trainer import TrainConfig, train

QUICK = ("--epochs", 1, "--batch-size", 16, "--workers", 0, "--augment", "none", "--amp", "off", "--no-tensorboard")


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(output: str) -> bool:
    lines = output.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith("Error: ")


def zoo_train(*args) -> subprocess.Popen:
    command = [sys.executable, "-m", "zoo", "train", *map(str, args)]
    return subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def run(tiny_mnist, tmp_path_factory):  # noqa: F811
    """A finished one-epoch run of LeNet (the tests take its lock, never change it)."""
    path = tmp_path_factory.mktemp("lock") / "run"
    cfg = TrainConfig(
        arch="lenet",
        data=str(tiny_mnist),
        epochs=1,
        batch_size=32,
        workers=0,
        augment="none",
        amp="off",
        tensorboard=False,
        output=str(path),
    )
    train(cfg, log=lambda s: None)
    return path


@pytest.mark.slow  # two trainings at once, 5 s; a run in progress refusing others stays in the quick set
def test_two_runs_with_the_same_output_one_writes_the_other_names_it(tiny_mnist, tmp_path):  # noqa: F811
    same = tmp_path / "same"
    procs = {
        seed: zoo_train("lenet", "--data", tiny_mnist, *QUICK, "--seed", seed, "--output", same) for seed in (1, 2)
    }
    done = {seed: (*p.communicate(timeout=120), p.returncode) for seed, p in procs.items()}
    ok = [seed for seed, (_, _, code) in done.items() if code == 0]
    assert len(ok) == 1, done
    winner, loser = ok[0], 3 - ok[0]
    out, err, code = done[loser]
    assert code != 0 and out == "" and one_line_error(err), err
    assert f"process {procs[winner].pid}" in err and "in use" in err, err
    assert f"wrote {same}" in done[winner][0]
    # what the run directory holds is the winner's run, finished, and nothing of the lock is left
    card = json.loads((same / rundir.CARD).read_text())
    assert card["provenance"]["seed"] == winner and card["provenance"]["finished"] is True
    assert not (same / rundir.LOCK).exists()


def test_resume_export_and_evaluate_of_a_run_in_progress_are_refused_naming_the_process(run):
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    with runlock.lock(run, advice="the test holds it"):  # a `zoo train` writing the run, as far as anyone can tell
        resumed = cli("train", "--resume", run, "--epochs", 2, "--workers", 0)
        exported = cli("export", run)
        evaluated = cli("evaluate", run)  # it draws confusion.png into the run
    for r in (resumed, exported, evaluated):
        assert r.exit_code != 0 and one_line_error(r.output), r.output
        assert f"process {os.getpid()}" in r.output and "in use" in r.output, r.output
    assert "resume it once that process has ended" in resumed.output
    assert "export it once the run has finished" in exported.output
    assert "evaluate it once the run has finished" in evaluated.output
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before  # nothing written, no model.onnx


def test_a_run_that_fails_after_making_its_directory_leaves_none(tiny_mnist, tmp_path):  # noqa: F811
    """The directory is made (and locked) before the data is loaded: a run that stops there removes it
    again, as before the lock, when nothing was made before the first epoch ended. (A guard of the new
    directory-making, so this one passes before it too.)"""
    r = cli("train", "lenet", "--data", tiny_mnist, *QUICK, "--val-split", 0, "--target-accuracy", 0.5,
            "--output", tmp_path / "new")  # fmt: skip
    assert one_line_error(r.output) and "needs validation data" in r.output, r.output
    assert not (tmp_path / "new").exists()


@pytest.mark.slow  # a training killed and resumed, 5 s: the full suite runs it
def test_a_lock_left_by_a_killed_run_does_not_block_its_resume(tiny_mnist, tmp_path):  # noqa: F811
    killed = tmp_path / "killed"
    proc = zoo_train("lenet", "--data", tiny_mnist, *QUICK, "--epochs", 50, "--output", killed)
    deadline = time.monotonic() + 120
    while not (killed / rundir.CHECKPOINT).is_file() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    left = (killed / rundir.LOCK).read_text()
    assert left.strip() == str(proc.pid)  # the lock file stays, naming a process that holds it no longer
    done = torch.load(killed / rundir.CHECKPOINT, weights_only=True)["state"]["epoch"]
    r = cli("train", "--resume", killed, "--epochs", done + 1, "--workers", 0)
    assert r.exit_code == 0, r.output
    assert f"wrote {killed}" in r.output and not (killed / rundir.LOCK).exists()


HOLDER = """
import os, sys, time
from zoo import runlock
runlock.lock(sys.argv[1])
ready, started = os.pipe()
child = os.fork()
if child == 0:  # a child that outlives its parent, as a killed run's DataLoader workers do for seconds
    os.write(started, b"!")  # it runs: what happens in a child at fork has happened
    time.sleep(60)
    os._exit(0)
os.read(ready, 1)
print(child, flush=True)
time.sleep(60)
"""


def test_the_lock_ends_with_its_holder_not_with_the_children_it_forked(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], env=ENV, stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    try:
        with pytest.raises(runlock.RunBusy, match=f"process {proc.pid} "):
            runlock.check_idle(folder, "wait")
        proc.kill()
        proc.wait()
        os.kill(child, 0)  # the child is still there
        runlock.check_idle(folder, "wait")
        with runlock.lock(folder):
            assert (folder / rundir.LOCK).read_text().strip() == str(os.getpid())
    finally:
        proc.kill()
        os.kill(child, signal.SIGKILL)
