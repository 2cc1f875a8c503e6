"""Dataset names -> read-only uint8 host arrays: the named datasets' specs, the IDX and .amat
readers, the local, system-folder and TFDS sources, and `load`, `image_shape`, `fetch`,
`describe` and `split_validation` on top of them (the .npz cache they use is `cache`).

Where a name comes from, in order (the first that has the files wins, and is logged):
  1. the `data_dir` argument (the folder itself, or its subfolder named after the dataset);
  2. the dataset's own environment variable (`DATASET_ENV_VARS`, e.g. VAEJAX_MNIST_DIR);
  3. $VAEJAX_DATA_DIR (its subfolder named after the dataset, then the folder itself);
  4. known system folders (`SYSTEM_DIRS`; Debian's `dataset-fashion-mnist` package);
  5. TensorFlow Datasets (imported only here), honouring $TFDS_DATA_DIR; it downloads
     only when the dataset is not prepared there and the download host answers.
Arrays are then kept as .npz under $VAEJAX_CACHE (default ~/.cache/vaejax), keyed by the
source that would be used, so a second load reads the cache (well under a second).
"""
from __future__ import annotations

import dataclasses
import gzip
import os
import pathlib
import socket
import threading
import time
import zlib
from collections.abc import Callable

import numpy as np

from vaejax.data.cache import _cache_file, _read_cache, _Source, _write_cache, cache_dir

__all__ = [
    "CorruptDataError",
    "DATA_DIR_ENV_VAR",
    "DATASET_ENV_VARS",
    "Dataset",
    "DatasetNotFoundError",
    "NAMES",
    "SYSTEM_DIRS",
    "describe",
    "fetch",
    "image_shape",
    "load",
    "read_amat",
    "read_idx",
    "split_validation",
]


class DatasetNotFoundError(RuntimeError):
    """No source holds the dataset (no local copy, and TFDS cannot provide it)."""


class CorruptDataError(ValueError):
    """A data file is malformed, truncated or inconsistent; the message names the file."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset as read-only host arrays. Images are (N, H, W, C) uint8; labels (N,) int32;
    factors (N, F) int32, the ground-truth factor indices of a dataset that has them
    (`vaejax.data.dsprites`), else None."""
    name: str
    source: str                      # "idx:/p", "system:/p", "amat:/p", "tfds:mnist", "cache:..."
    train_images: np.ndarray
    train_labels: np.ndarray | None  # None for binarized_mnist
    test_images: np.ndarray
    test_labels: np.ndarray | None
    cache_path: str | None           # the .npz this was read from or written to; None if not cached
    train_factors: np.ndarray | None = None
    test_factors: np.ndarray | None = None

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.train_images.shape[1:])


# --------------------------------------------------------------------------------------------
# The named datasets.

@dataclasses.dataclass(frozen=True)
class _Spec:
    file_format: str | None          # "idx", "amat", or None (TFDS only)
    tfds_name: str
    tfds_train_splits: tuple[str, ...]
    image_shape: tuple[int, int, int]
    num_classes: int | None
    num_train: int                   # enforced for local files (TFDS sizes are TFDS's business)
    num_test: int
    download_host: str               # probed before letting TFDS download
    folder_names: tuple[str, ...]    # subfolders of data_dir / VAEJAX_DATA_DIR that hold it
    system_package: str = ""         # the Debian package that installs it in SYSTEM_DIRS


_SPECS = {
    "mnist": _Spec("idx", "mnist", ("train",), (28, 28, 1), 10, 60_000, 10_000,
                   "storage.googleapis.com", ("mnist",)),
    "fashion_mnist": _Spec("idx", "fashion_mnist", ("train",), (28, 28, 1), 10, 60_000, 10_000,
                           "fashion-mnist.s3-website.eu-central-1.amazonaws.com",
                           ("fashion_mnist", "fashion-mnist"), "dataset-fashion-mnist"),
    # Train is Larochelle's train (50000) then valid (10000): the last 10000 are his valid set.
    "binarized_mnist": _Spec("amat", "binarized_mnist", ("train", "validation"), (28, 28, 1), None,
                             60_000, 10_000, "www.cs.toronto.edu",
                             ("binarized_mnist", "binarized-mnist")),
    "cifar10": _Spec(None, "cifar10", ("train",), (32, 32, 3), 10, 50_000, 10_000,
                     "www.cs.toronto.edu", ("cifar10",)),
}
NAMES = tuple(_SPECS)

