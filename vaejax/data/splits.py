"""The train / validation / test images a config asks for, as uint8 arrays on a device."""

from __future__ import annotations

import dataclasses

import jax

from vaejax.data import batching, sources


@dataclasses.dataclass
class Splits:
    train: jax.Array  # (N, H, W, C) uint8 on device
    validation: jax.Array | None
    test: jax.Array
    source: str


def load_splits(config, log=print) -> Splits:
    """The dataset of `config.data`, split and put on the default device as uint8."""
    ds = sources.load(config.data.name, data_dir=config.data.data_dir or None, log=log)
    train_x, validation_x = ds.train_images, None
    if config.data.num_validation > 0:
        (train_x, _), (validation_x, _) = sources.split_validation(
            ds.train_images, ds.train_labels, num_validation=config.data.num_validation)
    if config.data.num_train > 0:
        train_x = train_x[: config.data.num_train]
    return Splits(
        train=batching.to_device(train_x),
        validation=None if validation_x is None else batching.to_device(validation_x),
        test=batching.to_device(ds.test_images),
        source=ds.source,
    )
