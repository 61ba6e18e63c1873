"""What `zoo classify --ray` reads and writes, without a cluster: sources (folders, globs, fsspec URLs,
manifests) by the one walker's rules, the shard files and their resume, the options' one-line errors,
and that `import infer` (and infer.cluster) never imports Ray."""

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import ROOT

from infer import shards, sources
from infer.results import Result, ResumeError
from zoo.cli import main
from zoo.data.walk import PathError, Skips, images


@pytest.fixture
def tree(tmp_path):
    """photos/a/1.png, photos/a/2.jpg, photos/a/notes.txt, photos/b/3.PNG, photos/.hidden/4.png"""
    root = tmp_path / "photos"
    for name in ("a/1.png", "a/2.jpg", "a/notes.txt", "b/3.PNG", ".hidden/4.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    return root


def listed(paths, follow_links=False):
    skips = Skips()
    found = list(sources.images([str(p) for p in paths], skips, follow_links))
    return found, skips


def test_a_folder_is_the_walkers_and_workers_get_absolute_places(tree, monkeypatch):
    monkeypatch.chdir(tree.parent)
    found, skips = listed(["photos"])
    walker_skips = Skips()
    assert [i.name for i in found] == [str(p) for p in images(["photos"], walker_skips)]
    assert [i.name for i in found] == ["photos/a/1.png", "photos/a/2.jpg", "photos/b/3.PNG"]
    assert [i.where for i in found] == [str(tree / n) for n in ("a/1.png", "a/2.jpg", "b/3.PNG")]
    assert skips.count == walker_skips.count == {"no image extension": 1}
    assert os.fspath(found[0]) == "photos/a/1.png"  # results and --resume name it as given


def test_globs_take_folder_rules(tree):
    found, skips = listed([tree / "a" / "*"])
    assert [i.name for i in found] == [str(tree / "a" / "1.png"), str(tree / "a" / "2.jpg")]
    assert skips.count == {"no image extension": 1}
    found, _ = listed([tree / "*"])  # folders matched are walked
    assert len(found) == 3
    with pytest.raises(PathError, match="no file matches"):
        listed([tree / "*.gif"])


def test_file_urls_are_listed_by_fsspec_with_the_same_rules(tree):
    found, skips = listed([f"file://{tree}"])
    assert [i.name for i in found] == [f"file://{tree}/{n}" for n in ("a/1.png", "a/2.jpg", "b/3.PNG")]
    assert [i.where for i in found] == [i.name for i in found]
    assert skips.count == {"no image extension": 1}
    with pytest.raises(PathError, match="no such file or folder"):
        listed([f"file://{tree}/nothing/"])


def test_an_url_whose_package_is_missing_is_one_line():
    pytest.importorskip("fsspec")
    try:
        import gcsfs  # noqa: F401

        pytest.skip("gcsfs is installed")
    except ImportError:
        pass
    with pytest.raises(PathError, match=r"^gs://bucket/x: cannot open this kind of URL here"):
        listed(["gs://bucket/x"])


def test_manifests_list_paths_relative_to_themselves(tree):
    (tree / "list.txt").write_text("# the photos\na/1.png\n\n/elsewhere/gone.png\ns3://bucket/x.jpg\n")
    found, _ = listed([tree / "list.txt"])
    assert found == [
        sources.Image("a/1.png", str(tree / "a" / "1.png")),
        sources.Image("/elsewhere/gone.png", "/elsewhere/gone.png"),  # missing: counted when read
        sources.Image("s3://bucket/x.jpg", "s3://bucket/x.jpg"),
    ]
    (tree / "with_header.csv").write_text("label,path\ncat,a/1.png\ndog,b/3.PNG\n")
    assert [i.name for i in listed([tree / "with_header.csv"])[0]] == ["a/1.png", "b/3.PNG"]
    (tree / "bare.csv").write_text("a/2.jpg,x\nb/3.PNG,y\n")
    assert [i.name for i in listed([tree / "bare.csv"])[0]] == ["a/2.jpg", "b/3.PNG"]


def test_parquet_manifests_read_the_url_column(tree):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": [1, 2], "url": ["a/2.jpg", "file:///x/y.png"]}), tree / "list.parquet")
    found, _ = listed([tree / "list.parquet"])
    assert found == [
        sources.Image("a/2.jpg", str(tree / "a" / "2.jpg")),
        sources.Image("file:///x/y.png", "file:///x/y.png"),
    ]


def results(n, top_k=2):
    tops = [{"label": "cat", "index": 0, "probability": 0.75}, {"label": "dog", "index": 1, "probability": 0.25}]
    out = [Result(f"photos/cat/{i}.png", tops[:top_k], true_label="cat") for i in range(n)]
    out.append(Result("photos/\udcff.png", error="photos/\udcff.png: not a readable image (x)"))
    return out


@pytest.mark.parametrize("fmt", shards.FORMATS)
def test_shards_hold_result_lines_and_a_retry_replaces_its_shard(tmp_path, fmt):
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    dest = shards.Destination(str(tmp_path / "out"), fmt)
    dest.prepare()
    rows = [r.to_dict() for r in results(3)]
    dest.write(0, rows)
    dest.write(0, rows)  # a retried batch
    dest.write(1, rows[:1])
    files = sorted((tmp_path / "out").iterdir())
    assert [f.name for f in files] == [dest.shard(0), dest.shard(1)]
    assert shards.decode(files[0].read_bytes(), fmt) == rows
    back = [Result.from_dict(d) for d in shards.decode(files[0].read_bytes(), fmt)]
    assert back[-1].path == "photos/\udcff.png"  # a name that is not UTF-8, through path_bytes


def test_a_destination_with_shards_needs_resume_and_the_same_top_k(tmp_path):
    dest = shards.Destination(str(tmp_path / "out"))
    assert shards.earlier(dest, False, ["cat", "dog"], 2) == []  # nothing there yet
    dest.prepare()
    dest.write(0, [r.to_dict() for r in results(2)])
    again = shards.Destination(str(tmp_path / "out"))
    with pytest.raises(ResumeError, match="already holds 1 result shards: add --resume"):
        shards.earlier(again, False, ["cat", "dog"], 2)
    assert len(shards.earlier(again, True, ["cat", "dog"], 2)) == 3
    with pytest.raises(ResumeError, match="resume with the same --top-k"):
        shards.earlier(again, True, ["cat", "dog"], 1)
    (tmp_path / "file").write_text("x")
    with pytest.raises(shards.OutputError, match="exists and is not a folder"):
        shards.Destination(str(tmp_path / "file")).shards()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "parquet", "-o", "x.parquet"], "--format parquet is for the result shards of --ray"),
        (["--ray", "local", "--workers", "2", "-o", "out"], "--workers and --threads are for a local run"),
        (["--ray", "local"], "--ray writes result shards into a folder or URL: name it with --output"),
        (["--ray", "local", "-o", "out", "--format", "csv"], "--format csv: a cluster run writes jsonl or parquet"),
    ],
)
def test_option_errors_are_one_line(tree, tmp_path, monkeypatch, args, message):
    (tmp_path / "model.onnx").write_bytes(b"not checked before the options")
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["classify", "model.onnx", str(tree), *args])
    assert r.exit_code != 0
    assert r.output.strip().splitlines() == [f"Error: {r.output.strip().removeprefix('Error: ')}"]
    assert message in r.output


def test_infer_imports_no_ray():
    code = "import sys, infer, infer.cluster, infer.sources, infer.shards, infer.localcluster\n"
    code += "assert 'ray' not in sys.modules and 'fsspec' not in sys.modules, 'imported'\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
