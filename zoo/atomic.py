"""Every write to a path, the user's or a run's: the one owner of what happens to what is there.

- A regular file or a new path: written to a temporary file beside it, fsynced, then renamed over it,
  so a killed process leaves either the old file or the new one, never half of one.
- A symbolic link is followed (`target`): the data lands in the file it names, renamed onto that
  path, and the link stays a link.
- A FIFO or a device (`is_stream`) is written straight through, streaming, with no temporary file
  and no rename: it is never replaced (`-o /dev/null` stays the null device). A socket is refused.
- A folder output (`directory`) follows a link to a folder and refuses anything else already there.
- A write that fails for want of space raises NoSpaceError naming the file (whatever the writing
  library said: safetensors wraps ENOSPC in its own error, torch's zip writer reports only
  "unexpected pos"), and leaves the old file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import stat
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


class OutputError(ValueError):
    """A path named for output cannot take what is written there (a folder where a file goes, a file
    where a folder goes...); the message names it, in one line."""


def target(path: str | os.PathLike) -> pathlib.Path:
    """Where writing `path` lands: the end of its chain of symbolic links where it is one (the link
    stays a link), else `path` itself."""
    path = pathlib.Path(path)
    return pathlib.Path(os.path.realpath(path)) if path.is_symlink() else path


def is_stream(path: str | os.PathLike) -> bool:
    """Whether `path` (links followed) is neither a file nor a folder: a FIFO, a character or block
    device. Such a target is written straight through and never replaced. OutputError for a socket,
    which cannot be opened as a file (and is never replaced either)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    if stat.S_ISSOCK(mode):
        raise OutputError(f"{path} is a socket, which cannot be written as a file; name a file, a FIFO or a device")
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def directory(path: str | os.PathLike) -> pathlib.Path:
    """`path` as a folder output: made where missing (a link to a missing folder makes the folder it
    names), a link to a folder followed; OutputError where something else is there. Returns `path`."""
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} exists and is not a folder; name a folder")
    try:
        target(path).mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"{path}: cannot make this folder, a file is in the way") from None
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a temporary path to write; on success it replaces `path` (a link: the file it names) in one
    rename. Where `path` is a FIFO or device, yield it to be written straight through; OutputError for a
    socket or a folder."""
    named, path = path, target(path)
    if is_stream(path):
        yield path
        return
    if path.is_dir():
        raise OutputError(f"{named} is a folder; name a file")
    directory(path.parent)
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