# Per-dataset folder variables, checked after `data_dir` and before VAEJAX_DATA_DIR.
DATASET_ENV_VARS = {
    "mnist": "VAEJAX_MNIST_DIR",
    "fashion_mnist": "VAEJAX_FASHION_MNIST_DIR",
    "binarized_mnist": "VAEJAX_BINARIZED_MNIST_DIR",
}
DATA_DIR_ENV_VAR = "VAEJAX_DATA_DIR"

# Folders that system packages install (Debian: `apt-get install dataset-fashion-mnist`).
SYSTEM_DIRS = {
    "mnist": ("/usr/share/datasets/mnist",),
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist",),
}

_PROBE_TIMEOUT_S = 3.0


# --------------------------------------------------------------------------------------------
# File readers.

def _read_bytes(path: pathlib.Path) -> bytes:
    """The file's bytes, gunzipped if it starts with the gzip magic (whatever its name)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise CorruptDataError(f"{path}: cannot read ({e})") from e
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise CorruptDataError(f"{path}: truncated or corrupt gzip data ({e})") from e
    return raw


_IDX_MAGIC = {2051: 3, 2049: 1}    # unsigned-byte images (n, rows, cols) and labels (n,)


def read_idx(path, *, expect: str | None = None) -> np.ndarray:
    """Reads one IDX file (raw or gzip) into a read-only uint8 array with the header's shape.

    Accepts unsigned-byte IDX files: magic 2051 (n x rows x cols images) and 2049 (n labels);
    `expect` ("images" or "labels") also requires the matching magic. Raises CorruptDataError,
    naming the file, on a bad magic number, a zero dimension, or a size that differs from the
    header's (truncated file or trailing bytes).
    """
    path = pathlib.Path(path)
    raw = _read_bytes(path)
    shape, header = _parse_idx_header(path, raw, expect)
    expected = header + int(np.prod(shape))
    if len(raw) < expected:
        raise CorruptDataError(
            f"{path}: truncated: header {shape} needs {expected} bytes, file has {len(raw)}")
    if len(raw) > expected:
        raise CorruptDataError(
            f"{path}: {len(raw) - expected} bytes after the data that header {shape} describes")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _parse_idx_header(path: pathlib.Path, raw: bytes, expect: str | None):
    """(shape, header size in bytes) from the first bytes of an IDX file; see `read_idx`."""
    if len(raw) < 4:
        raise CorruptDataError(f"{path}: truncated IDX file ({len(raw)} bytes, no header)")
    magic = int.from_bytes(raw[:4], "big")
    wanted = {"images": 2051, "labels": 2049}.get(expect)
    if magic not in _IDX_MAGIC or (wanted is not None and magic != wanted):
        hint = f"{wanted}" if wanted is not None else "2051 (images) or 2049 (labels)"
        raise CorruptDataError(f"{path}: bad IDX magic number {magic} (expected {hint})")
    ndim = _IDX_MAGIC[magic]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CorruptDataError(f"{path}: truncated IDX header ({len(raw)} of {header} bytes)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if 0 in shape:
        raise CorruptDataError(f"{path}: IDX header has a zero dimension {shape}")
    return shape, header


def _read_idx_shape(path: pathlib.Path, expect: str | None = None) -> tuple[int, ...]:
    """The shape an IDX file's header declares, reading (and gunzipping) only its first bytes."""
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
            f.seek(0)
            head = (gzip.GzipFile(fileobj=f) if gzipped else f).read(4 + 4 * 3)
    except (EOFError, OSError, zlib.error) as e:
        raise CorruptDataError(f"{path}: cannot read the IDX header ({e})") from e
    return _parse_idx_header(path, head, expect)[0]


_AMAT_ROW_BYTES = 784 * 2          # 784 digits, each followed by a space or, last, a newline


