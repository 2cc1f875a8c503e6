"""Files that are never half-written: the umask, and atomic text writes (a temporary file,
fsync, then a rename). A leaf module: records, the data cache and the published records
write through it.
"""

from __future__ import annotations

import os
import pathlib
import tempfile


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
