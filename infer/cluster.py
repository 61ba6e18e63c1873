"""`zoo classify MODEL SOURCE --ray [ADDRESS]`: classify on a Ray cluster, with the code of local classify.

    >>> from infer import cluster
    >>> job = cluster.plan(["s3://photos/2026/", "list.parquet"], "s3://photos-out/labels/")
    >>> cluster.connect("auto")                       # or "127.0.0.1:6379", "ray://head:10001", "local"
    >>> setup = cluster.prepare(job, "runs/resnet18-.../model.int8.onnx")   # auto, decided on the nodes
    >>> print(setup.line)
    >>> summary = cluster.run(job, setup)

The pipeline (Ray Data), one row per batch of `batch_size` images, made here in the order of the walk
(so each batch is the one local classify would run, and answers are the same bits):
1. read the bytes (zoo's own reader, local or fsspec; a file that is not there is counted missing),
2. decode them with the one preprocessing (infer.decoding.decode), in CPU tasks (where an actor takes
   one CPU, as they do, Ray fuses steps 1 and 2 into the actor's process: operator fusion; with
   --actor-cpus above 1 they stay tasks of their own, and every node keeps a CPU for them),
3. predict in an actor pool (ActorPoolStrategy): each actor loads the model once, its runtime's threads
   set to the actor's own CPUs (Ray sets OMP_NUM_THREADS=1 in workers; ONNX Runtime would size its pool
   from the node's cores), and builds the one answer (infer.classify.batch_results),
4. the same actor writes the batch as one shard (infer/shards.py), whole, under a name a retry
   replaces, and returns its counts; the driver adds them up for the summary.
The precision and runtime `auto` takes are decided by infer.policy on every node, in a task there, not on
the machine that submits the job; nodes that decide differently are refused (name --precision and
--backend). cnnzoo must be installed on every node, and MODEL be where every node reads it.

Ray is imported by the functions that need it: `import infer` never does.
"""

from __future__ import annotations

import itertools
import logging
import os
import pathlib
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from zoo import answer
from zoo.card import ModelCard
from zoo.data.walk import Skips, printable
from zoo.text import first_line, plural

from . import shards, sources
from .classify import Summary, batch_results, first_found
from .decoding import decode
from .results import Remaining, Result, Tally, carried_over

RAY_HINT = "pip install 'cnnzoo[ray]'"
CONNECT_TIMEOUT_S = 5.0  # an address that does not answer within this is refused (ray.init would wait ~40 s)
BATCHES_PER_BLOCK = 8  # a Ray task reads, decodes and classifies a block of batches: fewer, larger tasks
BLOCKS_PER_ACTOR = 4  # but at least this many blocks per actor, to keep every actor busy to the end


class ClusterError(RuntimeError):
    """No cluster to run on, or one that cannot run this job; the message says why, in one line."""


def _ray():
    """The ray module, with its Data library; ClusterError naming the extra where it is missing."""
    try:
        import ray
        import ray.data  # noqa: F401  (ray without [data]: pyarrow, pandas missing)
    except ImportError as e:
        raise ClusterError(f"--ray needs Ray Data ({e.name or e} is not installed): {RAY_HINT}") from None
    return ray


def _reachable(address: str) -> None:
    """ClusterError unless something answers at `address` (host:port, ray://host:port) within
    CONNECT_TIMEOUT_S; `auto` and addresses without a port are left to Ray, which answers at once."""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        why = "no answer" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise ClusterError(
            f"no Ray cluster at {address} ({why} within {CONNECT_TIMEOUT_S:.0f} s): start one with "
            "`ray start --head`, or use --ray local"
        ) from None


def connect(address: str | None = "auto") -> None:
    """Join the cluster at `address` (as ray.init takes it; "auto": the one this machine is part of or
    RAY_ADDRESS), or start one in this process ("local"). ClusterError in one line where none answers."""
    ray = _ray()
    address = address or "auto"
    if ray.is_initialized():
        return
    quiet = {"logging_level": logging.WARNING, "configure_logging": True}
    if address == "local":
        from zoo.hardware import usable_cpu_count

        # address="local": a new instance, even where a cluster already runs on this machine
        ray.init(address="local", num_cpus=usable_cpu_count(), include_dashboard=False, **quiet)
        return
    _reachable(address)
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ClusterError(f"cannot join a Ray cluster at {address}: {first_line(e)}") from None


