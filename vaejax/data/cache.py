"""The .npz cache of loaded datasets: one uncompressed .npz per resolved source under
$VAEJAX_CACHE (default ~/.cache/vaejax), named after the dataset and keyed by a hash of the
source's files and their stats, written atomically (temp file, fsync, os.replace) so that a
killed writer never leaves a partial entry, and read back in well under a second; an
unreadable entry is ignored and rebuilt from its source.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from vaejax.data.sources import _Source

__all__ = ["CACHE_ENV_VAR", "cache_dir"]

CACHE_ENV_VAR = "VAEJAX_CACHE"
_CACHE_FORMAT = 1          # bump when the arrays a source yields change meaning


def cache_dir() -> pathlib.Path:
    """$VAEJAX_CACHE, else ~/.cache/vaejax."""
    return pathlib.Path(os.environ.get(CACHE_ENV_VAR) or "~/.cache/vaejax").expanduser()


def _cache_file(name: str, source: _Source) -> pathlib.Path:
    """`<name>-<source kind>-<hash>.npz`; the hash covers the resolved files and their stats.

    A TFDS entry is keyed by the TFDS name alone (not its data dir), so an .npz made by
    `vaejax data fetch` on a machine with internet serves an offline one once copied over.
    """
    if source.kind == "tfds":
        key = [_CACHE_FORMAT, source.tfds_name]
    else:
        key = [_CACHE_FORMAT, source.location]
        for role, path in sorted(source.files.items()):
            stat = path.stat()
            key.append([role, str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12]
    stem = name if not name.startswith("idx:") else "idx-" + pathlib.Path(source.location).name
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
    return cache_dir() / f"{stem}-{source.kind}-{digest}.npz"


def _read_cache(path: pathlib.Path, log: Callable) -> tuple[dict, str] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        origin = str(arrays.pop("source"))
        arrays.setdefault("train_labels", None)
        arrays.setdefault("test_labels", None)
        return arrays, origin
    except Exception as e:  # noqa: BLE001  a bad cache is rebuilt from the source, never trusted
        log(f"data: ignoring unreadable cache {path} ({e})")
        return None


_STALE_TEMP_S = 600.0       # a temp file this old was left by a killed writer


def _write_cache(path: pathlib.Path, arrays: dict, origin: str) -> None:
    """Writes atomically: a temp file in the same folder, fsynced, then os.replace.

    A kill mid-write leaves at most a `.<stem>.*.tmp` file, never a partial .npz; such leftovers
    are removed by the next write of the same entry once they are _STALE_TEMP_S old.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.stem}.*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > _STALE_TEMP_S:
                stale.unlink()
    payload = {k: v for k, v in arrays.items() if v is not None}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, source=np.array(origin), **payload)  # uncompressed: np.load is fast
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)                  # mkstemp makes 0600; a cache is not a secret
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
