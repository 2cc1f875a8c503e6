"""Dataset names -> uint8 arrays (IDX, .amat, system folders, TFDS), an .npz cache, and
pure, jittable preprocessing and batching for data that lives on the device.

    ds = load("fashion_mnist")            # logs "data: fashion_mnist from system:/usr/share/..."
    (train_x, _), (val_x, _) = split_validation(ds.train_images, ds.train_labels)
    images = to_device(train_x)           # (N, 28, 28, 1) uint8 on the device
    order = epoch_indices(key, images.shape[0], 128)      # (num_batches, 128) int32
    x = preprocess(key, images[order[0]], kind="dynamic_binarize")  # float32 in {0, 1}

The package re-exports the public names of its modules, one per job:
  - `sources`: the named datasets, file readers, where a name comes from (data_dir, the
    dataset's environment variable, $VAEJAX_DATA_DIR, system folders, then TFDS), `load`;
  - `cache`: the atomic .npz cache under $VAEJAX_CACHE (default ~/.cache/vaejax);
  - `preprocessing`: uint8 -> float32 model inputs, selected by name (`PREPROCESSING`);
  - `batching`: epoch and evaluation batch indices, and `to_device`;
  - `splits`: the train / validation / test examples a config asks for (`load_splits`), as
    `Examples` (images, and labels where the dataset has them).
"""
from vaejax.data.batching import epoch_indices, padded_batch_indices, to_device
from vaejax.data.cache import CACHE_ENV_VAR, cache_dir
from vaejax.data.preprocessing import (
    PREPROCESSING,
    PREPROCESSORS,
    binarization_threshold,
    dequantize,
    dynamic_binarize,
    is_binary,
    preprocess,
    preprocessing_fn,
    threshold,
    to_unit_interval,
)
from vaejax.data.sources import (
    DATA_DIR_ENV_VAR,
    DATASET_ENV_VARS,
    NAMES,
    SYSTEM_DIRS,
    CorruptDataError,
    Dataset,
    DatasetNotFoundError,
    describe,
    fetch,
    image_shape,
    load,
    read_amat,
    read_idx,
    split_validation,
)
from vaejax.data.datasets import DATASETS, example_shape
from vaejax.data.splits import Examples, Splits, as_examples, load_splits

__all__ = [
    "Examples",
    "Splits",
    "as_examples",
    "load_splits",
    "CACHE_ENV_VAR",
    "DATASETS",
    "example_shape",
    "CorruptDataError",
    "DATA_DIR_ENV_VAR",
    "DATASET_ENV_VARS",
    "Dataset",
    "DatasetNotFoundError",
    "NAMES",
    "PREPROCESSING",
    "PREPROCESSORS",
    "SYSTEM_DIRS",
    "binarization_threshold",
    "cache_dir",
    "dequantize",
    "describe",
    "dynamic_binarize",
    "epoch_indices",
    "fetch",
    "image_shape",
    "is_binary",
    "load",
    "padded_batch_indices",
    "preprocess",
    "preprocessing_fn",
    "read_amat",
    "read_idx",
    "split_validation",
    "threshold",
    "to_device",
    "to_unit_interval",
]