def disconnect() -> None:
    """Leave the cluster (stop it where connect started it here). Ray tears down the job's actors in the
    background and logs what it meets on the way (a KillActor RPC to a node that has gone, say); once
    this returns, nothing of Ray's writes to this process's stderr, so a summary printed after it is
    the last thing a user reads. Nothing to do where Ray was never imported."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


@dataclass
class Nodes:
    """The cluster as it stands: its live nodes and their CPUs and GPUs."""

    cpus: dict[str, float]  # node ID -> its CPUs, for the nodes that have some
    gpus: float

    @classmethod
    def now(cls) -> Nodes:
        ray = _ray()
        alive = [n for n in ray.nodes() if n.get("Alive")]
        cpus = {n["NodeID"]: n["Resources"]["CPU"] for n in alive if n["Resources"].get("CPU", 0) > 0}
        return cls(cpus, sum(n["Resources"].get("GPU", 0) for n in alive))

    @property
    def ids(self) -> list[str]:
        return list(self.cpus)

    def actors(self, actor_cpus: int) -> int:
        """How many actors of `actor_cpus` CPUs fit. Where an actor takes one CPU, Ray fuses the reading
        and decoding tasks into it (operator fusion: the same resources), and every CPU takes one; else
        every node keeps one CPU for the decoding tasks (without it, they would wait for ever)."""
        if actor_cpus == 1:
            return int(sum(self.cpus.values()))
        return int(sum((c - 1) // actor_cpus for c in self.cpus.values()))

    def __str__(self) -> str:
        return f"{plural(len(self.cpus), 'node')}, {sum(self.cpus.values()):g} CPUs, {self.gpus:g} GPUs"


@dataclass
class Choice:
    """What `auto` (or the options given) chose on one node, and why."""

    backend: str
    precision: str
    file: str
    selection: str
    card: ModelCard
    cpu: str


def choose_here(model: str, backend: str, precision: str) -> Choice:
    """infer.policy's choice on this machine (run as a Ray task on each node)."""
    from zoo.hardware import cpu

    from .files import card_of
    from .policy import choose

    chosen, selection = choose(model, backend, precision, device="cpu")
    return Choice(chosen.backend, chosen.precision, str(chosen.file), selection, card_of(chosen.file), cpu().name)


def choose_on_nodes(model: str, backend: str, precision: str, nodes: Nodes) -> Choice:
    """The choice made on every node by `choose_here`, where all agree; the errors of infer.load (from the
    first node that raised one), or ClusterError where nodes choose differently."""
    ray = _ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(choose_here)
    refs = [
        task.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote(
            model, backend, precision
        )
        for n in nodes.ids
    ]
    try:
        choices = ray.get(refs)
    except ray.exceptions.RayTaskError as e:
        raise e.cause if isinstance(e.cause, Exception) else ClusterError(str(e).splitlines()[0]) from None
    ways = {(c.precision, c.backend, c.file) for c in choices}
    if len(ways) > 1:
        said = "; ".join(sorted({f"{c.cpu}: {c.precision} on {c.backend}" for c in choices}))
        raise ClusterError(f"the nodes choose differently ({said}): name --precision and --backend")
    return choices[0]


@dataclass
class Job:
    """What a cluster run reads and writes, checked before it joins a cluster (`plan`)."""

    images: Iterator[sources.Image]  # lazily, in order; the first one already found
    skipped: Skips
    dest: shards.Destination


def plan(paths: Sequence[str], output: str | None, fmt: str | None = None, follow_links: bool = False) -> Job:
    """The images under `paths` (infer.sources: folders, globs, URLs, manifests), listed as far as the
    first one, and the destination folder or URL of the shards. PathError / OutputError in one line."""
    if output is None or str(output) == "-":
        raise shards.OutputError("--ray writes result shards into a folder or URL: name it with --output")
    paths = [str(p) for p in paths]
    sources.check_named(paths)
    skipped = Skips()
    images = first_found(sources.images(paths, skipped, follow_links), paths, skipped)
    dest = shards.Destination(str(output), fmt or "jsonl")
    dest.shards()  # an output that is a file, or cannot be listed: said now
    return Job(images, skipped, dest)


@dataclass
class Setup:
    """A job joined to its cluster: the nodes, the choice made on them, the options of the pipeline."""

    model: str
    nodes: Nodes
    choice: Choice
    actors: int  # the actor pool's largest size
    actor_cpus: int  # CPUs (and so runtime threads) of each actor
    top_k: int = answer.DEFAULT_TOP_K
    batch_size: int = 32

    @property
    def line(self) -> str:
        """The first line: the cluster, then what runs on it and why."""
        c = self.choice
        return (
            f"ray: {self.nodes}; {plural(self.actors, 'actor')} of {plural(self.actor_cpus, 'CPU')}; "
            f"{c.selection} (decided on the nodes: {c.cpu})"
        )


