"""One process per output folder (a build folder, a training run folder, a sweep output folder).

The lock is an advisory `flock` on FOLDER/.lock, which the kernel releases when its holder dies however
it dies; the file keeps the holder's pid and command so that a refused process can name it, and so that
the next holder can say it took over a lock that a killed process left.
"""
from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

from .errors import UserError


class FolderBusy(UserError):
    """Another process is writing the same folder."""


class FolderLock:
    NAME = ".lock"

    def __init__(self, folder: Path, what: str):
        self.folder, self.what = Path(folder), what
        self.fd = None
        self.took_over_from = None  # pid of a holder that died without releasing

    def acquire(self) -> "FolderLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / self.NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise FolderBusy(f"{self.what} {self.folder} is in use by process {holder.get('pid', '?')} "
                             f"({holder.get('command', 'unknown command')}, since {holder.get('since', '?')}); "
                             f"wait for it to finish or stop it, or choose another folder") from None
        previous = _read(fd)
        if previous.get("pid") and previous["pid"] != os.getpid():
            self.took_over_from = previous["pid"]  # the flock was free: that process ended without releasing
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": " ".join(sys.argv)[:200],
                                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)  # the file stays: unlinking it could let two processes lock two inodes
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (ValueError, UnicodeDecodeError):
        return {}
