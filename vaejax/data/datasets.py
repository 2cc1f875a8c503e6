"""The dataset protocol, and the registry that `config.data.name` names.

A dataset is a function of its settings (the `config.data` fields its signature names) that
returns a `sources.Dataset`, or a dict with its arrays:

    def my_data(*, dim: int = 8, log=print) -> dict:      # data.name = "my_data:my_data"
        return {"train_images": (N, ...) array, "train_labels": (N,) ints or None,
                "test_images": (M, ...) array, "test_labels": (M,) ints or None}

A dataset with ground-truth factors adds "train_factors" and "test_factors", (N, F) integer
indices: they travel with the examples (`Examples.factors`) for the metrics and figures that
read them, and a model never sees them.

Images are uint8 pixels or floats, of any shape (the same for train and test); `log`, if the
signature names it, gets progress lines. A setting of `config.data` that the chosen dataset
does not read is refused (`registry.refuse_unread`), as for every other registry.

Registered: mnist, fashion_mnist and binarized_mnist (from files: `data_dir`, the dataset's
environment variable, $VAEJAX_DATA_DIR, system folders, then TFDS; see `sources`), cifar10
(TFDS only), `idx:<folder>` for any folder of IDX files, and dsprites and squares, with
ground-truth factors (`vaejax.data.dsprites`). Your own:
`data.name = "module:attribute"`, imported from the experiment file's folder.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping

import numpy as np

from vaejax import registry
from vaejax.data import sources

# Read by the program itself (splits and preprocessing), whichever dataset is chosen.
PROGRAM_SETTINGS = ("name", "preprocessing", "num_validation", "num_train")
IDX_PREFIX = "idx:"


class _Datasets(registry.Registry):
    """The registry, plus `idx:<folder>` names (a folder of IDX files, not an import)."""

    def get(self, name: str, *, search_path: str | None = None) -> Callable:
        if name.startswith(IDX_PREFIX):
            return _idx_folder(name)
        return super().get(name, search_path=search_path)


DATASETS = _Datasets("dataset", "data.name", neutral={"data_dir": ""}, supplied=("log",))


def _from_files_or_tfds(name: str) -> Callable:
    def load(*, data_dir: str = "", log: Callable = print) -> sources.Dataset:
        return sources.load(name, data_dir=data_dir or None, log=log)

    load.__name__ = name
    load.__doc__ = (f"{name} from the first source that has it: data_dir (a folder of its "
                    "files), its environment variable, $VAEJAX_DATA_DIR, system folders, TFDS.")
    return load


for _name in ("mnist", "fashion_mnist", "binarized_mnist"):
    DATASETS.register(_name)(_from_files_or_tfds(_name))


@DATASETS.register("cifar10")
def cifar10(*, log: Callable = print) -> sources.Dataset:
    """CIFAR-10 from TensorFlow Datasets ($TFDS_DATA_DIR), (32, 32, 3) uint8."""
    return sources.load("cifar10", log=log)


def _register_factor_datasets() -> None:
    from vaejax.data import dsprites  # noqa: PLC0415  (jax: imported when datasets are)

    DATASETS.register("dsprites")(dsprites.dsprites_dataset)
    DATASETS.register("squares")(dsprites.squares_dataset)


_register_factor_datasets()


def _idx_folder(name: str) -> Callable:
    def load(*, log: Callable = print) -> sources.Dataset:
        return sources.load(name, log=log)

    load.__name__ = "idx_folder"
    load.__doc__ = f"The IDX files of {name[len(IDX_PREFIX):]} (train/t10k images and labels)."
    return load


def load(data_config: Mapping, *, search_path: str | None = None,
         log: Callable = print) -> sources.Dataset:
    """The dataset `data_config["name"]` names, called with the `data_config` settings it
    reads; a dict it returns is checked and wrapped as a `sources.Dataset`."""
    name = data_config["name"]
    fn = DATASETS.get(name, search_path=search_path)
    reads = DATASETS.settings(name, search_path=search_path)
    settings = {k: v for k, v in dict(data_config).items()
                if k not in PROGRAM_SETTINGS and (reads is None or k in reads)}
    extra = {"log": log} if "log" in inspect.signature(fn).parameters else {}
    value = registry.call_with_fields(fn, settings, what=f"data.name={name!r}", **extra)
    return value if isinstance(value, sources.Dataset) else _as_dataset(name, value)


def _as_dataset(name: str, value) -> sources.Dataset:
    """A user's arrays, checked: images (N, ...) uint8 or float, the same shape for train and
    test; labels None or (N,) integers."""
    if not isinstance(value, Mapping):
        raise ValueError(f"data.name={name!r} returned {type(value).__name__}; a dataset returns a "
                         "vaejax.data.Dataset or a dict with train_images, test_images (and "
                         "train_labels, test_labels).")
    arrays = {}
    for split in ("train", "test"):
        images = value.get(f"{split}_images")
        if images is None:
            raise ValueError(f"data.name={name!r}: no {split}_images in what it returned "
                             f"({sorted(value)})")
        images = np.asarray(images)
        if images.ndim < 2 or not (images.dtype == np.uint8 or
                                   np.issubdtype(images.dtype, np.floating)):
            raise ValueError(f"data.name={name!r}: {split}_images are {images.dtype} of shape "
                             f"{images.shape}; expected (N, ...) uint8 pixels or floats")
        labels = value.get(f"{split}_labels")
        if labels is not None:
            labels = np.asarray(labels)
            if (labels.shape != images.shape[:1] or not np.issubdtype(labels.dtype, np.integer)
                    or (labels.size and labels.min() < 0)):
                raise ValueError(f"data.name={name!r}: {split}_labels are {labels.dtype} of shape "
                                 f"{labels.shape}; expected {images.shape[:1]} integers >= 0")
            labels = labels.astype(np.int32)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
        arrays[f"{split}_factors"] = _factors(name, split, value.get(f"{split}_factors"), images)
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise ValueError(f"data.name={name!r}: train examples are "
                         f"{arrays['train_images'].shape[1:]}, test examples "
                         f"{arrays['test_images'].shape[1:]}")
    for array in arrays.values():
        if array is not None:
            array.flags.writeable = False
    return sources.Dataset(name=name, source=name, cache_path=None, **arrays)


def _factors(name: str, split: str, factors, images):
    """A dataset's ground-truth factor indices, checked: (N, F) integers >= 0, or None."""
    if factors is None:
        return None
    factors = np.asarray(factors)
    if (factors.ndim != 2 or factors.shape[0] != images.shape[0]
            or not np.issubdtype(factors.dtype, np.integer) or (factors.size and factors.min() < 0)):
        raise ValueError(f"data.name={name!r}: {split}_factors are {factors.dtype} of shape "
                         f"{factors.shape}; expected ({images.shape[0]}, F) integers >= 0")
    return factors.astype(np.int32)


def example_shape(data_config, *, search_path: str | None = None) -> tuple[int, ...]:
    """The shape of one example of the dataset `data_config` describes (loads it, quietly)."""
    return load(data_config, search_path=search_path, log=lambda *_: None).image_shape