def prepare(
    model: str | os.PathLike,
    *,
    backend: str = "auto",
    precision: str = "auto",
    actors: int | None = None,
    actor_cpus: int = 1,
    **options,
) -> Setup:
    """The cluster joined (`connect` first) and the model's precision and runtime decided on its nodes.
    `actors`: the pool's largest size (default and most: as many as fit, Nodes.actors); `options`:
    Setup's (top_k, batch_size). ClusterError where no actor fits."""
    nodes = Nodes.now()
    if not nodes.ids:
        raise ClusterError("the Ray cluster has no node with a CPU")
    fit = nodes.actors(actor_cpus)
    if fit < 1:
        raise ClusterError(
            f"no node has {actor_cpus + 1} CPUs, for an actor of --actor-cpus {actor_cpus} and the decoding "
            f"beside it (nodes: {', '.join(f'{c:g}' for c in nodes.cpus.values())} CPUs): lower --actor-cpus"
        )
    model = os.path.abspath(model)
    choice = choose_on_nodes(model, backend, precision, nodes)
    return Setup(model, nodes, choice, min(actors or fit, fit), actor_cpus, **options)


def _batches(images: Iterator, size: int) -> list[dict]:
    """The rows of the dataset: one per batch, in order (names and places as bytes: file names need not
    be UTF-8)."""
    rows = []
    for i, chunk in enumerate(iter(lambda: list(itertools.islice(images, size)), [])):
        names, places = [os.fsencode(img.name) for img in chunk], [os.fsencode(img.where) for img in chunk]
        rows.append({"batch": i, "names": names, "where": places})
    return rows


def read_files(row: dict) -> dict:
    """Step 1: the bytes of each file of a batch (b"" where it cannot be read, with why; `missing`)."""
    names = [os.fsdecode(n) for n in row["names"]]
    data, problems, missing = [], [], []
    for name, where in zip(names, (os.fsdecode(w) for w in row["where"])):
        problem, gone, content = None, False, b""
        try:
            content = _read(where)
        except FileNotFoundError:
            problem, gone = f"{name}: missing (no such file)", True
        except OSError as e:
            problem = f"{name}: cannot read ({e.strerror or e})"
        except Exception as e:  # noqa: BLE001  (an object store's own errors): the run goes on
            problem = f"{name}: cannot read ({type(e).__name__}: {e})"
        data.append(content)
        problems.append(printable(problem) if problem else "")
        missing.append(gone)
    return {"batch": row["batch"], "names": row["names"], "data": data, "problem": problems, "missing": missing}


def _read(where: str) -> bytes:
    if sources.is_url(where):
        fs, path = sources.url_fs(where)
        return fs.cat_file(path)
    with open(where, "rb") as f:
        return f.read()


def decode_files(row: dict, card: ModelCard) -> dict:
    """Step 2: the batch decoded by the one preprocessing (infer.decoding.decode) into float32 inputs."""
    names = [os.fsdecode(n) for n in row["names"]]
    readable = [i for i, p in enumerate(row["problem"]) if not p]
    x, ok, errors = decode([names[i] for i in readable], card, [row["data"][i] for i in readable])
    errors = [(readable[i], printable(m)) for i, m in errors] + [(i, p) for i, p in enumerate(row["problem"]) if p]
    return {
        "batch": row["batch"],
        "names": row["names"],
        "x": np.ascontiguousarray(x),  # a tensor column: Arrow holds its buffer (bytes were copied, 40 ms a batch)
        "ok": [readable[i] for i in ok],
        "error_at": [i for i, _ in errors],
        "error": [m for _, m in errors],
        "missing": row["missing"],
    }


class Classifier:
    """Steps 3 and 4, an actor: the model loaded once, its runtime's threads set to the actor's CPUs; the
    one answer for each image of a batch (infer.classify.batch_results), written as the batch's shard
    (shards.Destination.write, whole, under a name its retry replaces). Returns what the shard holds,
    for the summary."""

    def __init__(self, model: str, backend: str, precision: str, threads: int, top_k: int, dest: shards.Destination):
        from .policy import load

        self.predictor = load(model, backend, precision=precision, threads=threads, device="cpu")
        self.top_k, self.dest = top_k, dest

    def __call__(self, row: dict) -> dict:
        names = [os.fsdecode(n) for n in row["names"]]
        ok = [int(i) for i in row["ok"]]
        x = np.asarray(row["x"], np.float32).reshape(len(ok), *self.predictor.card.input_shape)
        decoded = (x, ok, list(zip((int(i) for i in row["error_at"]), row["error"])))
        results = batch_results(self.predictor, names, decoded, self.top_k)
        self.dest.write(int(row["batch"]), [r.to_dict() for r in results])
        return {"batch": row["batch"], **shard_counts(results, [bool(m) for m in row["missing"]])}


