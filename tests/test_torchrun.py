"""`zoo train` across nodes: real torchrun, two launchers ("nodes") on 127.0.0.1 with c10d rendezvous.

Each launcher is `python -m torch.distributed.run --nnodes 2 --nproc-per-node 1 --rdzv-backend c10d
--rdzv-endpoint 127.0.0.1:PORT`, the first with `--rdzv-conf is_host=1` (it hosts the rendezvous store:
torchrun would otherwise guess from the endpoint's address, and both launchers here have it), the second
with is_host=0. Gloo talks over the loopback (GLOO_SOCKET_IFNAME=lo, --local-addr 127.0.0.1). Every
process computes with one thread (OMP_NUM_THREADS=1), so runs compare bit for bit where they sum alike.
The data is a slice of MNIST-small (400 training digits, 100 of them validation), without augmentation.
"""

import json
import os
import pathlib
import signal
import subprocess
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_train import tiny_mnist  # noqa: F401  (a fixture)

from zoo import rundir
from zoo.child import free_port
from zoo.train import distributed, elastic
from zoo.train.trainer import TrainConfig, train

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    "OMP_NUM_THREADS": "1",
    "GLOO_SOCKET_IFNAME": "lo",
}
EPOCHS, BATCH = 8, 16  # per process: the two nodes' global batch is 32
TIMEOUT_S = 150
WEIGHT_REL = 1e-4  # two nodes against one process: see test_two_nodes_match_one_process_with_the_global_batch


def options(data, *extra):
    return [
        "--data",
        str(data),
        "--epochs",
        str(EPOCHS),
        "--batch-size",
        str(BATCH),
        "--val-split",
        "0.25",
        "--augment",
        "none",
        "--amp",
        "off",
        "--workers",
        "0",
        "--no-tensorboard",
        *map(str, extra),
    ]


def config(data, output, **changes) -> TrainConfig:
    """`options` as a TrainConfig, for a run in this process."""
    kw = dict(epochs=EPOCHS, batch_size=BATCH, val_split=0.25, augment="none", amp="off", workers=0, tensorboard=False)
    return TrainConfig(arch="lenet5", data=str(data), output=str(output), **{**kw, **changes})


def descendants(pid: int) -> list[int]:
    """Every process under `pid` (torchrun starts its workers in sessions of their own)."""
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        return []
    return out + [d for c in out for d in descendants(c)]