def read_amat(path, *, num_rows: int | None = None) -> np.ndarray:
    """Reads a binarized-MNIST .amat file (raw or gzip): (rows, 28, 28, 1) uint8 in {0, 255}.

    Each row holds 784 values 0 or 1 separated by whitespace. The common layout (single spaces,
    one newline per row) is parsed at numpy speed; any other whitespace takes a slower path.
    Raises CorruptDataError naming the file on a value other than 0/1, a row without 784 values,
    or a row count other than `num_rows`.
    """
    path = pathlib.Path(path)
    raw = _read_bytes(path)
    bits = None
    if raw and len(raw) % _AMAT_ROW_BYTES == 0:
        rows = np.frombuffer(raw, np.uint8).reshape(-1, _AMAT_ROW_BYTES)
        digits, separators = rows[:, 0::2], rows[:, 1::2]
        if (np.all(separators[:, :-1] == ord(" ")) and np.all(separators[:, -1] == ord("\n"))
                and np.all((digits == ord("0")) | (digits == ord("1")))):
            bits = digits - np.uint8(ord("0"))
    if bits is None:
        bits = _read_amat_slow(path, raw)
    if num_rows is not None and bits.shape[0] != num_rows:
        raise CorruptDataError(f"{path}: {bits.shape[0]} rows, expected {num_rows}")
    images = (bits * np.uint8(255)).reshape(-1, 28, 28, 1)
    images.flags.writeable = False
    return images


def _read_amat_slow(path: pathlib.Path, raw: bytes) -> np.ndarray:
    rows = []
    for i, line in enumerate(raw.splitlines()):
        row = b"".join(line.split())
        if not row:
            continue
        if len(row) != 784 or row.strip(b"01"):
            raise CorruptDataError(
                f"{path}: line {i + 1} is not 784 whitespace-separated 0/1 values")
        rows.append(row)
    if not rows:
        raise CorruptDataError(f"{path}: no rows")
    return np.frombuffer(b"".join(rows), np.uint8).reshape(-1, 784) - np.uint8(ord("0"))


# --------------------------------------------------------------------------------------------
# Sources: resolve (cheap: checks files exist), then read.

_IDX_ROLES = {  # role -> (split names, file kind, idx rank)
    "train_images": (("train",), "images", 3),
    "train_labels": (("train",), "labels", 1),
    "test_images": (("t10k", "test"), "images", 3),
    "test_labels": (("t10k", "test"), "labels", 1),
}


def _find_idx_files(folder: pathlib.Path, prefix: str = "") -> dict[str, pathlib.Path]:
    """The IDX files in `folder` by role, e.g. {"train_images": .../train-images-idx3-ubyte.gz}.

    Both name styles (`train-images-idx3-ubyte`, `train-images.idx3-ubyte`), raw or `.gz`, with
    `t10k-` or `test-` for the test split. The raw file wins over `.gz` when both exist.
    """
    found = {}
    for role, (splits, kind, rank) in _IDX_ROLES.items():
        for split in splits:
            for sep in ("-", "."):
                for ext in ("", ".gz"):
                    path = folder / f"{prefix}{split}-{kind}{sep}idx{rank}-ubyte{ext}"
                    if role not in found and path.is_file():
                        found[role] = path
    return found


def _find_amat_files(folder: pathlib.Path) -> dict[str, pathlib.Path]:
    found = {}
    for split in ("train", "valid", "test"):
        for ext in ("", ".gz"):
            path = folder / f"binarized_mnist_{split}.amat{ext}"
            if split not in found and path.is_file():
                found[split] = path
    return found


def _local_source(spec: _Spec, folder: pathlib.Path, kind: str, tried: list[str], label: str):
    """The source in `folder` if it holds the dataset's files; otherwise notes why in `tried`."""
    if not folder.is_dir():
        tried.append(f"{label} {folder}: no such folder")
        return None
    if spec.file_format == "idx":
        files, needed = _find_idx_files(folder), tuple(_IDX_ROLES)
    else:
        files, needed = _find_amat_files(folder), ("train", "valid", "test")
    if len(files) == len(needed):
        return _Source(kind, str(folder.resolve()), files)
    if files:  # a partial copy is a mistake to report, not a reason to read something else
        missing = ", ".join(sorted(set(needed) - set(files)))
        raise DatasetNotFoundError(
            f"{folder} holds only part of the dataset (missing: {missing}); "
            f"expected files: {_expected_files(spec)}")
    tried.append(f"{label} {folder}: no {_expected_files(spec)}")
    return None


def _expected_files(spec: _Spec) -> str:
    if spec.file_format == "amat":
        return "binarized_mnist_{train,valid,test}.amat[.gz]"
    return "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]"


