"""The train / validation / test examples a config asks for, as arrays on a device."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import numpy as np

from vaejax.data import batching, datasets, grid_lookup, preprocessing, sources


class Examples(NamedTuple):
    """Images and, where the dataset has them, their labels: a pytree, so `jax.tree.map`
    slices it and places it on devices, and jitted code takes it as one argument.

    images: (N, H, W, C) uint8 for the image datasets; a user's dataset may give other shapes
    and floats (`datasets`). labels: (N,) int32, or None (binarized_mnist has none, and
    `Program.model_data` drops them for a model that does not condition on them).
    The number of examples is `num_examples`: `len()` is a tuple's, the number of fields (3),
    and cannot be redefined without breaking `_replace`.
    """

    images: jax.Array
    labels: jax.Array | None = None
    factors: jax.Array | None = None  # (N, F) int32 ground-truth factor indices, or None

    @property
    def num_examples(self) -> int:
        return int(self.images.shape[0])

    def mean_image(self) -> np.ndarray:
        """(H, W, C) float32: the mean image (`intensities`), for a data-dependent init."""
        return _intensities(np.asarray(self.images).mean(axis=0, dtype=np.float64),
                            self.images.dtype)

    def init_images(self, n: int = 500) -> np.ndarray:
        """(min(n, N), H, W, C) float32: the first n images (`intensities`), what a
        data-dependent initialization reads."""
        return _intensities(np.asarray(self.images[:n], np.float64), self.images.dtype)

    def take(self, index) -> "Examples":
        """The examples at `index` (an index array, or a slice) of every field."""
        return jax.tree.map(lambda a: a[index], self)


def _intensities(values: np.ndarray, dtype) -> np.ndarray:
    """float32 `values` of images of `dtype`: / 255 for uint8 pixels, as they are for float data."""
    return (values / 255.0 if dtype == np.uint8 else values).astype(np.float32)


def as_examples(data) -> Examples:
    """`data` as `Examples`: itself, or images (N, H, W, C) without labels."""
    return data if isinstance(data, Examples) else Examples(data)


@dataclasses.dataclass
class Splits:
    train: Examples
    validation: Examples | None
    test: Examples
    source: str
    # Every image of the dataset's factor grid by its factors (the union of the splits), when
    # `eval.disentanglement` asks for it: what the disentanglement metrics score. Never a
    # model's input (`Program.model_data` keeps it as it is).
    grid: grid_lookup.GridLookup | None = None

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.train.images.shape[1:])


def load_splits(config, log=print) -> Splits:
    """The dataset of `config.data` (`datasets.load`), split and put on the default device
    (images as the dataset gives them, labels as int32 where it has them).

    Refuses, before anything is written, data that `config.data.preprocessing` cannot take (it
    is traced on one example) and figures (`eval.figures`) for examples that are not images
    (H, W, C)."""
    search_path = config.get("experiment_dir") or None
    ds = datasets.load(config.data, search_path=search_path, log=log)
    _check_fit(config, ds, search_path)
    train = (ds.train_images, ds.train_labels, ds.train_factors)
    validation = None
    if config.data.num_validation > 0:
        (train_x, train_y), (val_x, val_y) = sources.split_validation(
            ds.train_images, ds.train_labels, num_validation=config.data.num_validation)
        cut = train_x.shape[0]
        factors = ds.train_factors
        train = (train_x, train_y, None if factors is None else factors[:cut])
        validation = (val_x, val_y, None if factors is None else factors[cut:])
    if config.data.num_train > 0:
        train = tuple(None if a is None else a[: config.data.num_train] for a in train)
    grid = None
    if config.eval.get("disentanglement", False):  # refused now, not after training
        # every image of the dataset, whatever part of it trains (data.num_train)
        factors = (ds.train_factors, ds.test_factors)
        grid = grid_lookup.GridLookup(
            batching.to_device(np.concatenate([ds.train_images, ds.test_images])),
            None if any(f is None for f in factors) else np.concatenate(factors))

    def on_device(images, labels, factors):
        labels = None if labels is None else jax.device_put(np.asarray(labels, np.int32))
        factors = None if factors is None else jax.device_put(np.asarray(factors, np.int32))
        return Examples(batching.to_device(images), labels, factors)

    return Splits(
        train=on_device(*train),
        validation=None if validation is None else on_device(*validation),
        test=on_device(ds.test_images, ds.test_labels, ds.test_factors),
        source=ds.source,
        grid=grid,
    )


def _check_fit(config, ds: sources.Dataset, search_path) -> None:
    shape, dtype = ds.image_shape, ds.train_images.dtype
    fn = preprocessing.preprocessing_fn(config.data.preprocessing, search_path=search_path)
    try:
        jax.eval_shape(fn, jax.random.key(0), jax.ShapeDtypeStruct(shape, dtype))
    except TypeError as error:
        raise ValueError(
            f"data.preprocessing={config.data.preprocessing!r} cannot take the {dtype} examples "
            f"of data.name={config.data.name!r} ({error}); data.preprocessing='identity' passes "
            "float data to the model as they are.") from None
    if config.eval.figures and len(shape) != 3:
        raise ValueError(f"eval.figures draws images (H, W, C), but data.name={config.data.name!r} "
                         f"gives examples of shape {shape}: set eval.figures=False.")
