"""One ``tep up`` per data dir: an exclusive ``flock`` on a file inside it, held while it runs.

The lock file also names the holder's process id, so a second ``tep up`` can say who has the
directory. The kernel drops the lock when the holder exits, however it exits (``kill -9``
included), so a stale file never blocks anyone: only a live holder does.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from eventstore.errors import TepError

__all__ = ["LOCK_FILE", "DataDirInUseError", "DataDirLock"]

LOCK_FILE = "tep-up.lock"


class DataDirInUseError(TepError):
    """Another live ``tep up`` holds the data dir.

    Attributes:
        directory: the data dir.
        pid: the holder's process id, when it could be read.
    """

    def __init__(self, directory: Path, pid: int | None) -> None:
        self.directory = directory
        self.pid = pid
        holder = f"tep up (pid {pid})" if pid is not None else "tep up"
        super().__init__(
            f"data dir {directory} is in use by another {holder}: stop it, "
            "or give this one its own --data-dir and --port"
        )


class DataDirLock:
    """The exclusive lock on ``directory``; :meth:`acquire` it, :meth:`release` it at the end.

    Example:
        >>> with DataDirLock(Path(".tep")):  # doctest: +SKIP
        ...     run_the_stack()
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / LOCK_FILE
        self._fd: int | None = None

    def check_free(self) -> None:
        """Fail if a live holder has the directory; creates nothing.

        Raises:
            DataDirInUseError: another process holds the lock.
        """
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            if not _try_lock(fd, fcntl.LOCK_SH):
                raise DataDirInUseError(self.directory, _holder(fd))
        finally:
            os.close(fd)  # also drops the shared lock taken to look

    def acquire(self) -> None:
        """Create the directory if needed, take the lock and write this process's id into it.

        Raises:
            DataDirInUseError: another process holds the lock.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd, fcntl.LOCK_EX):
            try:
                raise DataDirInUseError(self.directory, _holder(fd))
            finally:
                os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (the file stays: removing it could split a waiting taker's lock)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _try_lock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(fd: int) -> int | None:
    """The process id the holder wrote, if it did already."""
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip())
    return None