def _resolve(name: str, spec: _Spec, data_dir, tried: list[str]) -> _Source:
    """The first local source that holds `name` (see the module docstring), else TFDS.

    Cheap: only checks which files exist. Each folder that was looked at is noted in `tried`.
    """
    candidates = []                  # (label, folder or None when not configured), in order
    if spec.file_format is not None:
        env_var = DATASET_ENV_VARS.get(name)
        configured = [("data_dir argument", data_dir)]
        configured += [(f"${env_var}", os.environ.get(env_var))] if env_var else []
        configured += [(f"${DATA_DIR_ENV_VAR}", os.environ.get(DATA_DIR_ENV_VAR))]
        for label, value in configured:
            if not value:
                candidates.append((label, None))
                continue
            base = pathlib.Path(value).expanduser()
            if label != f"${env_var}":   # shared folders may hold one subfolder per dataset
                candidates += [(label, base / sub) for sub in spec.folder_names
                               if (base / sub).is_dir()]
            candidates.append((label, base))
        candidates += [("system folder", pathlib.Path(d)) for d in SYSTEM_DIRS.get(name, ())]
    for label, folder in candidates:
        if folder is None:
            tried.append(f"{label}: not set")
            continue
        kind = "system" if label == "system folder" else spec.file_format
        source = _local_source(spec, folder, kind, tried, label)
        if source is not None:
            return source
    tfds_dir = os.environ.get("TFDS_DATA_DIR") or os.path.join("~", "tensorflow_datasets")
    tfds_dir = str(pathlib.Path(tfds_dir).expanduser().resolve())
    return _Source("tfds", tfds_dir, tfds_name=spec.tfds_name)


def _resolve_idx_name(name: str) -> _Source:
    """`idx:<folder>` or `idx:<folder>/<prefix>` (e.g. idx:~/emnist/emnist-digits)."""
    target = pathlib.Path(name[len("idx:"):]).expanduser()
    if target.is_dir():
        folder, prefixes = target, ("",)
    elif target.parent.is_dir() and target.name:
        folder = target.parent
        prefixes = (target.name,) if target.name.endswith("-") else (target.name + "-", target.name)
    else:
        raise DatasetNotFoundError(f"{name}: {target} is not a folder")
    for prefix in prefixes:
        files = _find_idx_files(folder, prefix)
        if len(files) == len(_IDX_ROLES):
            location = (folder / prefix) if prefix else folder
            return _Source("idx", str(location.resolve()), files)
        if files:
            missing = ", ".join(sorted(set(_IDX_ROLES) - set(files)))
            raise DatasetNotFoundError(f"{name}: {folder} holds only part of an IDX dataset "
                                       f"(missing: {missing})")
    others = sorted(p.name for p in folder.glob("*train-images[-.]idx3-ubyte*"))
    hint = f"; prefixed sets here: {others} (use idx:{folder}/<prefix>)" if others else ""
    raise DatasetNotFoundError(
        f"{name}: no {_expected_files(_SPECS['mnist'])} in {folder}{hint}")


# --------------------------------------------------------------------------------------------
# Reading and checking a resolved source.

def _check(name: str, arrays: dict, *, image_shape=None, num_classes=None, sizes=None,
           files: dict | None = None) -> dict:
    """Validates images/labels; `files` names the culprit in the message."""
    files = files or {}

    def where(*roles):
        named = list(dict.fromkeys(str(files[r]) for r in roles if r in files))
        return " and ".join(named) if named else name

    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays.get(f"{split}_labels")
        if images.ndim == 3:
            images = images[..., None]
        if images.dtype != np.uint8 or images.ndim != 4:
            raise CorruptDataError(f"{where(split + '_images')}: images of dtype {images.dtype} "
                                   f"and shape {images.shape}, expected (N, H, W, C) uint8")
        if image_shape is not None and images.shape[1:] != tuple(image_shape):
            raise CorruptDataError(f"{where(split + '_images')}: images are {images.shape[1:]}, "
                                   f"expected {tuple(image_shape)}")
        if sizes is not None and images.shape[0] != sizes[split]:
            raise CorruptDataError(f"{where(split + '_images')}: {images.shape[0]} {split} images, "
                                   f"expected {sizes[split]}")
        if labels is not None:
            if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
                raise CorruptDataError(
                    f"{where(split + '_images', split + '_labels')}: {labels.shape[0]} labels "
                    f"for {images.shape[0]} images")
            labels = labels.astype(np.int32)
            low, high = (labels.min(), labels.max()) if labels.size else (0, 0)
            if num_classes is not None and (low < 0 or high >= num_classes):
                raise CorruptDataError(f"{where(split + '_labels')}: label values {low}..{high}, "
                                       f"expected 0..{num_classes - 1}")
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise CorruptDataError(f"{where('train_images', 'test_images')}: train images are "
                               f"{arrays['train_images'].shape[1:]} but test images are "
                               f"{arrays['test_images'].shape[1:]}")
    return arrays


