"""`zoo classify --ray` on a real two-node Ray cluster on this machine (infer.localcluster: `ray start
--head --num-cpus 1` and `ray start --address ... --num-cpus 1`, stopped by their process groups), with
S3 served by moto on 127.0.0.1: the answers are local classify's, bit for bit; an actor killed with
kill -9 mid-run costs nothing; --resume; manifests naming missing files; s3:// in and out; an address
that does not answer. One cluster for the module: starting one takes ~15 s."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("ray.data", reason="the ray extra is not installed: pip install 'cnnzoo[ray]'")
pytest.importorskip("moto.server", reason="moto[server] is not installed (the dev extra has it)")

from conftest import ROOT  # noqa: E402

from infer import shards  # noqa: E402
from infer.localcluster import LocalCluster, processes_of  # noqa: E402
from zoo.child import free_port  # noqa: E402
from zoo.cli import main  # noqa: E402

pytestmark = pytest.mark.slow
CLASSES = [str(i) for i in range(10)]


def digits(folder, count, start=0):
    """MNIST-small test digits as PNGs in folders named by their class."""
    data = np.load(ROOT / "zoo" / "data" / "mnist_small.npz")
    for i in range(start, start + count):
        sub = folder / str(data["y_test"][i])
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(data["x_test"][i]).save(sub / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def s3():
    """An S3 endpoint on 127.0.0.1 (moto's server), and the environment that reaches it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    }
    try:
        yield env
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster(s3):
    """Two nodes of one CPU each; the workers import this checkout and reach the S3 server."""
    with LocalCluster([1, 1], env={"PYTHONPATH": str(ROOT), **s3}) as c:
        yield c


@pytest.fixture(scope="module")
def work(tmp_path_factory, _exported_lenets):
    """A LeNet ONNX file (random weights) and a folder of 60 digits, a broken PNG, a text file and a
    hidden file."""
    root = tmp_path_factory.mktemp("ray")
    model = _exported_lenets("digits", tuple(CLASSES), False) / "model.onnx"
    folder = digits(root / "digits", 60)
    (folder / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "3" / "notes.txt").write_text("not an image")
    (folder / "3" / ".hidden.png").write_bytes(next((folder / "3").glob("*.png")).read_bytes())
    return root, model, folder


def zoo_ray(cwd, *args, env=None, timeout=300):
    """`zoo classify ARGS` in a fresh process (Ray's driver), in `cwd`."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
    command = [sys.executable, "-m", "zoo", "classify", *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def local_results(cwd, model, *paths):
    """What local `zoo classify` writes for `paths` (run in `cwd`, as given), as dicts."""
    here = os.getcwd()
    os.chdir(cwd)
    try:
        r = CliRunner().invoke(main, ["classify", str(model), *map(str, paths), "-o", "local.jsonl"])
        assert r.exit_code in (0, 1), r.output
        return [json.loads(line) for line in (cwd / "local.jsonl").read_text().splitlines()]
    finally:
        os.chdir(here)


def shard_results(folder):
    """The result dicts of every shard in a local output folder, in shard order."""
    files = sorted(folder.glob(shards.SHARD_PREFIX + "*"))
    return [d for p in files for d in shards.decode(p.read_bytes(), p.suffix[1:])]


@pytest.fixture(scope="module")
def first_run(cluster, work):
    root, model, folder = work
    r = zoo_ray(root, model, "digits", "--ray", cluster.address, "-o", "out", "-b", "8", env=cluster.client_env)
    return r, root / "out"


def test_two_nodes_answer_as_local_classify(first_run, work):
    r, out = first_run
    root, model, _ = work
    assert r.returncode == 1, r.stderr  # the broken PNG: exit 1, as local classify
    lines = [line for line in r.stderr.splitlines() if line.startswith("ray: ")]
    assert lines and lines[0].startswith("ray: 2 nodes, 2 CPUs, 0 GPUs; "), r.stderr
    assert "fp32 on onnxruntime" in lines[0] and "decided on the nodes" in lines[0]
    local = local_results(root, model, "digits")
    assert shard_results(out) == local  # every image, in order, the same labels and probabilities
    assert len(local) == 61 and sum("error" in d for d in local) == 1
    summary = r.stderr.splitlines()[-4:]
    skipped = "1 file skipped (digits/3/notes.txt: no image extension)"
    assert any("61 images in" in s and "1 unreadable" in s and skipped in s for s in summary), summary
    assert any(s.startswith("accuracy: ") for s in summary)
    assert json.loads((out / shards.DONE).read_text())["images"] == 61


def test_resume_classifies_only_what_the_destination_lacks(first_run, work, cluster):
    root, model, _ = work
    out = root / "resumed"
    shutil.copytree(first_run[1], out)
    (out / shards.DONE).unlink()
    kept = sorted(out.glob(shards.SHARD_PREFIX + "*"))[:4]  # a run that stopped after four batches
    for p in sorted(out.glob(shards.SHARD_PREFIX + "*")):
        if p not in kept:
            p.unlink()
    refused = zoo_ray(root, model, "digits", "--ray", cluster.address, "-o", "resumed", env=cluster.client_env)
    assert refused.returncode != 0
    last = refused.stderr.strip().splitlines()[-1]
    assert last.endswith("add --resume to finish or extend that run, or name another folder"), last
    r = zoo_ray(root, model, "digits", "--ray", cluster.address, "-o", "resumed", "--resume", env=cluster.client_env)
    assert r.returncode == 1, r.stderr
    assert "carried over 32 results from resumed; classifying the other 29 images" in r.stderr
    local = local_results(root, model, "digits")
    got = shard_results(out)
    assert sorted(got, key=lambda d: d["path"]) == sorted(local, key=lambda d: d["path"])  # each image once


def test_an_actor_killed_mid_run_costs_nothing(cluster, work):
    root, model, _ = work
    digits(root / "many", 1200)
    out = root / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0", **cluster.client_env}
    command = [sys.executable, "-m", "zoo", "classify", str(model), "many", "--ray", cluster.address, "-o", "killed"]
    run = subprocess.Popen(command + ["-b", "2"], cwd=root, env=env, stderr=subprocess.PIPE, text=True)
    try:
        killed = None
        deadline = time.monotonic() + 240
        while killed is None and run.poll() is None and time.monotonic() < deadline:
            actors = processes_of(cluster, "MapWorker")
            if actors and out.is_dir() and len(list(out.glob(shards.SHARD_PREFIX + "*"))) >= 3:
                os.kill(actors[0], signal.SIGKILL)
                killed = len(list(out.glob(shards.SHARD_PREFIX + "*")))
            time.sleep(0.05)
        err = run.communicate(timeout=300)[1]
    finally:
        if run.poll() is None:
            run.kill()
    assert killed is not None and killed < 600, "the run ended before an actor could be killed"
    assert run.returncode == 0, err
    got = shard_results(out)
    assert len({d["path"] for d in got}) == len(got)
    assert got == local_results(root, model, "many")  # every image exactly once, the same answers
    assert len(list(out.glob(shards.SHARD_PREFIX + "*"))) == 600


def test_a_manifest_naming_missing_files_counts_them(cluster, work):
    root, model, folder = work
    present = sorted(p for p in folder.rglob("*.png") if p.name[0].isdigit())
    names = [str(present[0].relative_to(root)), "digits/gone/1.png", str(present[-1]), "digits/gone/2.png"]
    (root / "list.csv").write_text("path,note\n" + "".join(f"{n},x\n" for n in names))
    r = zoo_ray(root, model, "list.csv", "--ray", cluster.address, "-o", "manifest", env=cluster.client_env)
    assert r.returncode == 1, r.stderr
    assert "2 files named but not there, counted among the unreadable (first: digits/gone/1.png)" in r.stderr
    got = {d["path"]: d for d in shard_results(root / "manifest")}
    assert list(got) == names
    assert got["digits/gone/2.png"]["error"] == "digits/gone/2.png: missing (no such file)"
    local = {d["path"]: d for d in local_results(root, model, names[0], names[2])}
    assert got[names[0]] == local[names[0]] and got[names[2]] == local[names[2]]


def test_s3_in_and_out(cluster, work, s3, monkeypatch):
    import fsspec

    root, model, folder = work
    for key, value in s3.items():  # (this process's own s3fs, to put the photos there and read the shards back)
        monkeypatch.setenv(key, value)
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir("photos")
    fs.mkdir("labels")
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            fs.put_file(str(p), f"photos/digits/{p.relative_to(folder)}")
    r = zoo_ray(
        root, model, "s3://photos/digits/", "--ray", cluster.address, "-o", "s3://labels/run/", "--format",
        "parquet", "-b", "16", env={**cluster.client_env, **s3},
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    names = sorted(fs.glob("labels/run/part-*.parquet"))
    got = [d for name in names for d in shards.decode(fs.cat_file(name), "parquet")]
    assert fs.exists("labels/run/" + shards.DONE)
    local = local_results(root, model, "digits")
    assert len(got) == len(local) == 61
    for mine, theirs in zip(got, local):
        url = "s3://photos/" + theirs["path"]
        named_here = {k: v.replace(theirs["path"], url) if k in ("path", "error") else v for k, v in theirs.items()}
        assert mine == named_here  # the same answers; a broken image's message names its URL


def test_s3_without_credentials_is_one_line(work, s3):
    root, model, _ = work
    env = {k: v for k, v in s3.items() if not k.startswith("AWS_ACCESS") and not k.startswith("AWS_SECRET")}
    r = zoo_ray(root, model, "s3://photos/digits/", "--ray", "127.0.0.1:1", "-o", "s3://labels/x/", env=env)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert "s3://photos/digits/: no credentials to read it" in r.stderr


def test_ray_local_starts_a_cluster_of_its_own(work):
    root, model, _ = work
    no_token = {"RAY_AUTH_MODE": "disabled"}  # (else Ray makes ~/.ray/auth_token, which other clusters here read)
    r = zoo_ray(root, model, "digits", "-o", "local-ray", "-b", "16", "--ray", "local", env=no_token)
    assert r.returncode == 1, r.stderr
    assert "ray: 1 node, " in r.stderr
    assert shard_results(root / "local-ray") == local_results(root, model, "digits")


def test_an_address_that_does_not_answer_is_one_line(work):
    root, model, _ = work
    r = zoo_ray(root, model, "digits", "--ray", f"127.0.0.1:{free_port()}", "-o", "nowhere", timeout=60)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr
    assert "no Ray cluster at 127.0.0.1:" in r.stderr and "use --ray local" in r.stderr
    assert not (root / "nowhere").exists()


def test_a_missing_extra_is_one_line_with_the_install(work):
    root, model, _ = work
    code = "import sys; sys.modules['ray'] = None; from zoo.cli import main; main()"  # as if not installed
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", code, "classify", str(model), "digits", "--ray", "-o", "x"]
    r = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert r.stderr.strip() == "Error: --ray needs Ray Data (ray is not installed): pip install 'cnnzoo[ray]'"
