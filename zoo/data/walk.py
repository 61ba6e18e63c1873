"""Which files in a folder are images: the one walker, for `zoo classify` and image-folder datasets.

    >>> for path, why in walk(["photos/"]):   # lazily, in sorted order
    ...     print(path, why or "an image")
    >>> files, skipped = collect(["photos/", "one.jpg"])
    >>> skips = Skips()
    >>> for path in images(["photos/"], skips):   # the image files, lazily; the others counted in skips
    ...     print(path)
    >>> print(describe_skipped(skips))

Folders are walked recursively in sorted order, following symbolic links that stay inside the folder
given (`follow_links`: the others too, never into /proc, /sys or /dev; a link that is not followed is
skipped and reported). Hidden files and folders (a
name starting with ".") are left out, uncounted; files without an image extension (IMAGE_EXTENSIONS),
FIFOs, sockets, devices, broken links and symbolic link loops are skipped and reported as `(path, why)`.
A regular file named directly is always taken, whatever its name. A named path that is missing or not a
regular file or folder (a FIFO would block the read forever) raises PathError.

File names need not be UTF-8 (a Linux name is bytes); a path is Python's str of those bytes (undecodable
bytes as lone surrogates), and `printable` shows it to people. Torch-free.
"""

from __future__ import annotations

import errno
import os
import pathlib
import stat
from collections.abc import Iterable, Iterator

from zoo.text import plural

from .preprocess import IMAGE_EXTENSIONS

Skipped = tuple[pathlib.Path, str]  # an entry left out, and why


class PathError(ValueError):
    """A path named for classification is missing or is not a file or folder to read."""


def printable(text: str) -> str:
    """`text` as valid UTF-8: the undecodable bytes of a file name (lone surrogates) become U+FFFD."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no file name decodes to
        raw = text.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def _special(mode: int) -> str:
    return (
        "a FIFO"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "not a file"
    )


def _kind(path: pathlib.Path) -> tuple[str, os.stat_result | None]:
    """("dir" | "file" | why it is neither, its stat) for a path, following symbolic links."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return ("broken symbolic link" if os.path.islink(path) else "no such file or folder"), None
    except OSError as e:
        return ("symbolic link loop" if e.errno == errno.ELOOP else f"cannot read ({e.strerror or e})"), None
    if stat.S_ISDIR(st.st_mode):
        return "dir", st
    if stat.S_ISREG(st.st_mode):
        return "file", st
    return f"not a regular file ({_special(st.st_mode)})", st


NEVER_FOLLOWED = ("/proc", "/sys", "/dev")  # no image lives there; a walk there never ends or blocks
OUT_OF_TREE = "symbolic link out of the folder (follow it with --follow-links)"


def _link_problem(path: pathlib.Path, tree: str, follow_links: bool) -> str | None:
    """Why a symbolic link `path` is not followed (None: it is): by default it must stay inside `tree`
    (the real path of the folder named); with `follow_links` anywhere but NEVER_FOLLOWED."""
    target = os.path.realpath(path)
    if target == tree or target.startswith(tree.rstrip(os.sep) + os.sep):
        return None
    banned = next((d for d in NEVER_FOLLOWED if target == d or target.startswith(d + os.sep)), None)
    if banned:
        return f"symbolic link into {banned} (never followed)"
    return None if follow_links else OUT_OF_TREE


def _walk(
    folder: pathlib.Path, st: os.stat_result, above: frozenset, tree: str, follow_links: bool
) -> Iterator[tuple[pathlib.Path, str | None]]:
    """The entries under `folder` in sorted order; symbolic links are followed as `_link_problem` allows,
    never back into a folder above (a loop, skipped like the rest)."""
    here = above | {(st.st_dev, st.st_ino)}
    try:
        names = sorted(os.listdir(folder))
    except OSError as e:
        yield folder, f"cannot read ({e.strerror or e})"
        return
    for name in names:
        if name.startswith("."):  # hidden: left out, uncounted
            continue
        path = folder / name
        kind, info = _kind(path)  # a broken link or a loop is said as such, wherever it points
        if kind in ("dir", "file") and os.path.islink(path):
            kind = _link_problem(path, tree, follow_links) or kind
        if kind == "dir":
            if (info.st_dev, info.st_ino) in here:
                yield path, "symbolic link loop"
            else:
                yield from _walk(path, info, here, tree, follow_links)
        elif kind != "file":
            yield path, kind
        elif path.suffix.lower() in IMAGE_EXTENSIONS:
            yield path, None
        else:
            yield path, "no image extension"