def _read_local(name: str, spec: _Spec | None, source: _Source) -> dict:
    files = source.files
    if spec is not None and spec.file_format == "amat":
        train = np.concatenate([read_amat(files["train"], num_rows=50_000),
                                read_amat(files["valid"], num_rows=10_000)])
        arrays = {"train_images": train, "train_labels": None,
                  "test_images": read_amat(files["test"], num_rows=10_000), "test_labels": None}
        return _check(name, arrays, image_shape=spec.image_shape, files=files)
    arrays = {role: read_idx(path, expect=_IDX_ROLES[role][1]) for role, path in files.items()}
    if spec is None:
        return _check(name, arrays, files=files)
    return _check(name, arrays, image_shape=spec.image_shape, num_classes=spec.num_classes,
                  sizes={"train": spec.num_train, "test": spec.num_test}, files=files)


def _cache_expectation(name: str, spec: _Spec | None, source: _Source) -> tuple[dict, str]:
    """What a cache entry of `source` must hold, for `cache._read_cache`: each array the source
    yields -> (dtype, shape), a None dimension being one the source does not fix, and where the
    counts come from. Images are (N, H, W, C) uint8, labels (N,) int32 (none for binarized_mnist).
    IDX: count and dims from each file's header (read without loading the file); .amat: the
    dataset's fixed sizes; TFDS: the dataset's image dims only (its sizes are TFDS's business).
    """
    if source.kind != "tfds" and (spec is None or spec.file_format == "idx"):
        shapes = {role: _read_idx_shape(path, _IDX_ROLES[role][1])
                  for role, path in source.files.items()}
        expected = {role: (np.dtype(np.uint8), (*shape, 1)) if len(shape) == 3
                    else (np.dtype(np.int32), shape) for role, shape in shapes.items()}
        return expected, "the IDX header"
    local = source.kind != "tfds"
    expected = {}
    for split, size in (("train", spec.num_train), ("test", spec.num_test)):
        size = size if local else None
        expected[f"{split}_images"] = (np.dtype(np.uint8), (size, *spec.image_shape))
        if spec.num_classes is not None:
            expected[f"{split}_labels"] = (np.dtype(np.int32), (size,))
    return expected, f"{name}'s known size"


