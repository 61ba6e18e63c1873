"""Atomic file writes: write to a temporary file beside the target, fsync, then rename over it.

A killed process leaves either the old file or the new one, never half of one. A write that fails for
want of space raises NoSpaceError naming the file (whatever the writing library said: safetensors wraps
ENOSPC in its own error, torch's zip writer reports only "unexpected pos"), and leaves the old file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import tempfile
from typing import Callable, Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)
NEARLY_FULL = 1 << 20  # bytes free under which a failed write is taken for a full disk


class NoSpaceError(OSError):
    """No space left on the device that holds `filename`."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(errno.ENOSPC, "no space left on device", str(path))

    def __str__(self) -> str:
        return f"{self.filename}: no space left on device"


def out_of_space(error: BaseException, folder: str | os.PathLike) -> bool:
    """Whether `error`, raised while writing into `folder`, means its device is full: ENOSPC, a library's
    wrapping of it, or a failed write with (almost) nothing left free there."""
    if getattr(error, "errno", None) == errno.ENOSPC or "No space left on device" in str(error):
        return True
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < NEARLY_FULL


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a temporary path to write; on success it replaces `path` in one rename."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = pathlib.Path(tmp)
    try:
        yield tmp
        # mkstemp makes 0600, and a writer may replace the file with one of its own (safetensors does):
        # the result gets the mode of any file the user creates, whatever wrote it
        os.chmod(tmp, 0o666 & ~_UMASK)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception as e:
        if out_of_space(e, path.parent):  # (checked while the temporary file still takes its space)
            raise NoSpaceError(path) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_with(path: str | os.PathLike, writer: Callable[[pathlib.Path], None]) -> None:
    """Call `writer(tmp_path)` (e.g. a library's own save function) and move the result into place."""
    with atomic_path(path) as tmp:
        writer(tmp)
