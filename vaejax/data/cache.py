"""The .npz cache of loaded datasets: one uncompressed .npz per resolved source under
$VAEJAX_CACHE (default ~/.cache/vaejax), named after the dataset and keyed by a hash of the
source's files and their stats, written atomically (temp file, fsync, os.replace) so that a
killed writer never leaves a partial entry, and read back in well under a second. An entry
that is unreadable, or whose arrays differ from what its source yields (names, dtypes, shapes,
counts), is never trusted: the load logs one line naming the file and rebuilds it from the source.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pathlib
import tempfile
import time
from collections.abc import Callable

import numpy as np

from vaejax.files import umask

__all__ = ["CACHE_ENV_VAR", "cache_dir"]


@dataclasses.dataclass(frozen=True)
class _Source:
    """Where a dataset was resolved from (`vaejax.data.sources` resolves it): what its
    cache entry is keyed by."""

    kind: str                        # "idx" | "system" | "amat" | "tfds"
    location: str                    # a folder, or the TFDS data dir
    files: dict[str, pathlib.Path] = dataclasses.field(default_factory=dict)
    tfds_name: str = ""

    def __str__(self) -> str:
        return f"tfds:{self.tfds_name}" if self.kind == "tfds" else f"{self.kind}:{self.location}"


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


_ROLES = ("train_images", "train_labels", "test_images", "test_labels")


def _read_cache(path: pathlib.Path, log: Callable, expected: dict,
                basis: str) -> tuple[dict, str] | None:
    """The entry's arrays (absent labels as None) and origin; None when there is no entry, or
    when it is unreadable or wrong (see `_problem`), which is logged naming the file so that
    the caller rebuilds it from the source."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as e:  # noqa: BLE001  a bad cache is rebuilt from the source, never trusted
        problem = f"is unreadable ({e})"
    else:
        problem = _problem(arrays, expected, basis)
    if problem is not None:
        log(f"data: cache {path} {problem}; rebuilding it")
        return None
    origin = str(arrays.pop("source"))
    for role in _ROLES:
        arrays.setdefault(role, None)
    return arrays, origin


def _problem(arrays: dict, expected: dict, basis: str) -> str | None:
    """What is wrong with an entry's arrays, or None if nothing is.

    `expected` maps each array the source yields to (dtype, shape), where a None dimension is
    one the source does not fix; `basis` names where the counts come from (e.g. "the IDX
    header"). The entry must hold exactly those arrays plus its "source" string, each of that
    dtype and shape, and each split's labels must be as many as its images.
    """
    missing = sorted({"source", *expected} - set(arrays))
    extra = sorted(set(arrays) - {"source", *expected})
    if missing or extra:
        return f"lacks {', '.join(missing)}" if missing else f"holds unexpected {', '.join(extra)}"
    for role, (dtype, shape) in expected.items():
        array, what = arrays[role], role.replace("_", " ")
        if array.dtype != dtype:
            return f"holds {what} of dtype {array.dtype}, the source yields {np.dtype(dtype)}"
        if array.ndim == len(shape) and shape[0] not in (None, array.shape[0]):
            return f"holds {array.shape[0]} {what}, {basis} says {shape[0]}"
        if array.ndim != len(shape) or any(want not in (None, got)
                                           for got, want in zip(array.shape, shape)):
            wanted = str(tuple("N" if d is None else d for d in shape)).replace("'", "")
            return f"holds {what} of shape {array.shape}, the source yields {wanted}"
    for split in ("train", "test"):
        images, labels = arrays.get(f"{split}_images"), arrays.get(f"{split}_labels")
        if images is not None and labels is not None and len(labels) != len(images):
            return f"holds {len(labels)} {split} labels for {len(images)} {split} images"
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
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; a cache is not a secret
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
