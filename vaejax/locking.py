"""One writer per directory: a workdir, or a sweep group, is owned by one process at a time.

    with locking.hold(workdir, "vaejax train"):
        ...  # train, evaluate, draw

The lock is an `fcntl.flock` on `<directory>/.lock`, which the kernel releases when the
holder's process ends in any way (kill -9 included), so a crashed run never leaves a
directory locked. The file records the holder (host, pid, command, since when) for the
error that a second writer gets. (flock works on local filesystems; on a network filesystem
it needs support there, e.g. NFSv4 or Lustre mounted with `-o flock`. The file stays behind,
unlocked, when the holder ends.)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
import socket
import sys
import time

LOCK_FILE = ".lock"


class DirectoryLockedError(RuntimeError):
    """Another live process holds the lock of the directory."""


def holder(directory) -> dict | None:
    """What the lock file of `directory` says about its (last) holder, or None."""
    try:
        return json.loads((pathlib.Path(directory) / LOCK_FILE).read_text() or "null")
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def hold(directory, what: str):
    """Holds the lock of `directory` (which must exist) for the `with` block; raises
    `DirectoryLockedError` naming the holder's host and pid if another process holds it."""
    path = pathlib.Path(directory) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = holder(directory) or {}
            raise DirectoryLockedError(
                f"{directory} is in use by {other.get('what', 'another process')} (pid "
                f"{other.get('pid', '?')} on host {other.get('host', '?')}, since "
                f"{other.get('since', '?')}): one process writes a directory at a time. Wait "
                "for it to end or stop it (its lock is released when it ends, even by kill -9)."
            ) from None
        record = {"what": what, "host": socket.gethostname(), "pid": os.getpid(),
                  "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": sys.argv}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode() + b"\n", 0)
        except OSError:  # a full disk: the lock holds without its note; the run's own
            pass         # first write then reports the full disk, naming its file
        yield record
    finally:
        os.close(fd)  # releases the lock
