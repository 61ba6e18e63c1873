"""Downloads with a progress bar, checksum verification and an atomic move into the cache.

Nothing is downloaded unless asked for; offline, the error says which file to fetch and where to put it.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import urllib.error
import urllib.request

from . import atomic


class DownloadError(RuntimeError):
    """A download failed or its checksum did not match; the message says what to do instead,
    `reasons` why each URL failed."""

    def __init__(self, message: str, reasons: list[str] | None = None):
        super().__init__(message)
        self.reasons = reasons or []


def cache_dir(*parts: str) -> pathlib.Path:
    """`$ZOO_CACHE` (default ~/.cache/zoo) / parts: the one cache root, every cache a folder in it
    (weights/ for pretrained weights, mnist/ for `--data mnist` unless `$ZOO_DATA` says otherwise, ort-trt/
    for ONNX Runtime's TensorRT engines)."""
    root = os.environ.get("ZOO_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "zoo")
    return pathlib.Path(root, *parts)


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def digest_matches(got: str, expected: str) -> bool:
    """Whether hex digest `got` is `expected`: all of it, or, where only the start of a digest is known
    (torchvision names its files `name-<sha256[:8]>.pth`), its start."""
    return got.lower().startswith(expected.lower()) if expected else False


def download(
    urls: str | list[str],
    dest: str | os.PathLike,
    *,
    digest: str | None = None,
    algorithm: str = "sha256",
    progress: bool = True,
    timeout: float = 30.0,
) -> pathlib.Path:
    """Fetch the first of `urls` that serves the right file into `dest` (atomically), checking its digest.

    `digest`: the full hex digest, or only its start where no more is known (see `digest_matches`).
    """
    from tqdm import tqdm

    dest = pathlib.Path(dest)
    urls = [urls] if isinstance(urls, str) else list(urls)
    errors = []
    for url in urls:
        try:
            with atomic.atomic_path(dest) as tmp:
                with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
                    total = int(r.headers.get("Content-Length") or 0) or None
                    with tqdm(
                        total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress, leave=False
                    ) as bar:
                        for block in iter(lambda: r.read(1 << 16), b""):
                            f.write(block)
                            bar.update(len(block))
                if digest:
                    got = file_digest(tmp, algorithm)
                    if not digest_matches(got, digest):
                        what = "" if len(digest) == len(got) else f" (the first {len(digest)} hex digits)"
                        raise ValueError(
                            f"checksum mismatch ({algorithm} {got}, expected {digest.lower()}"
                            f"{what}): the file is corrupt or not the right one"
                        )
            return dest
        except (urllib.error.URLError, OSError, ValueError) as e:  # try the next mirror
            errors.append(f"{url}: {getattr(e, 'reason', e)}")
    raise DownloadError(
        f"could not download {dest.name} ({'; '.join(errors)}); fetch it by hand from {urls[0]} and put it at {dest}",
        errors,
    )


def fetch(urls: str | list[str], dest: str | os.PathLike, **kw) -> pathlib.Path:
    """`dest` if it is already there (and matches the digest), else `download(urls, dest)`."""
    dest = pathlib.Path(dest)
    digest, algorithm = kw.get("digest"), kw.get("algorithm", "sha256")
    if dest.is_file() and (not digest or digest_matches(file_digest(dest, algorithm), digest)):
        return dest
    return download(urls, dest, **kw)


__all__ = ["DownloadError", "cache_dir", "digest_matches", "download", "fetch", "file_digest"]
