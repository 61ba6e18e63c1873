"""What a cluster classify run reads: the images named by folders, globs, fsspec URLs and manifests, in
order, as strings a worker on any node can open, by the one walker's rules (zoo.data.walk).

    >>> skips = Skips()
    >>> for name, where in images(["photos/", "s3://bucket/cats/*.jpg", "list.txt"], skips):
    ...     print(name, where)        # `name` as results name it, `where` what a worker opens

- A local folder is walked by zoo.data.walk (hidden files left out, other entries without an image
  extension skipped and counted); a local file named is taken whatever its extension; `where` is its
  absolute path (the folder must be on a filesystem every node mounts at the same place).
- A glob (`*`, `?`, `[`): its matches, sorted; a folder matched is walked, a file matched is taken as a
  folder's entry would be (an image extension, or skipped).
- An fsspec URL (`s3://`, `gs://`, `file://`...): a "folder" (prefix) is listed recursively, sorted, by
  the same rules; a glob in it as above.
- A manifest (a `.txt`, `.csv` or `.parquet` file, local or a URL) lists paths or URLs: one a line, or
  the `path` (else `url`, else first) column. Relative paths are relative to the manifest's folder. Its
  entries are taken as named: one that does not exist is counted missing when it is read, not here
  (checking 100 million names first would take hours).

A path that cannot be listed (no such file, no credentials, a missing fsspec extra) is a PathError in
one line. NumPy-free and torch-free; fsspec and pyarrow are imported only where a URL or a Parquet
manifest needs them.
"""

from __future__ import annotations

import glob
import os
import pathlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, NamedTuple

from zoo.data import walk as walker
from zoo.data.preprocess import IMAGE_EXTENSIONS
from zoo.data.walk import PathError, Skips
from zoo.text import first_line

if TYPE_CHECKING:
    import fsspec

MANIFESTS = (".txt", ".csv", ".parquet")  # a source with one of these suffixes lists the images
MANIFEST_COLUMNS = ("path", "url")  # the column of a CSV or Parquet manifest that names them, else the first
S3_HINT = "pip install 'cnnzoo[s3]'"


class Image(NamedTuple):
    """An image of a source: the name results give it (as named, like local classify's paths), and where
    a worker opens it (an absolute path, or a URL). Path-like as its name (infer.results.Remaining)."""

    name: str
    where: str

    def __fspath__(self) -> str:
        return self.name


def is_url(source: str) -> bool:
    """Whether `source` is an fsspec URL (`s3://...`, `file://...`), not a local path."""
    return "://" in source


def _is_glob(source: str) -> bool:
    return glob.has_magic(source)


def _is_manifest(source: str) -> bool:
    return source.lower().endswith(MANIFESTS)


def url_fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """(fsspec filesystem, path within it) for `url`; PathError where its protocol's package is missing."""
    import fsspec.core

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as e:
        hint = S3_HINT if url.startswith(("s3://", "s3a://")) else f"install the fsspec package for it ({e})"
        raise PathError(f"{url}: cannot open this kind of URL here: {hint}") from None
    except ValueError as e:
        raise PathError(f"{url}: not a URL fsspec knows ({e})") from None


def listing_error(source: str, error: BaseException) -> PathError:
    """One line for a source that could not be listed or read: no credentials, no such file, no access."""
    text = first_line(error)
    if type(error).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
        return PathError(
            f"{source}: no credentials to read it ({text}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or a role on this machine"
        )
    if isinstance(error, FileNotFoundError):
        return PathError(f"{source}: no such file or folder")
    if isinstance(error, PermissionError):
        return PathError(f"{source}: access denied ({text})")
    return PathError(f"{source}: cannot list it ({type(error).__name__}: {text})")


def _entry(name: str, skips: Skips, where: str | None = None) -> Iterator[Image]:
    """A folder's entry: taken where it has an image extension and is not hidden, else counted skipped."""
    base = name.rstrip("/").rsplit("/", 1)[-1]
    if base.startswith("."):
        return
    if os.path.splitext(base)[1].lower() in IMAGE_EXTENSIONS:
        yield Image(name, where or name)
    else:
        skips.add(pathlib.Path(name), "no image extension")


