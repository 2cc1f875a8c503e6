"""Tests for vaejax.data.sources: readers, real data, source order, TFDS (mocked and offline)."""
import gzip
import os
import pathlib
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest
from data_helpers import quiet, small_arrays, write_idx, write_idx_folder

from vaejax import data
from vaejax.data import sources

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
ENV_VARS = ("VAEJAX_DATA_DIR", "VAEJAX_MNIST_DIR", "VAEJAX_FASHION_MNIST_DIR",
            "VAEJAX_BINARIZED_MNIST_DIR")


@pytest.fixture
def no_local_sources(monkeypatch, tmp_path):
    """No env folders, no system folders, an empty TFDS data dir and a private cache."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(sources, "SYSTEM_DIRS", {})
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setenv("VAEJAX_CACHE", str(tmp_path / "cache"))
    return tmp_path


# --------------------------------------------------------------------------------------------
# IDX and .amat readers.

@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("sep,test_name", [("-", "t10k"), (".", "t10k"), ("-", "test")],
                         ids=["dash", "dot", "test-prefix"])
def test_idx_folder_round_trips(tmp_path, monkeypatch, gz, sep, test_name):
    monkeypatch.setenv("VAEJAX_CACHE", str(tmp_path / "cache"))
    arrays = small_arrays()
    paths = write_idx_folder(tmp_path / "idx", arrays, gz=gz, sep=sep, test_name=test_name)
    np.testing.assert_array_equal(data.read_idx(paths["train_images"]), arrays["train_images"])
    np.testing.assert_array_equal(data.read_idx(paths["test_labels"]), arrays["test_labels"])

    ds = data.load(f"idx:{tmp_path / 'idx'}", log=quiet)
    assert ds.source == f"idx:{(tmp_path / 'idx').resolve()}"
    for role in ("train_images", "test_images"):
        assert getattr(ds, role).dtype == np.uint8
        np.testing.assert_array_equal(getattr(ds, role), arrays[role][..., None])
    for role in ("train_labels", "test_labels"):
        assert getattr(ds, role).dtype == np.int32
        np.testing.assert_array_equal(getattr(ds, role), arrays[role])


def test_idx_prefix_selects_one_set_of_several(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEJAX_CACHE", str(tmp_path / "cache"))
    digits, letters = small_arrays(1), small_arrays(2, shape=(4, 4))
    write_idx_folder(tmp_path, digits, gz=True, test_name="test", prefix="emnist-digits-")
    write_idx_folder(tmp_path, letters, gz=True, test_name="test", prefix="emnist-letters-")
    ds = data.load(f"idx:{tmp_path}/emnist-letters", log=quiet)
    np.testing.assert_array_equal(ds.test_images[..., 0], letters["test_images"])
    with pytest.raises(data.DatasetNotFoundError, match="emnist-digits-train-images"):
        data.load(f"idx:{tmp_path}", log=quiet)   # ambiguous: the error lists the prefixed sets


def _corrupt_cases():
    good = small_arrays()

    def bad_magic(folder):
        return write_idx(folder / "train-images-idx3-ubyte", good["train_images"], magic=2049)

    def unknown_magic(folder):
        return write_idx(folder / "t10k-labels-idx1-ubyte", good["test_labels"], magic=1234)

    def header_dims_disagree_with_size(folder):   # header says 8x5, data is 7x5
        return write_idx(folder / "train-images-idx3-ubyte", good["train_images"], shape=(12, 8, 5))

    def trailing_bytes(folder):
        path = folder / "t10k-images-idx3-ubyte"
        write_idx(path, good["test_images"])
        path.write_bytes(path.read_bytes() + b"\0" * 3)
        return path

    def truncated_raw(folder):
        path = folder / "train-labels-idx1-ubyte"
        write_idx(path, good["train_labels"])
        path.write_bytes(path.read_bytes()[:-4])
        return path

    def truncated_gzip(folder):
        (folder / "train-images-idx3-ubyte").unlink()
        path = write_idx(folder / "train-images-idx3-ubyte.gz", good["train_images"], gz=True)
        path.write_bytes(path.read_bytes()[:-20])
        return path

    def label_count_mismatch(folder):
        return write_idx(folder / "t10k-labels-idx1-ubyte", good["test_labels"][:4])

    def train_test_shapes_differ(folder):
        return write_idx(folder / "t10k-images-idx3-ubyte", np.zeros((5, 6, 5), np.uint8))

    def zero_images(folder):
        write_idx(folder / "train-labels-idx1-ubyte", np.zeros(0))
        return write_idx(folder / "train-images-idx3-ubyte", np.zeros((0, 7, 5)))

    return [bad_magic, unknown_magic, zero_images, header_dims_disagree_with_size, trailing_bytes,
            truncated_raw, truncated_gzip, label_count_mismatch, train_test_shapes_differ]


@pytest.mark.parametrize("corrupt", _corrupt_cases(), ids=lambda f: f.__name__)
def test_corrupt_idx_raises_naming_the_file(tmp_path, monkeypatch, corrupt):
    monkeypatch.setenv("VAEJAX_CACHE", str(tmp_path / "cache"))
    write_idx_folder(tmp_path, small_arrays())
    bad_path = corrupt(tmp_path)
    with pytest.raises(data.CorruptDataError, match=bad_path.name):
        data.load(f"idx:{tmp_path}", log=quiet)
    assert not list(tmp_path.glob("cache/*.npz"))                       # nothing wrong is cached


def test_named_dataset_checks_image_size_and_label_values(tmp_path, monkeypatch, no_local_sources):
    folder = tmp_path / "fake_mnist"
    arrays = {"train_images": np.zeros((60_000, 28, 28), np.uint8),
              "train_labels": np.arange(60_000) % 10,
              "test_images": np.zeros((10_000, 28, 28), np.uint8),
              "test_labels": np.arange(10_000) % 10}
    write_idx_folder(folder, arrays)
    data.load("mnist", data_dir=folder, log=quiet)                       # consistent: loads
    write_idx(folder / "t10k-labels-idx1-ubyte", np.full(10_000, 10))
    with pytest.raises(data.CorruptDataError, match="t10k-labels-idx1-ubyte.*0..9"):
        data.load("mnist", data_dir=folder, log=quiet)
    write_idx_folder(folder, {"test_labels": arrays["test_labels"],
                              "test_images": np.zeros((10_000, 27, 27), np.uint8)})
    with pytest.raises(data.CorruptDataError, match=r"t10k-images-idx3-ubyte.*\(28, 28, 1\)"):
        data.load("mnist", data_dir=folder, log=quiet)


def test_read_amat_fast_and_slow_layouts_agree(tmp_path):
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2, (6, 784), dtype=np.uint8)
    text = "".join(" ".join(map(str, row)) + "\n" for row in bits)
    (tmp_path / "a.amat.gz").write_bytes(gzip.compress(text.encode()))
    (tmp_path / "b.amat").write_text(text.replace("\n", " \r\n"))     # other whitespace
    expected = (bits * 255).reshape(6, 28, 28, 1)
    np.testing.assert_array_equal(data.read_amat(tmp_path / "a.amat.gz"), expected)
    np.testing.assert_array_equal(data.read_amat(tmp_path / "b.amat"), expected)
    with pytest.raises(data.CorruptDataError, match="a.amat.gz: 6 rows, expected 7"):
        data.read_amat(tmp_path / "a.amat.gz", num_rows=7)
    (tmp_path / "c.amat").write_text(text[:-4] + "\n")                 # a short last row
    with pytest.raises(data.CorruptDataError, match="c.amat: line 6"):
        data.read_amat(tmp_path / "c.amat")
    (tmp_path / "d.amat").write_text(text.replace("1", "2", 1))
    with pytest.raises(data.CorruptDataError, match="d.amat"):
        data.read_amat(tmp_path / "d.amat")


# --------------------------------------------------------------------------------------------
# Real datasets.

def test_real_fashion_mnist_from_the_system_folder(fashion_mnist_dir, monkeypatch,
                                                   no_local_sources):
    monkeypatch.setattr(sources, "SYSTEM_DIRS", {"fashion_mnist": (str(fashion_mnist_dir),)})
    ds = data.load("fashion_mnist", log=quiet)
    assert ds.source == f"system:{fashion_mnist_dir.resolve()}"
    assert ds.train_images.shape == (60_000, 28, 28, 1) and ds.train_images.dtype == np.uint8
    assert ds.test_images.shape == (10_000, 28, 28, 1) and ds.test_images.dtype == np.uint8
    assert np.bincount(ds.train_labels).tolist() == [6_000] * 10
    assert np.bincount(ds.test_labels).tolist() == [1_000] * 10


def test_real_mnist_class_counts(mnist_dir):
    ds = data.load("mnist", data_dir=mnist_dir, log=quiet)
    assert ds.train_images.shape == (60_000, 28, 28, 1) and ds.train_images.dtype == np.uint8
    assert ds.test_images.shape == (10_000, 28, 28, 1)
    assert np.bincount(ds.train_labels).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(ds.test_labels).tolist() == MNIST_TEST_COUNTS
    assert not ds.train_images.flags.writeable            # a frozen dataset, whatever the source


def test_real_binarized_mnist(binarized_mnist_dir):
    ds = data.load("binarized_mnist", data_dir=binarized_mnist_dir, log=quiet)
    assert ds.train_images.shape == (60_000, 28, 28, 1) and ds.train_images.dtype == np.uint8
    assert ds.test_images.shape == (10_000, 28, 28, 1)
    assert ds.train_labels is None and ds.test_labels is None
    assert set(np.unique(ds.train_images).tolist()) == {0, 255}
    assert set(np.unique(ds.test_images).tolist()) == {0, 255}
    assert abs(ds.train_images[:50_000].mean() / 255 - 0.13056) < 5e-6
    assert abs(ds.test_images.mean() / 255 - 0.13251) < 5e-6
    reference = np.loadtxt(next(binarized_mnist_dir.glob("binarized_mnist_test.amat*")),
                           dtype=np.uint8, max_rows=2_000)               # an independent parser
    np.testing.assert_array_equal(ds.test_images[:2_000].reshape(2_000, 784), 255 * reference)
    # The default validation split is exactly Larochelle's valid file.
    (_, _), (val_x, val_y) = data.split_validation(ds.train_images, ds.train_labels)
    valid = data.read_amat(next(binarized_mnist_dir.glob("binarized_mnist_valid.amat*")))
    np.testing.assert_array_equal(val_x, valid)
    assert val_y is None
    # Fixed binarization: every preprocessing kind is deterministic on it.
    x = ds.test_images[:64]
    for seed, kind in enumerate(("dynamic_binarize", "threshold", "scale")):
        got = data.preprocess(jax.random.key(seed), x, kind=kind)
        np.testing.assert_array_equal(got, x / 255.0)


def test_source_order_data_dir_then_dataset_env_then_data_dir_env(mnist_dir, tmp_path, monkeypatch,
                                                                  no_local_sources):
    folders = {}
    for name in ("arg", "env", "generic/mnist"):
        folders[name] = tmp_path / name
        folders[name].mkdir(parents=True)
        for f in mnist_dir.iterdir():
            (folders[name] / f.name).symlink_to(f)
    monkeypatch.setenv("VAEJAX_DATA_DIR", str(tmp_path / "generic"))
    folders = {name: folder.resolve() for name, folder in folders.items()}
    assert data.load("mnist", log=quiet).source == f"idx:{folders['generic/mnist']}"
    monkeypatch.setenv("VAEJAX_MNIST_DIR", str(folders["env"]))
    assert data.load("mnist", log=quiet).source == f"idx:{folders['env']}"
    assert data.load("mnist", data_dir=folders["arg"], log=quiet).source == f"idx:{folders['arg']}"
    # Each source has its own cache file; a second load reads the one of the source it resolves.
    assert len(list((tmp_path / "cache").glob("mnist-idx-*.npz"))) == 3
    assert data.load("mnist", log=quiet).source.endswith(f"(from idx:{folders['env']})")


def test_describe_and_fetch(mnist_dir):
    path = data.fetch("mnist", data_dir=mnist_dir, log=quiet)
    assert os.path.isfile(path) and path.endswith(".npz")
    info = data.describe("mnist", data_dir=mnist_dir, log=quiet)
    assert info["cache_path"] == path and info["source"].startswith("cache:")
    assert info["train_shape"] == [60_000, 28, 28, 1] and info["dtype"] == "uint8"
    assert info["train_class_counts"] == MNIST_TRAIN_COUNTS
    assert info["test_class_counts"] == MNIST_TEST_COUNTS


def test_unknown_name_lists_the_names():
    with pytest.raises(ValueError, match="fashion_mnist.*idx:<folder>"):
        data.load("svhn", log=quiet)


def test_split_validation_takes_the_last_examples():
    x, y = np.arange(50).reshape(25, 2), np.arange(25)
    (tx, ty), (vx, vy) = data.split_validation(x, y, num_validation=5)
    np.testing.assert_array_equal(vx, x[20:])
    np.testing.assert_array_equal(ty, y[:20])
    with pytest.raises(ValueError):
        data.split_validation(x, y, num_validation=25)


# --------------------------------------------------------------------------------------------
# TFDS: the online path under tfds.testing.mock_data, and the offline failure.

def _tfds_as_dataset(splits):
    import tensorflow as tf

    def as_dataset(self, split, **kwargs):
        return tf.data.Dataset.from_tensor_slices(splits[self.name][str(split)])
    return as_dataset


@pytest.mark.parametrize("prepared", [False, True], ids=["download", "prepared"])
def test_tfds_path_returns_the_arrays(no_local_sources, monkeypatch, prepared):
    import tensorflow_datasets as tfds
    rng = np.random.default_rng(4)
    mnist = {s: {"image": rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),
                 "label": rng.integers(0, 10, n).astype(np.int64)}
             for s, n in (("train", 23), ("test", 11))}
    bits = {s: {"image": rng.integers(0, 2, (n, 28, 28, 1), dtype=np.uint8)}
            for s, n in (("train", 9), ("validation", 4), ("test", 5))}
    probes = []
    monkeypatch.setattr(sources, "_host_reachable",
                        lambda host, **kw: probes.append(host) or True)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: prepared)
    lines = []
    with tfds.testing.mock_data(as_dataset_fn=_tfds_as_dataset(
            {"mnist": mnist, "binarized_mnist": bits})):
        ds = data.load("mnist", log=lines.append)
        binarized = data.load("binarized_mnist", log=quiet)
    assert ds.source == "tfds:mnist" and "data: mnist from tfds:mnist" in lines
    assert any("downloading" in line for line in lines) == (not prepared)
    assert probes == ([] if prepared else ["storage.googleapis.com", "www.cs.toronto.edu"])
    np.testing.assert_array_equal(ds.train_images, mnist["train"]["image"])
    np.testing.assert_array_equal(ds.test_labels, mnist["test"]["label"])
    assert ds.train_labels.dtype == np.int32
    np.testing.assert_array_equal(   # train = train then validation, stored as 0/255
        binarized.train_images,
        255 * np.concatenate([bits["train"]["image"], bits["validation"]["image"]]))
    np.testing.assert_array_equal(binarized.test_images, 255 * bits["test"]["image"])
    assert binarized.train_labels is None
    assert data.load("mnist", log=quiet).source.startswith("cache:")   # cached like any source


def test_tfds_cifar10_under_random_mock_data(no_local_sources, monkeypatch):
    import tensorflow_datasets as tfds
    monkeypatch.setattr(sources, "_host_reachable", lambda host, **kw: True)
    with tfds.testing.mock_data(num_examples=6):
        ds = data.load("cifar10", log=quiet)
    assert ds.train_images.shape == (6, 32, 32, 3) and ds.train_images.dtype == np.uint8
    assert ds.test_images.shape == (6, 32, 32, 3)
    assert ds.train_labels.dtype == np.int32 and ds.train_labels.max() < 10


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "binarized_mnist", "cifar10"])
def test_offline_without_local_copies_fails_fast_and_says_how_to_fix(no_local_sources, monkeypatch,
                                                                     name):
    attempts = []

    def no_network(address, *args, **kwargs):
        attempts.append(address)
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", no_network)
    start = time.perf_counter()
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load(name, log=quiet)
    assert time.perf_counter() - start < 10.0
    assert attempts, "the download host was never probed"
    message = str(info.value)
    assert "TFDS" in message and "did not answer" in message and "vaejax[tfds]" in message
    assert str((no_local_sources / "tfds").resolve()) in message
    if name != "cifar10":
        assert "VAEJAX_DATA_DIR" in message and data.DATASET_ENV_VARS[name] in message
    if name == "fashion_mnist":
        assert "dataset-fashion-mnist" in message


def test_package_imports_and_loads_idx_without_tensorflow(tmp_path):
    arrays = small_arrays()
    write_idx_folder(tmp_path / "idx", arrays, gz=True)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["tensorflow"] = None
        sys.modules["tensorflow_datasets"] = None
        from vaejax import data
        ds = data.load("idx:{tmp_path / 'idx'}")
        assert ds.train_images.shape == (12, 7, 5, 1), ds.train_images.shape
        data.SYSTEM_DIRS.clear()
        try:
            data.load("mnist")
        except data.DatasetNotFoundError as e:
            assert "tensorflow_datasets is not installed" in str(e), str(e)
        else:
            raise AssertionError("mnist loaded with no source")
        assert "tensorflow" not in [m for m, v in sys.modules.items() if v is not None]
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update(VAEJAX_CACHE=str(tmp_path / "cache"), TFDS_DATA_DIR=str(tmp_path / "tfds"),
               JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "data: idx:" in result.stdout and result.stdout.strip().endswith("ok")


def test_cli_data_info_and_fetch(mnist_dir, monkeypatch, capsys):
    from vaejax import cli

    monkeypatch.setenv("VAEJAX_MNIST_DIR", str(mnist_dir))
    assert cli.main(["data", "info", "mnist"]) == 0
    out = capsys.readouterr().out
    assert "[5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]" in out
    assert "[60000, 28, 28, 1]" in out and "cache_path" in out
    assert cli.main(["data", "fetch", "mnist"]) == 0
    path = capsys.readouterr().out.strip().splitlines()[-1]
    assert path.endswith(".npz") and pathlib.Path(path).exists()
