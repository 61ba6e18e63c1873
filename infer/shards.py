"""The output of a cluster classify run: a folder (local, or an fsspec URL such as `s3://bucket/out/`) of
shard files, one per batch, and a marker written once every batch is in.

    DEST/part-20261206-070102-9f3a-000000.jsonl     batch 0 of the run started at 07:01:02 (9f3a: its own)
    DEST/part-20261206-070102-9f3a-000001.jsonl
    DEST/_SUCCESS                              the run finished: its summary, as JSON

A shard holds, in order, one result per image of its batch: a JSON line as `zoo classify` writes it
(infer.results.Result.to_dict), or a Parquet row with the same fields. Each shard is written whole, in
one step (a local file: a temporary file renamed, zoo.atomic; an object store: one PUT), under a name
made of the run's stamp and the batch's number. Ray retries a batch whose worker died; its retry writes
the same name and replaces it, so the folder holds every image of a finished batch exactly once.

A folder holding shards and no marker is a run unfinished: `resume` reads the results its shards hold
and the run classifies the other images into new shards; without `resume` it is refused, like the
FILE.partial of `zoo classify`. fsspec and pyarrow are imported when used.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from zoo import atomic

from . import results
from .results import OutputError, Result, ResumeError, check_carried
from .sources import is_url, listing_error, url_fs

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = ("jsonl", "parquet")
CLASSIFY_FORMATS = (*results.FORMATS, "parquet")  # `zoo classify --format`: a local run's, and the shards'
SHARD_PREFIX = "part-"
DONE = "_SUCCESS"  # the marker of a finished run (Hadoop's and Spark's name for it)


def parquet_schema() -> pa.Schema:
    """The Parquet form of a result line (infer.results.Result.to_dict)."""
    import pyarrow as pa

    prediction = pa.struct([("label", pa.string()), ("index", pa.int64()), ("probability", pa.float64())])
    return pa.schema(
        [
            ("path", pa.string()),
            ("path_bytes", pa.string()),
            ("top_k", pa.list_(prediction)),
            ("error", pa.string()),
            ("true_label", pa.string()),
            ("correct", pa.bool_()),
        ]
    )


def encode(rows: Sequence[dict], fmt: str) -> bytes:
    """A shard's bytes: the result dicts as JSON lines, or one Parquet table (absent fields as nulls)."""
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8")
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema()
    table = pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


def decode(data: bytes, fmt: str) -> list[dict]:
    """The result dicts of a shard's bytes (the inverse of `encode`; nulls dropped)."""
    if fmt == "jsonl":
        return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    import pyarrow.parquet as pq

    rows = pq.read_table(io.BytesIO(data)).to_pylist()
    return [{k: v for k, v in r.items() if v is not None} for r in rows]


@dataclass
class Destination:
    """Where a run's shards go: a local folder or an fsspec URL; picklable (it travels to the workers)."""

    url: str
    fmt: str = "jsonl"
    run: str = field(default_factory=lambda: f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}")  # this run's

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise OutputError(f"--format {self.fmt}: a cluster run writes {' or '.join(FORMATS)} shards")
        # a local folder as the workers find it: they run in folders of their own
        self.where = self.url if is_url(self.url) else os.path.abspath(self.url)

    def _fs(self):
        if is_url(self.url):
            return url_fs(self.url)
        import fsspec.implementations.local

        return fsspec.implementations.local.LocalFileSystem(), self.where

    def shard(self, batch: int) -> str:
        """The name of the shard of batch `batch` of this run."""
        return f"{SHARD_PREFIX}{self.run}-{batch:06d}.{self.fmt}"

    def write(self, batch: int, rows: Sequence[dict]) -> str:
        """Write batch `batch`'s results as one shard, whole or not at all; its name."""
        name = self.shard(batch)
        self._put(name, encode(rows, self.fmt))
        return name

    def _put(self, name: str, data: bytes) -> None:
        """Write file `name` whole or not at all: an object store's PUT, or zoo.atomic's rename."""
        fs, root = self._fs()
        if is_url(self.url):
            fs.pipe_file(f"{root.rstrip('/')}/{name}", data)
        else:
            atomic.write_bytes(os.path.join(root, name), data)

    def shards(self) -> list[str]:
        """The shard files already there (full paths within the filesystem), sorted."""
        fs, root = self._fs()
        try:
            if not fs.exists(root):
                return []
            if not fs.isdir(root):
                raise OutputError(f"--output {self.url} exists and is not a folder; name a folder")
            names = fs.ls(root, detail=False)
        except OutputError:
            raise
        except Exception as e:  # noqa: BLE001  (each fsspec backend its own errors)
            raise OutputError(str(listing_error(self.url, e))) from None
        ends = tuple(f".{f}" for f in FORMATS)
        return sorted(n for n in names if n.rsplit("/", 1)[-1].startswith(SHARD_PREFIX) and n.endswith(ends))

    def prepare(self) -> None:
        """Make the folder where it is local (an object store has none to make)."""
        if not is_url(self.url):
            atomic.directory(self.where)

    def finish(self, summary: dict) -> None:
        """Write the marker: the run is complete, with its summary."""
        self._put(DONE, (json.dumps(summary, indent=1) + "\n").encode("utf-8"))

    def unfinish(self) -> None:
        """Remove the marker, before a resumed run adds shards."""
        fs, root = self._fs()
        marker = f"{root.rstrip('/')}/{DONE}"
        if fs.exists(marker):
            fs.rm_file(marker)


def earlier(dest: Destination, resume: bool, class_names: Sequence[str], top_k: int) -> list[Result]:
    """The results already in `dest` (resume), checked to be this run's (same labels and --top-k); none
    where it holds no shards. Without `resume`, ResumeError where it holds some."""
    shards = dest.shards()
    if not shards:
        return []
    if not resume:
        raise ResumeError(
            f"--output {dest.url} already holds {len(shards):,} result shards: add --resume to finish "
            "or extend that run, or name another folder"
        )
    fs, _ = dest._fs()
    found = []
    for name in shards:
        fmt = name.rsplit(".", 1)[-1]
        try:
            found += [Result.from_dict(d) for d in decode(fs.cat_file(name), fmt)]
        except (ValueError, KeyError, TypeError, OSError) as e:
            raise ResumeError(f"{name}: not a shard of `zoo classify --ray` ({type(e).__name__}: {e})") from None
    check_carried(found, pathlib.Path(dest.url), class_names, top_k)
    return found


def done_names(results: Iterable[Result]) -> set[bytes]:
    """The names of the images `results` hold, as infer.results.Remaining compares them."""
    return {os.fsencode(r.path) for r in results}
