"""Faults in a readable cache entry: each is made for real on an entry written by `data.load`,
then loaded again; the load must name the cache file, return the source's arrays and leave a
valid entry on disk (issue #14, item 6)."""
import hashlib
import pathlib

import numpy as np
import pytest
from data_helpers import quiet, small_arrays, write_idx_folder

from vaejax import data

# `make test` (--dist loadgroup) runs this module on one worker: its module fixture is built once.
pytestmark = pytest.mark.xdist_group("data_cache_faults")

FIELDS = ("train_images", "train_labels", "test_images", "test_labels")


def _digest(arrays) -> dict:
    """Per array: (shape, dtype, sha256 of its bytes); None for an absent array."""
    def one(a):
        if a is None:
            return None
        a = np.asarray(a)
        return a.shape, str(a.dtype), hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
    return {f: one(arrays[f]) for f in FIELDS}


def _of(ds) -> dict:
    return _digest({f: getattr(ds, f) for f in FIELDS})


def _entry(path: pathlib.Path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _save(path: pathlib.Path, arrays: dict) -> None:
    with open(path, "wb") as f:       # np.savez would append .npz to a str path without it
        np.savez(f, **arrays)


def _only_100_train_images(path):
    arrays = _entry(path)
    arrays["train_images"], arrays["train_labels"] = (arrays["train_images"][:100],
                                                      arrays["train_labels"][:100])
    _save(path, arrays)
    return "100 train images"


def _float32_images(path):
    arrays = _entry(path)
    arrays["train_images"] = arrays["train_images"].astype(np.float32)
    _save(path, arrays)
    return "float32"


def _truncated(path):
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])
    return "unreadable"


def _missing_labels(path):
    arrays = _entry(path)
    del arrays["train_labels"]
    _save(path, arrays)
    return "train_labels"


def _labels_out_of_range(path):
    arrays = _entry(path)
    arrays["test_labels"] = arrays["test_labels"] + 10
    _save(path, arrays)
    return "label values"


FAULTS = [_only_100_train_images, _float32_images, _truncated, _missing_labels,
          _labels_out_of_range]


def _reload_after(fault, name, data_dir, cache, reference):
    """Loads `name` (writing the entry), applies `fault` to the entry, loads again; checks that
    the second load logs the file, returns the reference arrays and leaves a valid entry."""
    first = data.load(name, data_dir=data_dir, log=quiet)
    assert not first.source.startswith("cache:")
    path = pathlib.Path(first.cache_path)
    assert path.parent == cache and path.is_file()
    what = fault(path)

    lines = []
    ds = data.load(name, data_dir=data_dir, log=lines.append)
    warnings = [line for line in lines if str(path) in line and "rebuilding" in line]
    assert len(warnings) == 1, lines
    assert what in warnings[0], warnings[0]
    assert not ds.source.startswith("cache:") and ds.cache_path == str(path)
    assert _of(ds) == reference

    assert _digest({f: _entry(path).get(f) for f in FIELDS}) == reference   # rebuilt on disk
    lines = []
    again = data.load(name, data_dir=data_dir, log=lines.append)
    assert again.source.startswith(f"cache:{path} ") and _of(again) == reference
    assert not any("rebuilding" in line for line in lines), lines