def _local(source: str, skips: Skips, follow_links: bool) -> Iterator[Image]:
    """A local file, folder or glob, by zoo.data.walk's rules."""
    if not _is_glob(source) or os.path.lexists(source):
        for path in walker.images([source], skips, follow_links):
            yield Image(str(path), os.path.abspath(path))
        return
    matches = sorted(glob.glob(source, recursive=True))
    if not matches:
        raise PathError(f"{source}: no file matches")
    for match in matches:
        if os.path.isdir(match):
            yield from _local(match, skips, follow_links)
        else:
            yield from _entry(match, skips, os.path.abspath(match))


def _remote(url: str, skips: Skips) -> Iterator[Image]:
    """The images under an fsspec URL: a file, a prefix listed recursively, or a glob; sorted."""
    fs, path = url_fs(url)
    try:
        if _is_glob(path):
            found = sorted(fs.glob(path))
            if not found:
                raise PathError(f"{url}: no file matches")
            listed = [(p, sorted(fs.find(p))) if fs.isdir(p) else (p, [p]) for p in found]
        elif fs.isdir(path):
            listed = [(path, sorted(fs.find(path)))]
        elif fs.exists(path):
            yield Image(url, url)
            return
        else:
            raise FileNotFoundError(url)
    except PathError:
        raise
    except Exception as e:  # fsspec's backends raise their own errors (botocore's, gcsfs')  # noqa: BLE001
        raise listing_error(url, e) from None
    for root, names in listed:
        for name in names:
            inside = name[len(root.rstrip("/")) :].strip("/").split("/")
            if not any(part.startswith(".") for part in inside[:-1]):  # in a hidden folder: left out
                yield from _entry(fs.unstrip_protocol(name), skips)


def _manifest_names(source: str) -> list[str]:
    """The entries of a manifest file (local or a URL), as written in it."""
    if source.lower().endswith(".parquet"):
        import pyarrow.parquet as pq

        fs, path = url_fs(source) if is_url(source) else (None, source)
        table = pq.read_table(path, filesystem=fs)
        column = next((c for c in MANIFEST_COLUMNS if c in table.column_names), table.column_names[0])
        return [str(v) for v in table.column(column).to_pylist() if v]
    text = _read_text(source)
    if source.lower().endswith(".txt"):
        return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    import csv
    import io

    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    if not rows:
        return []
    header = [h.strip().lower() for h in rows[0]]
    column = next((header.index(c) for c in MANIFEST_COLUMNS if c in header), None)
    if column is None:  # no header naming it: every row's first field
        return [r[0].strip() for r in rows if r[0].strip()]
    return [r[column].strip() for r in rows[1:] if len(r) > column and r[column].strip()]


def _read_text(source: str) -> str:
    if is_url(source):
        fs, path = url_fs(source)
        return fs.cat_file(path).decode("utf-8")
    return pathlib.Path(source).read_text(encoding="utf-8")


def _manifest(source: str) -> Iterator[Image]:
    """A manifest's entries, relative ones taken from its folder; each taken as named, present or not."""
    try:
        names = _manifest_names(source)
    except PathError:
        raise
    except UnicodeDecodeError:
        raise PathError(f"{source}: not a text manifest (it is not UTF-8)") from None
    except Exception as e:  # noqa: BLE001  (pyarrow, csv, fsspec: each its own errors)
        raise listing_error(source, e) from None
    folder = source.rsplit("/", 1)[0] if is_url(source) else os.path.dirname(os.path.abspath(source))
    for name in names:
        if is_url(name):
            yield Image(name, name)
        elif is_url(source) and not name.startswith("/"):
            yield Image(name, f"{folder}/{name}")
        else:
            yield Image(name, os.path.join(folder, name))


def check_named(sources: Iterable[str]) -> None:
    """PathError for the first local source (not a glob) that is neither a file nor a folder; URLs are
    checked when they are listed."""
    walker.check_named([s for s in sources if not is_url(s) and not (_is_glob(s) and not os.path.lexists(s))])


def images(sources: Iterable[str], skips: Skips, follow_links: bool = False) -> Iterator[Image]:
    """(name, where) of every image the sources name, in order, lazily; entries skipped counted in `skips`."""
    for source in map(str, sources):
        if _is_manifest(source) and (is_url(source) or os.path.isfile(source)):
            yield from _manifest(source)
        elif is_url(source):
            yield from _remote(source, skips)
        else:
            yield from _local(source, skips, follow_links)