def _host_reachable(host: str, port: int = 443, timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to host:port opens within `timeout` seconds (DNS included)."""
    result = []

    def probe():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


class _TfdsUnavailable(Exception):
    pass


def _read_tfds(name: str, spec: _Spec, source: _Source, log: Callable) -> dict:
    """Arrays from TFDS: the copy prepared in source.location, else a download if online.

    Whether the copy is prepared is checked without TensorFlow, and the download host is probed
    for at most _PROBE_TIMEOUT_S seconds, so an offline machine fails fast instead of letting
    TFDS retry for minutes.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise _TfdsUnavailable(
            f"tensorflow_datasets is not installed ({e}); pip install 'vaejax[tfds]'") from e
    builder = tfds.builder(spec.tfds_name, data_dir=source.location)
    prepared = builder.is_prepared()
    if not prepared and not _host_reachable(spec.download_host):
        raise _TfdsUnavailable(
            f"not prepared in the TFDS data dir {source.location} ($TFDS_DATA_DIR), and the "
            f"download host {spec.download_host} did not answer within {_PROBE_TIMEOUT_S:g} s "
            "(offline?)")
    _hide_accelerators_from_tensorflow()     # before anything starts TensorFlow's runtime
    if not prepared:
        log(f"data: downloading {name} with TFDS into {source.location}")
        builder.download_and_prepare()

    def split_arrays(split):
        ds = builder.as_dataset(split=split, batch_size=10_000, shuffle_files=False)
        batches = list(tfds.as_numpy(ds))
        images = np.concatenate([b["image"] for b in batches])
        labels = np.concatenate([b["label"] for b in batches]) if "label" in batches[0] else None
        return images, labels

    parts = [split_arrays(split) for split in spec.tfds_train_splits]
    test_images, test_labels = split_arrays("test")
    train_labels = None if parts[0][1] is None else np.concatenate([p[1] for p in parts])
    arrays = {"train_images": np.concatenate([p[0] for p in parts]), "train_labels": train_labels,
              "test_images": test_images, "test_labels": test_labels}
    if spec.file_format == "amat":  # TFDS stores binarized_mnist as 0/1; we store 0/255
        for split in ("train", "test"):
            images = arrays[f"{split}_images"]
            if images.max(initial=0) > 1:
                raise CorruptDataError(f"tfds:{spec.tfds_name}: {split} pixels above 1 in a "
                                       "binarized dataset")
            arrays[f"{split}_images"] = images * np.uint8(255)
    return _check(name, arrays, image_shape=spec.image_shape, num_classes=spec.num_classes)


def _hide_accelerators_from_tensorflow():
    """TensorFlow only reads files here; leave the GPUs and TPUs to JAX."""
    try:
        import tensorflow as tf
        tf.config.set_visible_devices([], "GPU")
        tf.config.set_visible_devices([], "TPU")
    except Exception:  # noqa: BLE001  (already initialized, or no such device type)
        pass


# --------------------------------------------------------------------------------------------
# Public loading API.

def _spec_for(name: str) -> _Spec | None:
    if name.startswith("idx:"):
        return None
    key = name.lower().replace("-", "_")
    if key not in _SPECS:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {NAMES} or 'idx:<folder>'.")
    return _SPECS[key]


def _refuse_data_dir(name: str, data_dir) -> None:
    """`data_dir` names a folder of the dataset's files: refused for cifar10 (TFDS only) and
    `idx:<folder>` (which names its folder itself)."""
    spec = _spec_for(name)
    if data_dir and (spec is None or spec.file_format is None):
        raise ValueError(f"data_dir={os.fspath(data_dir)!r} does nothing for {name!r}, which "
                         + ("names its folder itself" if spec is None else
                            "comes from TensorFlow Datasets only (set $TFDS_DATA_DIR)") + ".")


def _not_found_message(name: str, spec: _Spec, tried: list[str]) -> str:
    lines = [f"dataset {name!r} not found. Sources tried, in order:"]
    lines += [f"  - {t}" for t in tried]
    lines.append("To provide it:")
    if spec.file_format is not None:
        env = DATASET_ENV_VARS.get(name)
        env_text = f"${env} or ${DATA_DIR_ENV_VAR}" if env else f"${DATA_DIR_ENV_VAR}"
        lines.append(f"  - put {_expected_files(spec)} in a folder and pass data_dir=<folder> "
                     f"or set {env_text};")
    if spec.system_package:
        lines.append(f"  - or install the Debian package: apt-get install {spec.system_package};")
    either = "or " if len(lines) > len(tried) + 2 else ""
    lines.append(f"  - {either}pip install 'vaejax[tfds]' and run `vaejax data fetch {name}` on a "
                 f"machine with internet (then copy its TFDS data dir, or the .npz from "
                 f"{cache_dir()}).")
    return "\n".join(lines)


def load(name: str, *, data_dir: str | None = None, log: Callable = print) -> Dataset:
    """The dataset `name` as read-only uint8 host arrays, from the first source that has it.

    `name` is one of NAMES or `idx:<folder>` (also `idx:<folder>/<file prefix>`). The source is
    resolved first (cheap), then its .npz cache is read if present and it holds what the source
    yields (see `_cache_expectation`); otherwise the source is read, checked and cached, and a
    wrong cache entry is logged (naming the file) and overwritten. Logs `data: <name> from
    <source>`. Raises DatasetNotFoundError (naming the sources tried and how to provide the
    data) within seconds when offline, and CorruptDataError (naming the file) on a malformed
    file.
    """
    _refuse_data_dir(name, data_dir)
    spec = _spec_for(name)
    if spec is not None:
        name = name.lower().replace("-", "_")
    tried: list[str] = []
    if spec is None:
        source = _resolve_idx_name(name)
    else:
        source = _resolve(name, spec, os.fspath(data_dir) if data_dir else None, tried)

    cache_path = _cache_file(name, source)
    cached = _read_cache(cache_path, log, *_cache_expectation(name, spec, source))
    if cached is not None:
        arrays, origin = cached
        try:                         # the values too: labels outside the classes are wrong
            arrays = _check(name, arrays, image_shape=spec.image_shape if spec else None,
                            num_classes=spec.num_classes if spec else None,
                            files=dict.fromkeys(arrays, cache_path))
        except CorruptDataError as e:
            log(f"data: cache {e}; rebuilding it")
        else:
            return _dataset(name, f"cache:{cache_path} (from {origin})", arrays,
                            str(cache_path), log)

    if source.kind == "tfds":
        try:
            arrays = _read_tfds(name, spec, source, log)
        except _TfdsUnavailable as e:
            tried.append(f"TFDS {spec.tfds_name!r}: {e}")
            raise DatasetNotFoundError(_not_found_message(name, spec, tried)) from None
    else:
        arrays = _read_local(name, spec, source)
    dataset = _dataset(name, str(source), arrays, str(cache_path), log)
    try:
        _write_cache(cache_path, arrays, str(source))
        log(f"data: cached {name} at {cache_path}")
    except OSError as e:
        log(f"data: could not write cache {cache_path} ({e}); continuing without it")
        dataset = dataclasses.replace(dataset, cache_path=None)
    return dataset


def _dataset(name: str, source: str, arrays: dict, cache_path: str | None,
             log: Callable) -> Dataset:
    for value in arrays.values():
        if value is not None:
            value.flags.writeable = False
    log(f"data: {name} from {source}")
    return Dataset(name=name, source=source, cache_path=cache_path, **arrays)


def image_shape(name: str, *, data_dir: str | None = None) -> tuple[int, ...]:
    """(H, W, C) of dataset `name`: known without loading for the named datasets."""
    spec = _spec_for(name)
    if spec is not None:
        return tuple(spec.image_shape)
    return tuple(load(name, data_dir=data_dir, log=lambda *_: None).train_images.shape[1:])


def fetch(name: str, *, data_dir: str | None = None, log: Callable = print) -> str:
    """Materializes `name` into the cache (TFDS downloads if needed); returns the .npz path."""
    ds = load(name, data_dir=data_dir, log=log)
    if ds.cache_path is None:
        raise RuntimeError(f"{name} loaded from {ds.source} but could not be cached in "
                           f"{cache_dir()}")
    return ds.cache_path


def describe(name: str, *, data_dir: str | None = None, log: Callable = print) -> dict:
    """A JSON-ready summary: source, cache path, shapes, dtype, class counts, mean pixel."""
    started = time.perf_counter()
    ds = load(name, data_dir=data_dir, log=log)
    seconds = time.perf_counter() - started

    def counts(labels):
        return None if labels is None else np.bincount(labels).tolist()

    return {
        "name": ds.name,
        "source": ds.source,
        "cache_path": ds.cache_path,
        "dtype": str(ds.train_images.dtype),
        "image_shape": list(ds.image_shape),
        "train_shape": list(ds.train_images.shape),
        "test_shape": list(ds.test_images.shape),
        "num_classes": None if ds.train_labels is None else int(ds.train_labels.max()) + 1,
        "train_class_counts": counts(ds.train_labels),
        "test_class_counts": counts(ds.test_labels),
        "train_pixel_mean": float(ds.train_images.mean(dtype=np.float64) / 255.0),
        "load_seconds": round(seconds, 3),
    }


def split_validation(images, labels=None, *, num_validation: int = 10_000):
    """((train_x, train_y), (val_x, val_y)): the LAST `num_validation` examples are validation.

    Labels may be None (then both label entries are None). For binarized_mnist the default
    validation split is exactly Larochelle's valid set.
    """
    n = images.shape[0]
    if not 0 <= num_validation < n:
        raise ValueError(f"num_validation={num_validation} must be in [0, {n}) for {n} examples")
    cut = n - num_validation
    if labels is not None and labels.shape[0] != n:
        raise ValueError(f"{labels.shape[0]} labels for {n} images")
    if labels is None:
        return (images[:cut], None), (images[cut:], None)
    return (images[:cut], labels[:cut]), (images[cut:], labels[cut:])
