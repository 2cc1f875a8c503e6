"""Files that are never half-written or lost: the umask, atomic text writes (a temporary
file, fsync, then a rename), and moving a directory aside instead of deleting it. A leaf
module: records, the data cache, the published records, `train --overwrite` and a sweep's
re-planned groups go through it.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
import time


def umask() -> int:
    """The process's file-mode creation mask, read without changing it (Linux), else set
    and restored at once."""
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path, text: str) -> None:
    """Writes `text` to `path` via a temporary file and a rename: never a half-written file.
    The file gets the mode an ordinary new file would (0666 less the umask), as orbax's
    checkpoints beside it do, so a team's shared sweep directory stays readable."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp makes 0600
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        pathlib.Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename is None:  # name the file (disk full)
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise


def writer_temporary(path) -> pathlib.Path:
    """The temporary file this process writes `path` through before renaming it into place:
    `.<name>.<pid>.tmp` beside it, so that one left by a killed writer names its writer."""
    path = pathlib.Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def remove_dead_writers_temporaries(folder, name: str = "*") -> list[pathlib.Path]:
    """Deletes the `writer_temporary` files in `folder` (of the file `name`, a glob; any by
    default) whose writer process is gone (killed while writing); returns them. A live
    writer's file is left alone."""
    removed = []
    for tmp in pathlib.Path(folder).glob(f".{name}.*.tmp"):
        pid = tmp.name[:-len(".tmp")].rsplit(".", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def move_aside(path) -> pathlib.Path:
    """Renames the directory `path` to `<name>.replaced-<YYYYmmdd-HHMMSS>` beside it (with
    `-2`, `-3`, ... if that exists: never into, or over, an earlier one); returns the new path."""
    path = pathlib.Path(path)
    stem = f"{path.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"
    aside, n = path.with_name(stem), 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{stem}-{n}")
    shutil.move(str(path), aside)
    return aside