class Nodes:
    """Two torchrun launchers, one per working directory, started and (whatever happens) killed."""

    def __init__(self, cwds, zoo_args, max_restarts=0):
        port, self.procs = free_port(), []
        for i, cwd in enumerate(cwds):
            pathlib.Path(cwd).mkdir(parents=True, exist_ok=True)
            command = elastic.torchrun_command(
                ["train", "lenet", *zoo_args],
                nodes=2,
                per_node=1,
                endpoint=f"127.0.0.1:{port}",
                is_host=i == 0,
                local_addr="127.0.0.1",
                max_restarts=max_restarts,
            )
            log = open(pathlib.Path(cwd) / "launcher.log", "w+")
            self.procs.append((subprocess.Popen(command, cwd=cwd, env=ENV, stdout=log, stderr=subprocess.STDOUT), log))

    def worker(self, node: int) -> int:
        """The PID of the worker of launcher `node` (waiting for it to start)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            children = descendants(self.procs[node][0].pid)
            if children:
                return children[0]
            time.sleep(0.05)
        raise AssertionError("torchrun started no worker in 60 s")

    def wait(self) -> list[tuple[int, str]]:
        """(exit code, output) of each launcher."""
        deadline = time.monotonic() + TIMEOUT_S
        out = []
        for proc, log in self.procs:
            proc.wait(timeout=max(1, deadline - time.monotonic()))
            log.seek(0)
            out.append((proc.returncode, log.read()))
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for proc, log in self.procs:
            for pid in [*descendants(proc.pid), proc.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait()
            log.close()


def weights(run: pathlib.Path) -> dict:
    return load_file(str(run / rundir.LAST))


@pytest.fixture(scope="module")
def two_nodes(tiny_mnist, tmp_path_factory):  # noqa: F811
    """An uninterrupted run on two nodes: (run directory, what each launcher printed)."""
    root = tmp_path_factory.mktemp("two-nodes")
    run = root / "run"
    with Nodes([root / "a", root / "b"], options(tiny_mnist, "--output", run)) as nodes:
        (rc_a, out_a), (rc_b, out_b) = nodes.wait()
    assert rc_a == 0 and rc_b == 0, out_a[-3000:] + out_b[-3000:]
    return run, out_a, out_b


@pytest.mark.slow
def test_two_nodes_finish_the_run(two_nodes):
    run, out_a, out_b = two_nodes
    # rank 0 (which says the first line and "wrote") is on whichever node c10d put first: either launcher
    rank0, other = (out_a, out_b) if "wrote" in out_a else (out_b, out_a)
    first = next(line for line in rank0.splitlines() if line.startswith("training "))
    assert " x 2 processes (2 nodes x 1 on 1 host), global batch 32 (16 per process)" in first, first
    history = json.loads((run / rundir.HISTORY_JSON).read_text())
    assert [row["epoch"] for row in history] == list(range(1, EPOCHS + 1))
    card = json.loads((run / rundir.CARD).read_text())
    assert card["provenance"]["finished"] is True and card["provenance"]["threads"] == 1
    group = json.loads((run / rundir.GROUP).read_text())
    assert len(group["launchers"]) == 2 and group["processes"] == 2
    assert "wrote" in rank0 and "wrote" not in other and not (run / rundir.LOCK).exists()  # rank 0 alone


@pytest.mark.slow
def test_two_nodes_match_one_process_with_the_global_batch(two_nodes, tiny_mnist, tmp_path):  # noqa: F811
    """Two processes of batch 16 against one of batch 32: the same images in every step (the sampler
    shards each epoch's permutation, seeded by (seed, epoch), by global rank: rank r takes every second
    image from r, so the two halves of step i are the one process's batch i) and the same mean gradient;
    only the order of the float32 sums differs. One process sums each weight's gradient terms in one
    reduction (conv1: 32 images x 24 x 24 positions = K = 18,432 terms); two processes sum half each,
    gloo adds the two sums and DDP halves them. Two orders of a sum differ by ~sqrt(K) u of the sum of
    |terms| (u = 2^-24 ~ 6e-8; K u at worst): ~8e-6 of a gradient for conv1, less for the other layers.
    The weights are the sum of 72 such updates (8 epochs x 9 steps, SGD with momentum), so their
    difference is of the same relative order, ~1e-5 of the weights' own scale, grown by what training
    makes of a perturbation over 72 steps (measured: 4.5e-7 of a tensor's largest |weight|, 1e-7 of
    the training loss). WEIGHT_REL = 1e-4 of each tensor's largest |weight| is ten times the estimate;
    any real difference is far above it: the same run at batch 16 in one process (another batch
    composition) or with another seed ends 1.7-1.8 x the largest |weight| away; so would shards taken
    by local rank (both nodes reading the same half)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = train(config(tiny_mnist, tmp_path / "one", batch_size=2 * BATCH), log=lambda s: None)
    finally:
        torch.set_num_threads(before)
    two = weights(two_nodes[0])
    single = {k: v.contiguous() for k, v in one.model.state_dict().items()}
    assert two.keys() == single.keys()
    worst = max(float((two[k] - single[k]).abs().max() / single[k].abs().max()) for k in two)
    assert worst <= WEIGHT_REL, f"the two nodes' weights differ from one process's by {worst:.3g} of a tensor"
    h2 = json.loads((two_nodes[0] / rundir.HISTORY_JSON).read_text())
    np.testing.assert_allclose([r["train_loss"] for r in h2], [r["train_loss"] for r in one.history], rtol=1e-4)
    assert [r["val_acc"] for r in h2] == pytest.approx([r["val_acc"] for r in one.history], abs=0.011)


@pytest.mark.slow
def test_a_worker_killed_mid_run_restarts_and_finishes_as_if_not(two_nodes, tiny_mnist, tmp_path):  # noqa: F811
    """kill -9 of the second node's worker once the first epoch's checkpoint is written: torchrun
    (--max-restarts 1) starts the group again, which finds the run (no --output: runs/lenet5-..., by the
    launchers in its torchrun.json), resumes it from its checkpoint and finishes it: every epoch once in
    the history, and the same weights, bit for bit, as the uninterrupted run of `two_nodes`."""
    with Nodes([tmp_path, tmp_path], options(tiny_mnist), max_restarts=1) as nodes:
        victim = nodes.worker(1)
        deadline = time.monotonic() + 90
        while not list(tmp_path.glob(f"runs/lenet5-*/{rundir.HISTORY_JSON}")):
            assert time.monotonic() < deadline, "no epoch ended in 90 s"
            time.sleep(0.02)
        os.kill(victim, signal.SIGKILL)
        (rc_a, out_a), (rc_b, out_b) = nodes.wait()
    assert rc_a == 0 and rc_b == 0, out_a[-3000:] + out_b[-3000:]
    (run,) = tmp_path.glob("runs/lenet5-*")
    # the restarted group's rank 0 may be on either node (the launcher whose worker died may join first)
    resumed_line = f"torchrun started the group again: resuming {run.relative_to(tmp_path)} from its checkpoint"
    assert resumed_line in out_a + out_b, out_a[-3000:] + out_b[-3000:]
    history = json.loads((run / rundir.HISTORY_JSON).read_text())
    assert [row["epoch"] for row in history] == list(range(1, EPOCHS + 1))
    assert json.loads((run / rundir.CARD).read_text())["provenance"]["finished"] is True
    resumed, uninterrupted = weights(run), weights(two_nodes[0])
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)