@pytest.fixture(scope="module")
def mnist_reference(mnist_dir, tmp_path_factory):
    """MNIST read from its IDX files into a cache folder of its own: the arrays to expect."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VAEJAX_CACHE", str(tmp_path_factory.mktemp("reference-cache")))
        ds = data.load("mnist", data_dir=mnist_dir, log=quiet)
    assert ds.source.startswith("idx:") and ds.train_images.shape == (60_000, 28, 28, 1)
    return _of(ds)


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.__name__.strip("_"))
def test_a_wrong_mnist_cache_is_named_and_rebuilt(fault, mnist_dir, mnist_reference, tmp_path,
                                                  monkeypatch):
    monkeypatch.setenv("VAEJAX_CACHE", str(tmp_path / "cache"))
    _reload_after(fault, "mnist", mnist_dir, tmp_path / "cache", mnist_reference)


@pytest.mark.parametrize("fault", FAULTS[:-1], ids=lambda f: f.__name__.strip("_"))
def test_a_wrong_idx_cache_is_checked_against_the_idx_headers(fault, tmp_path, monkeypatch):
    """`idx:` folders have no known sizes or classes: counts and dims come from the headers."""
    monkeypatch.setenv("VAEJAX_CACHE", str(tmp_path / "cache"))
    arrays = small_arrays(shape=(7, 5))
    arrays["train_images"] = np.random.default_rng(1).integers(0, 256, (150, 7, 5), np.uint8)
    arrays["train_labels"] = np.random.default_rng(2).integers(0, 10, 150, np.uint8)
    write_idx_folder(tmp_path / "idx", arrays, gz=True)
    reference = _digest({f: (a[..., None] if a.ndim == 3 else a.astype(np.int32))
                         for f, a in arrays.items()})
    _reload_after(fault, f"idx:{tmp_path / 'idx'}", None, tmp_path / "cache", reference)


def test_images_of_the_wrong_size_are_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEJAX_CACHE", str(tmp_path / "cache"))
    arrays = small_arrays(shape=(7, 5))
    write_idx_folder(tmp_path / "idx", arrays)
    name = f"idx:{tmp_path / 'idx'}"
    path = pathlib.Path(data.load(name, log=quiet).cache_path)
    entry = _entry(path)
    entry["train_images"] = entry["train_images"].reshape(12, 5, 7, 1)
    entry["test_images"] = entry["test_images"].reshape(5, 5, 7, 1)
    _save(path, entry)
    lines = []
    ds = data.load(name, log=lines.append)
    assert any(str(path) in line and "(12, 7, 5, 1)" in line for line in lines), lines
    np.testing.assert_array_equal(ds.train_images[..., 0], arrays["train_images"])
    assert _entry(path)["train_images"].shape == (12, 7, 5, 1)


def test_a_wrong_binarized_mnist_cache_is_checked_against_its_known_sizes(
        binarized_mnist_dir, tmp_path, monkeypatch):
    """.amat files have no header: the counts are the dataset's; it has no labels to cache."""
    monkeypatch.setenv("VAEJAX_CACHE", str(tmp_path / "cache"))
    first = data.load("binarized_mnist", data_dir=binarized_mnist_dir, log=quiet)
    reference, path = _of(first), pathlib.Path(first.cache_path)
    for fault, what in ((lambda e: e.update(train_images=e["train_images"][:100]),
                         "holds 100 train images, binarized_mnist's known size says 60000"),
                        (lambda e: e.update(train_labels=np.zeros(60_000, np.int32)),
                         "holds unexpected train_labels")):
        entry = _entry(path)
        fault(entry)
        _save(path, entry)
        lines = []
        ds = data.load("binarized_mnist", data_dir=binarized_mnist_dir, log=lines.append)
        assert f"data: cache {path} {what}; rebuilding it" in lines, lines
        assert _of(ds) == reference
        assert _digest({f: _entry(path).get(f) for f in FIELDS}) == reference


def test_a_tfds_entry_is_checked_for_dims_dtypes_and_matching_labels():
    """TFDS split sizes are TFDS's business: any count, but labels as many as the images."""
    from vaejax.data import cache, sources
    expected, basis = sources._cache_expectation(
        "mnist", sources._SPECS["mnist"], sources._Source("tfds", "/nowhere", tfds_name="mnist"))
    entry = {"source": np.array("tfds:mnist"),
             "train_images": np.zeros((23, 28, 28, 1), np.uint8),
             "train_labels": np.zeros(23, np.int32),
             "test_images": np.zeros((11, 28, 28, 1), np.uint8),
             "test_labels": np.zeros(11, np.int32)}
    assert cache._problem(entry, expected, basis) is None
    assert cache._problem({**entry, "test_labels": np.zeros(10, np.int32)}, expected, basis) == (
        "holds 10 test labels for 11 test images")
    assert cache._problem({**entry, "test_labels": np.zeros(11, np.int64)}, expected, basis) == (
        "holds test labels of dtype int64, the source yields int32")
    assert cache._problem({**entry, "test_images": np.zeros((11, 28, 28), np.uint8)}, expected,
                          basis) == ("holds test images of shape (11, 28, 28), the source yields "
                                     "(N, 28, 28, 1)")
