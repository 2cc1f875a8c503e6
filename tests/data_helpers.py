"""Files for the vaejax.data tests: IDX folders written independently of the library's reader."""
import gzip
import pathlib

import numpy as np


def quiet(*_):
    pass


def write_idx(path, array, *, magic=None, gz=False, shape=None):
    """An IDX file written independently of the reader (magic, big-endian dims, bytes)."""
    array = np.asarray(array, np.uint8)
    magic = magic if magic is not None else (2051 if array.ndim == 3 else 2049)
    shape = shape if shape is not None else array.shape
    raw = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in shape)
    raw += array.tobytes()
    path = pathlib.Path(path)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def write_idx_folder(folder, arrays, *, gz=False, sep="-", test_name="t10k", prefix=""):
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    paths = {}
    for role, array in arrays.items():
        split, kind = role.split("_")
        split = "train" if split == "train" else test_name
        rank = 3 if kind == "images" else 1
        name = f"{prefix}{split}-{kind}{sep}idx{rank}-ubyte{ext}"
        paths[role] = write_idx(folder / name, array, gz=gz)
    return paths


def small_arrays(seed=0, shape=(7, 5)):
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (12, *shape), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, 12, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (5, *shape), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, 5, dtype=np.uint8),
    }