@pytest.mark.slow
def test_a_run_directory_that_is_not_shared_is_refused(tiny_mnist, tmp_path):  # noqa: F811
    """Each node in a working directory of its own and a relative --output: rank 0 makes a/run, which the
    other node cannot see. Both stop with one line naming the directory; a/run is gone."""
    with Nodes([tmp_path / "a", tmp_path / "b"], options(tiny_mnist, "--output", "run")) as nodes:
        (rc_a, out_a), (rc_b, out_b) = nodes.wait()
    assert rc_a != 0 and rc_b != 0
    errors = [line for line in (out_a + out_b).splitlines() if line.startswith("Error: ")]
    assert errors and all(e == errors[0] for e in errors), errors
    assert errors[0].startswith("Error: run is not on storage every node shares: rank 1 on ")
    assert rundir.GROUP in errors[0] and "--output" in errors[0]
    assert not (tmp_path / "a" / "run").exists() and not (tmp_path / "b" / "run").exists()


def test_a_group_started_again_finds_its_own_run_only(tmp_path, monkeypatch):
    """The run a killed group wrote is known by its torchrun.json naming one of this group's launchers;
    a directory another job wrote, or one without the file, is not taken over."""
    monkeypatch.chdir(tmp_path)
    for name, launchers in (("lenet5-20260101-000000", ["h:1"]), ("lenet5-20260102-000000", ["h:7", "g:7"])):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / rundir.GROUP).write_text(json.dumps({"token": name, "launchers": launchers}))
    (tmp_path / "runs" / "lenet5-20260103-000000").mkdir()  # newer, but not a torchrun run
    cfg = TrainConfig(arch="lenet5")
    assert elastic._killed_run(cfg, ("g:7", "x:2")) == ("runs/lenet5-20260102-000000", "lenet5-20260102-000000", False)
    assert elastic._killed_run(cfg, ("h:1",))[0] == "runs/lenet5-20260101-000000"
    assert elastic._killed_run(cfg, ("h:2",)) is None
    assert elastic._killed_run(TrainConfig(arch="lenet5", output="runs/lenet5-20260101-000000"), ("h:7",)) is None