def walk(
    paths: Iterable[str | os.PathLike], follow_links: bool = False, tree: str | os.PathLike | None = None
) -> Iterator[tuple[pathlib.Path, str | None]]:
    """Every entry of files and folders, lazily, in order: (path, None) for an image file to read,
    (path, why) for one skipped (see the module's rules). A symbolic link in a folder is followed where it
    stays inside that folder (as named, links resolved); `follow_links`: the others too, but never into
    /proc, /sys or /dev. `tree`: the folder links must stay inside, where it is not each named folder (a
    dataset's class folders are walked one by one, inside the data folder). PathError for a named path that
    is neither a regular file nor a folder, when the walk reaches it."""
    for p in map(pathlib.Path, paths):
        kind, info = _named(p)
        if kind == "dir":
            yield from _walk(p, info, frozenset(), os.path.realpath(tree or p), follow_links)
        else:
            yield p, None


def _named(path: pathlib.Path) -> tuple[str, os.stat_result]:
    """("dir" | "file", its stat) for a path named to the walk; PathError for anything else."""
    kind, info = _kind(path)
    if kind not in ("dir", "file"):
        raise PathError(f"{printable(str(path))}: " + kind.replace("regular file (", "regular file or folder ("))
    return kind, info


def check_named(paths: Iterable[str | os.PathLike]) -> None:
    """PathError for the first named path that `walk` would refuse when it reaches it: a caller that
    consumes the walk lazily checks them all before it starts."""
    for p in map(pathlib.Path, paths):
        _named(p)


def collect(
    paths: Iterable[str | os.PathLike], follow_links: bool = False, tree: str | os.PathLike | None = None
) -> tuple[list[pathlib.Path], list[Skipped]]:
    """(image files, (path, why) for each entry skipped): `walk` gathered into two lists."""
    files: list[pathlib.Path] = []
    skipped: list[Skipped] = []
    for path, why in walk(paths, follow_links, tree):
        if why is None:
            files.append(path)
        else:
            skipped.append((path, why))
    return files, skipped


def images(
    paths: Iterable[str | os.PathLike],
    skips: Skips,
    follow_links: bool = False,
    tree: str | os.PathLike | None = None,
) -> Iterator[pathlib.Path]:
    """The image files of `walk`, lazily; each entry skipped is counted into `skips` as the walk passes
    it (so memory does not grow with the tree)."""
    for path, why in walk(paths, follow_links, tree):
        if why is None:
            yield path
        else:
            skips.add(path, why)


class Skips:
    """The entries a walk skipped, counted as they come: how many, and per reason the first path and
    how many had it (not every path: a walk of any size holds one path per reason)."""

    def __init__(self, skipped: Iterable[Skipped] = ()):
        self.first: dict[str, pathlib.Path] = {}  # reason -> its first path, in the order met
        self.count: dict[str, int] = {}  # reason -> how many
        for path, why in skipped:
            self.add(path, why)

    def add(self, path: pathlib.Path, why: str) -> None:
        self.first.setdefault(why, path)
        self.count[why] = self.count.get(why, 0) + 1

    def __len__(self) -> int:
        return sum(self.count.values())


def describe_skipped(skipped: Skips | Iterable[Skipped]) -> str:
    """ "3 files skipped (a/notes.txt: no image extension (+1 more); a/loop: symbolic link loop)":
    the first file of each reason, and how many more had it."""
    skips = skipped if isinstance(skipped, Skips) else Skips(skipped)
    parts = [
        f"{printable(str(path))}: {why}" + (f" (+{skips.count[why] - 1} more)" if skips.count[why] > 1 else "")
        for why, path in skips.first.items()
    ]
    return f"{plural(len(skips), 'file')} skipped ({'; '.join(parts)})"