def shard_counts(results: Sequence[Result], missing: Sequence[bool]) -> dict:
    """What a shard holds, for the summary: the Tally's counts, the missing files, the first of each."""
    tally = Tally()
    for r in results:
        tally.add(r)
    gone = [r.path for r, m in zip(results, missing) if m]
    unreadable = [r.error for r, m in zip(results, missing) if r.error is not None and not m]
    return {
        "images": tally.images,
        "errors": tally.errors,
        "labelled": tally.labelled,
        "correct": tally.correct,
        "missing": len(gone),
        "first_missing": printable(gone[0]) if gone else "",
        "first_unreadable": unreadable[0] if unreadable else "",
    }


@dataclass
class ClusterSummary(Summary):
    """A cluster run's summary: local classify's, with the cluster and the missing files."""

    nodes: str = ""
    missing: int = 0
    first_missing: str = ""
    first_unreadable: str = ""
    shards: int = 0

    def lines(self) -> list[str]:
        lines = super().lines()
        lines[0] = lines[0].replace(f" on {self.backend})", f" on {self.backend}; ray: {self.nodes})", 1)
        if self.first_unreadable:
            lines.append(f"first unreadable: {self.first_unreadable}")
        if self.missing:
            lines.append(
                f"{plural(self.missing, 'file')} named but not there, counted among the unreadable "
                f"(first: {self.first_missing})"
            )
        return lines

    def to_dict(self) -> dict:
        """What the destination's marker records."""
        t = self.tally
        return {
            "images": t.images,
            "new": self.new,
            "carried_over": self.carried,
            "seconds": round(self.seconds, 3),
            "errors": t.errors,
            "missing": self.missing,
            "accuracy": t.accuracy,
            "precision": self.precision,
            "backend": self.backend,
            "cluster": self.nodes,
            "shards": self.shards,
        }


def _pipeline(rows: list[dict], setup: Setup, dest: shards.Destination):
    """The Ray Data pipeline over the batches (see the module's notes); lazy until iterated."""
    ray = _ray()
    c = setup.choice
    blocks = max(BLOCKS_PER_ACTOR * setup.actors, -(-len(rows) // BATCHES_PER_BLOCK))
    ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), blocks))
    ds = ds.map(read_files).map(decode_files, fn_kwargs={"card": c.card})
    return ds.map(
        Classifier,
        compute=ray.data.ActorPoolStrategy(size=setup.actors),  # all started at once
        num_cpus=setup.actor_cpus,
        fn_constructor_kwargs={
            "model": c.file,
            "backend": c.backend,
            "precision": c.precision,
            "threads": setup.actor_cpus,
            "top_k": setup.top_k,
            "dest": dest,
        },
    )


def run(job: Job, setup: Setup, *, resume: bool = False, log: Callable[[str], None] | None = None) -> ClusterSummary:
    """Classify the job's images on the cluster into its destination, batch by batch, each batch one
    shard; `resume`: keep the results the destination holds and classify the other images. The marker
    (shards.DONE) is written once every batch is in. ResumeError where the destination holds shards and
    `resume` is not given, or shards of another model."""
    dest = job.dest
    carried = shards.earlier(dest, resume, setup.choice.card.class_names, setup.top_k)
    todo = Remaining(job.images, shards.done_names(carried))
    dest.prepare()
    dest.unfinish()
    start = time.perf_counter()
    rows = _batches(iter(todo), setup.batch_size)
    summary = ClusterSummary(
        Tally(), len(carried), 0.0, job.skipped, setup.choice.precision, setup.choice.backend, nodes=str(setup.nodes)
    )
    for r in carried:
        summary.tally.add(r)
    if rows:
        try:
            for stat in _pipeline(rows, setup, dest).iter_rows():
                _count(summary, stat)
        except Exception as e:  # noqa: BLE001  (Ray's errors: a task that failed its retries, a node lost)
            text = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ClusterError(
                f"the run stopped ({type(e).__name__}: {text}); the finished batches are in {dest.url}: "
                "finish the run with --resume"
            ) from None
    summary.seconds = time.perf_counter() - start
    if resume and log is not None and (carried or todo.found):
        for line in carried_over(pathlib.Path(dest.url), len(carried), todo):
            log(line)
    dest.finish(summary.to_dict())
    return summary


def _count(summary: ClusterSummary, stat: dict) -> None:
    """Add one shard's counts (Classifier's row: shard_counts) to the summary."""
    t = summary.tally
    t.images += int(stat["images"])
    t.errors += int(stat["errors"])
    t.labelled += int(stat["labelled"])
    t.correct += int(stat["correct"])
    summary.missing += int(stat["missing"])
    summary.shards += 1
    summary.first_missing = summary.first_missing or stat["first_missing"]
    summary.first_unreadable = summary.first_unreadable or stat["first_unreadable"]