def test_each_group_meets_under_a_generation_of_its_own():
    """The agent's store outlives a killed group; every rank of the next group agrees on a new generation,
    even a rank that reads the old one first (its check-in is answered with the old rank's nonce)."""
    store = torch.distributed.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    port = store.port

    def group(order):
        got = {}

        def rank(r):
            client = torch.distributed.TCPStore("127.0.0.1", port, is_master=False)
            got[r] = distributed._generation(client, r, 3)

        threads = []
        for r in order:
            threads.append(threading.Thread(target=rank, args=(r,)))
            threads[-1].start()
            time.sleep(0.3)  # the later ranks read the generation the earlier ones left
        for t in threads:
            t.join(timeout=30)
        return got

    assert group([0, 1, 2]) == {0: 1, 1: 1, 2: 1}
    assert group([2, 1, 0]) == {0: 2, 1: 2, 2: 2}  # ranks 2 and 1 first read generation 1, answered for others


def test_the_first_line_names_processes_nodes_and_the_global_batch():
    one = distributed.Dist(launchers=("h:1",))
    assert distributed.describe(one, 64) == ""
    local = distributed.Dist(0, 2, launchers=("h:1", "h:1"), nodes=1)
    assert distributed.describe(local, 64) == " x 2 processes (1 node x 2), global batch 128 (64 per process)"
    four = distributed.Dist(0, 4, launchers=("a:1", "a:1", "b:1", "b:1"), nodes=2)
    assert distributed.describe(four, 32, accumulate=2) == (
        " x 4 processes (2 nodes x 2), global batch 128 (32 per process, 256 per step with --accumulate 2)"
    )


def test_a_group_started_again_resumes_its_run_or_begins_it_again(tiny_mnist, tmp_path, monkeypatch):  # noqa: F811
    """One process under torchrun (TORCHELASTIC_RUN_ID set, as torchrun sets it): the run it began is
    resumed from its checkpoint by the same command; a run killed before its first checkpoint is begun
    again in its directory, the killed group's files removed."""
    monkeypatch.setenv(elastic.RUN_ID, "test")
    dist, lines = distributed.Dist(launchers=(distributed.launcher(),)), []
    cfg = config(tiny_mnist, tmp_path / "run", epochs=1, batch_size=32)
    assert elastic.continued(cfg, dist, lines.append) == (cfg, None)  # nothing begun yet
    train(cfg, log=lambda s: None)
    assert json.loads((tmp_path / "run" / rundir.GROUP).read_text())["launchers"] == list(dist.launchers)
    again, checkpoint = elastic.continued(replace(cfg, epochs=2), dist, lines.append)
    assert again.resume == str(tmp_path / "run") and lines[-1].endswith("from its checkpoint (after epoch 1)")
    assert checkpoint["state"]["epoch"] == 1
    assert [row["epoch"] for row in train(again, log=lambda s: None).history] == [1, 2]

    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / rundir.GROUP).write_text(json.dumps({"token": "t", "launchers": list(dist.launchers)}))
    (killed / f"{rundir.EVENTS_PREFIX}1.host.1.0").write_bytes(b"events")
    (killed / rundir.LOCK).write_text("999999\n")  # a dead process's lock file
    again, checkpoint = elastic.continued(replace(cfg, output=str(killed)), dist, lines.append)
    assert (
        checkpoint is None and again.output == str(killed) and again.resume is None and "no checkpoint yet" in lines[-1]
    )
    assert list(killed.iterdir()) == []
    other = tmp_path / "other"  # another job's run
    other.mkdir()
    (other / rundir.GROUP).write_text(json.dumps({"token": "t", "launchers": ["elsewhere:1"]}))
    assert elastic.continued(replace(cfg, output=str(other)), dist, lines.append)[0].resume is None
