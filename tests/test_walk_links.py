"""Which symbolic links the one folder walker (zoo.data.walk) follows: by default only those that stay inside
the tree it was given; with follow_links, the others too, but never into /proc, /sys or /dev. (A folder
holding a link to / made `zoo classify` walk the whole filesystem: no output after 60 s, 1 GB of memory.)"""

import itertools
import os
import pathlib

import numpy as np
from PIL import Image

from zoo.data.walk import collect, walk


def png(path: pathlib.Path) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)
    return path


def tree(tmp_path):
    """photos/ (a.png, sub/b.png, inside -> sub, root -> /, outside -> ../elsewhere) and elsewhere/c.png."""
    root = tmp_path / "photos"
    png(root / "a.png")
    png(root / "sub" / "b.png")
    png(tmp_path / "elsewhere" / "c.png")
    os.symlink(root / "sub", root / "inside")
    os.symlink("/", root / "root")
    os.symlink(tmp_path / "elsewhere", root / "outside")
    os.symlink(tmp_path / "elsewhere" / "c.png", root / "c-link.png")
    return root


def test_by_default_links_are_followed_only_inside_the_tree(tmp_path):
    root = tree(tmp_path)
    real = os.path.realpath(root)
    seen = []
    for path, why in itertools.islice(walk([root]), 1000):  # bounded: the walk before went on through /
        seen.append((path, why))
        if why is None:
            assert os.path.realpath(path).startswith(real + os.sep), f"{path} is outside the tree"
    files, skipped = collect([root])
    assert sorted(p.relative_to(root).as_posix() for p in files) == ["a.png", "inside/b.png", "sub/b.png"]
    assert {p.name: why for p, why in skipped} == {
        "c-link.png": "symbolic link out of the folder (follow it with --follow-links)",
        "outside": "symbolic link out of the folder (follow it with --follow-links)",
        "root": "symbolic link out of the folder (follow it with --follow-links)",
    }


def test_follow_links_takes_the_others_but_never_proc_sys_dev(tmp_path):
    root = tmp_path / "photos"
    png(root / "a.png")
    png(tmp_path / "elsewhere" / "c.png")
    os.symlink(tmp_path / "elsewhere", root / "outside")
    for name in ("proc", "sys", "dev"):
        os.symlink(f"/{name}", root / name)
    os.symlink("/proc/self", root / "self")  # into /proc by way of another link
    files, skipped = collect([root], follow_links=True)
    assert sorted(p.relative_to(root).as_posix() for p in files) == ["a.png", "outside/c.png"]
    assert {p.name: why for p, why in skipped} == {
        "dev": "symbolic link into /dev (never followed)",
        "proc": "symbolic link into /proc (never followed)",
        "self": "symbolic link into /proc (never followed)",
        "sys": "symbolic link into /sys (never followed)",
    }


def test_a_named_link_and_a_tree_reached_through_a_link_are_the_tree_given(tmp_path):
    """The tree is the folder as named: a folder named through a link is walked, and links inside it
    that stay inside its real folder are followed."""
    real = tmp_path / "real"
    png(real / "a.png")
    os.symlink(real / "a.png", real / "again.png")
    os.symlink(real, tmp_path / "named")
    files, skipped = collect([tmp_path / "named"])
    assert sorted(p.name for p in files) == ["a.png", "again.png"] and not skipped


def test_zoo_classify_on_a_folder_linking_to_root_ends_at_once(tmp_path, exported_lenet):
    """The command as the user met it: a folder holding a link to / is classified, the link skipped and
    named on the last line (before: the whole filesystem was walked, no output after 60 s)."""
    from click.testing import CliRunner

    from zoo.cli import main

    root = tree(tmp_path)
    run = exported_lenet("lenet5-links")
    r = CliRunner().invoke(main, ["classify", str(run), str(root), "-o", str(tmp_path / "out.jsonl")])
    assert r.exit_code == 0, r.output
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 3  # a.png, inside/b.png, sub/b.png
    assert "symbolic link out of the folder (follow it with --follow-links) (+2 more)" in r.output
