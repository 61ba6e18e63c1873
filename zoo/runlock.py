"""One writer per run directory: the lock `zoo train` holds while it writes a run.

    with runlock.lock(path, new=True, advice="choose another --output"):   # a new run
        ...                                   # FileExistsError where path holds something already
    with runlock.lock(path, advice="..."):    # --resume: the run's directory, which exists
        ...
    runlock.check_idle(path, advice="...")    # zoo export: RunBusy where a run is being written there

A new run's directory is made with os.mkdir, which fails where anything is at the path. The lock is
`fcntl.flock(LOCK_EX | LOCK_NB)` on the file rundir.LOCK inside the directory, which holds the
holder's PID: a refusal (RunBusy, one line) names that process. The kernel releases a flock when its
holder exits or dies, so a killed run leaves at most a lock file that nobody holds, which the next lock
takes over. A run that ends removes the file (and the directory it made, where nothing else was
written), still holding the lock; whoever opened the removed file meanwhile sees that it is no longer
the one at the path and opens the new one. Under torchrun only rank 0 writes, so only rank 0 locks.
Torch-free; the lock is advisory, for the processes of this package.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pathlib
import time

from . import rundir
from .atomic import NoSpaceError
from .rundir import RunError

WAIT_S = 0.5  # a lock that is taken is tried again this long: a check_idle holds it for microseconds,
# and a holder writes its PID just after taking it
_POLL_S = 0.02


class RunBusy(RunError):
    """A process is writing the run directory: one line naming it (its PID) and what to do."""

    def __init__(self, path: pathlib.Path, pid: int | None, advice: str):
        self.path, self.pid = path, pid
        who = f"process {pid}" if pid else "another process"
        super().__init__(f"{path} is in use: {who} (a `zoo train`) is writing it; {advice}")


# The lock files this process holds. A flock belongs to the open file, which a forked child (a DataLoader
# worker) shares: the child closes its copies, so the lock ends with the process that took it, not with
# the last of its children (a killed run's workers can outlive it by seconds).
_HELD: set[int] = set()


def _close_in_child() -> None:
    for fd in _HELD:
        try:
            os.close(fd)  # only this copy: the parent's lock stays (flock(LOCK_UN) here would end it)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


class RunLock:
    """The lock on a run directory, held until `release` (or the end of a `with` block, or the process)."""

    def __init__(self, path: pathlib.Path, fd: int, made: bool):
        self.path = path  # the run directory
        self._fd = fd  # the lock file, flocked
        self._made = made  # whether this lock made the directory
        self._pid = os.getpid()  # a forked child holds nothing, so releases nothing
        _HELD.add(fd)

    def release(self) -> None:
        """Remove the lock file (and the directory this lock made, where it is empty), then unlock."""
        if self._fd < 0 or os.getpid() != self._pid:
            return
        try:
            (self.path / rundir.LOCK).unlink(missing_ok=True)
            if self._made:
                try:
                    self.path.rmdir()  # only where nothing else was written
                except OSError:
                    pass
        finally:
            _HELD.discard(self._fd)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock(path: str | os.PathLike, *, new: bool = False, advice: str = "wait until it has ended") -> RunLock:
    """Lock run directory `path` for writing. `new`: make it (with its parents), or take an empty one
    (or one a killed run left with only its lock file); FileExistsError where anything else is there.
    RunBusy, naming the holder and `advice`, where a process holds the lock; RunError where a
    directory that is not `new` does not exist."""
    path = pathlib.Path(path)
    for _ in range(5):  # again only where the directory's maker removed it between two steps
        made = _make(path, advice) if new else False
        fd = _acquire(path, advice)
        if fd is None:
            if new:
                continue
            raise RunError(f"{path}: no such run directory")
        held = RunLock(path, fd, made)
        if new and _written(path):  # a run wrote there between the check and the lock
            held.release()
            raise FileExistsError(f"{path} already exists")
        return held
    raise RunError(f"{path}: removed again and again while it was being locked")


def check_idle(path: str | os.PathLike, advice: str) -> None:
    """RunBusy (naming the holder and `advice`) where a process holds the lock of run directory `path`;
    nothing is written."""
    path = pathlib.Path(path)
    try:
        fd = os.open(path / rundir.LOCK, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # no lock file (no directory): nobody is writing there
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunBusy(path, _holder(fd), advice) from None
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _make(path: pathlib.Path, advice: str) -> bool:
    """Make a new run's directory: True where this call made it, False where an empty one was there;
    RunBusy where a run is being written there, FileExistsError where anything else is."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(path)
        return True
    except FileExistsError:
        if not path.parent.is_dir():
            raise RunError(f"{path.parent}: not a directory, so {path.name} cannot be made in it") from None
    except OSError as e:
        raise RunError(f"{path}: cannot make the run directory ({e.strerror or e})") from None
    if path.is_dir():
        check_idle(path, advice)
        if not _written(path):
            return False
    raise FileExistsError(f"{path} already exists")


def _written(path: pathlib.Path) -> bool:
    """Whether directory `path` holds anything but a lock file."""
    return any(entry.name != rundir.LOCK for entry in os.scandir(path))


def _acquire(path: pathlib.Path, advice: str) -> int | None:
    """The lock file of `path`, created where missing, flocked exclusively, with this process's PID in it;
    RunBusy where another process holds it for WAIT_S; None where there is no directory `path`."""
    lock_file = path / rundir.LOCK
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise _unwritable(lock_file, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(fd)
            os.close(fd)
            if time.monotonic() >= deadline:
                raise RunBusy(path, pid, advice) from None
            time.sleep(_POLL_S)
            continue
        if _same_file(fd, lock_file):
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except OSError as e:
                lock_file.unlink(missing_ok=True)  # held: nobody else relies on this file; none is left
                os.close(fd)
                raise _unwritable(lock_file, e) from None
            return fd
        os.close(fd)  # its holder removed it as it ended, after we opened it: the new one counts


def _unwritable(lock_file: pathlib.Path, e: OSError) -> Exception:
    """The one-line error for a lock file that cannot be written (a full disk says so as every write does)."""
    if e.errno == errno.ENOSPC:
        return NoSpaceError(lock_file)
    return RunError(f"{lock_file}: cannot write the run's lock file ({e.strerror or e})")


def _same_file(fd: int, path: pathlib.Path) -> bool:
    """Whether open file `fd` is still the file at `path`."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (opened.st_dev, opened.st_ino) == (now.st_dev, now.st_ino)


def _holder(fd: int) -> int | None:
    """The PID in a lock file that a process holds (it writes it just after taking the lock); None where
    it has not within WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while True:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return int(text)
        if time.monotonic() >= deadline:
            return None
        time.sleep(_POLL_S)
