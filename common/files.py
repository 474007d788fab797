"""The one atomic writer: every file a kill must not leave torn (checkpoints, datasets, states, reports)
is written to a temporary file beside it and renamed over it."""
from __future__ import annotations

import errno
import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

FULL_OR_READ_ONLY = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS}


@contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path` to write; renamed onto `path` when the block ends without an
    error, removed otherwise. The file is readable by everyone (data and models are shared)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        if e.errno not in FULL_OR_READ_ONLY:
            raise
        from .errors import UserError
        raise UserError(f"{path} could not be written ({e.strerror}); what was there before is kept: free space "
                        f"on that disk (or raise its quota) or write to another folder, then run the same command "
                        f"again") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, data) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def destination_problem(folder) -> str | None:
    """Why `folder` (made if missing) cannot take the files of a long job, in words naming the path, or None.
    Checked before any computing: the nearest existing folder must be a folder and writable (a file is
    created and removed there, which also catches read-only mounts)."""
    folder = Path(folder).absolute()
    base = folder
    while not base.exists():
        base = base.parent
    if not base.is_dir():
        return f"{base} is a file, not a folder, so {folder} cannot be made"
    try:
        fd, probe = tempfile.mkstemp(dir=base, prefix=".write-probe-")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        return f"{base} cannot be written ({e.strerror or e})"
    return None


def require_destination(folder, what: str, flag: str) -> None:
    """destination_problem as the project's one-line error (exit 2), before any work."""
    problem = destination_problem(folder)
    if problem:
        from .errors import UserError
        raise UserError(f"{what} {folder}: {problem}; give {flag} a folder you can write to")


def logged(log, path):
    """`log` that also appends each message, with the time, to the text file `path` (a command's own log
    beside its outputs: build.log, sim.log, sweep.log); `path` may be a function giving the file at each call
    (a build's log follows its staging folder into the build folder)."""
    def out(*args):
        log(*args)
        text = " ".join(map(str, args)).strip("\n")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            with open(path() if callable(path) else path, "a") as f:
                f.write("".join(f"{stamp}  {line}\n" for line in text.split("\n")))
        except FileNotFoundError:  # its folder was removed (a refused staging folder): the terminal has it
            pass
    return out
