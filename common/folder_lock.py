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


class NotOurs(UserError):
    """An existing folder the project did not make: never written into."""


class FolderLock:
    NAME = ".lock"

    def __init__(self, folder: Path, what: str, markers: tuple[str, ...] = ()):
        """markers: files that only a folder of this kind holds (build_state.json, ...): an existing folder
        with none of them and no lock of this kind was not made by the project and is never written into."""
        self.folder, self.what, self.markers = Path(folder), what, markers
        self.fd = None
        self.took_over_from = None  # pid of a holder that died without releasing

    def check_ours(self) -> None:
        """Refuses an existing, non-empty folder that is not a folder of this kind (every file in it kept)."""
        if not self.folder.is_dir() or not any(self.folder.iterdir()):
            return
        if any((self.folder / m).exists() for m in self.markers):
            return
        lock = self.folder / self.NAME
        if lock.is_file():
            try:
                holder = json.loads(lock.read_text() or "{}")
            except (ValueError, UnicodeDecodeError, OSError):
                holder = {}
            if holder.get("what", self.what) == self.what:  # a folder of this kind (locks before 'what': too)
                return
        raise NotOurs(f"{self.folder} exists and is not a {self.what} this project made (it holds no "
                      f"{' or '.join(self.markers) or self.NAME}); nothing in it was changed. Give a new or empty "
                      f"folder, or move its files away first")

    def acquire(self) -> "FolderLock":
        self.check_ours()
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
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "what": self.what, "command": " ".join(sys.argv)[:200],
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
