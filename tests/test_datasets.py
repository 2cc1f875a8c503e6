"""`vaejax.data.datasets`: a dataset is a registry entry or a user's `module:attribute` from the
experiment folder, returning arrays of any shape, uint8 or float; what it cannot be given is
refused before anything is written."""

import pathlib

import numpy as np
import pytest

from run_helpers import REPO
from vaejax import cli, data, program, train
from vaejax import config as config_lib

USER_DATA = '''
import numpy as np

def vectors(*, dim=8, log=print):
    """Float vectors from a fixed Gaussian with correlated coordinates."""
    log(f"my data: {dim}-dimensional vectors")
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    train, test = rng.normal(size=(600, dim)) @ mixing, rng.normal(size=(200, dim)) @ mixing
    return {"train_images": train.astype(np.float32), "train_labels": None,
            "test_images": test.astype(np.float32), "test_labels": None}

def squares():
    """8x8 uint8 images of a bright square at one of four places, labelled by the place."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 700)
    images = np.zeros((700, 8, 8, 1), np.uint8)
    for i, place in enumerate(labels):
        r, c = divmod(int(place), 2)
        images[i, 4 * r:4 * r + 4, 4 * c:4 * c + 4] = 255
    return {"train_images": images[:600], "train_labels": labels[:600],
            "test_images": images[600:], "test_labels": labels[600:]}

def bad_labels():
    images = np.zeros((10, 4, 4, 1), np.uint8)
    return {"train_images": images, "train_labels": np.arange(9),
            "test_images": images, "test_labels": None}
'''


def _experiment(tmp_path, **overrides) -> pathlib.Path:
    """An experiment file beside my_data.py: experiments/default.py, small, with `overrides`."""
    (tmp_path / "my_data.py").write_text(USER_DATA)
    small = {"data.num_validation": 100, "data.data_dir": "", "model.hidden_sizes": (32,),
             "model.latent_dim": 2, "train.epochs": 2, "train.batch_size": 50,
             "eval.iwae_samples": 10, "eval.iwae_chunk": 10, "eval.batch_size": 100}
    path = tmp_path / "experiment.py"
    path.write_text(
        "from vaejax.config import apply_override, load_config\n"
        "def get_config():\n"
        f"    config = load_config({str(REPO / 'experiments' / 'default.py')!r})\n"
        + "".join(f"    apply_override(config, {k!r}, {v!r})\n"
                  for k, v in (small | overrides).items())
        + "    return config\n")
    return path


def _config(tmp_path, **overrides):
    return config_lib.load_config(_experiment(tmp_path, **overrides))


def test_float_vectors_of_ones_own_train_and_evaluate(tmp_path):
    config = _config(tmp_path, **{
        "data.name": "my_data:vectors", "data.preprocessing": "identity",
        "model.likelihood": "gaussian", "eval.figures": False})
    config.data.dim = 6  # a setting the user's dataset reads
    program.check_new_run(config)
    lines = []
    result = train.train(config, tmp_path / "run", log=lines.append)
    assert "my data: 6-dimensional vectors" in lines
    assert np.isfinite(result["results"]["test/nll"])
    # The model read what the dataset gave: 6 floats, centred, not pixels / 255.
    run = train.records.read_run_record(tmp_path / "run")
    assert run["config"]["data"]["dim"] == 6
    splits = data.load_splits(config, log=lambda *_: None)
    assert splits.image_shape == (6,) and splits.train.images.dtype == np.float32
    assert splits.train.num_examples == 500
    np.testing.assert_allclose(splits.train.mean_image(), splits.train.images.mean(0), atol=1e-6)


def test_uint8_images_of_ones_own_with_labels_get_figures(tmp_path):
    config = _config(tmp_path, **{"data.name": "my_data:squares"})
    result = train.train(config, tmp_path / "run", log=lambda *_: None)
    assert np.isfinite(result["results"]["test/nll"])
    assert (tmp_path / "run" / "figures" / "reconstructions.png").exists()
    splits = data.load_splits(config, log=lambda *_: None)
    assert splits.image_shape == (8, 8, 1) and splits.train.images.dtype == np.uint8
    assert set(np.unique(np.asarray(splits.test.labels))) == {0, 1, 2, 3}


@pytest.mark.parametrize("overrides,message", [
    ({"data.name": "my_data:vectors"},  # float data into dynamic binarization
     "data.preprocessing='dynamic_binarize' cannot take the float32 examples of "
     "data.name='my_data:vectors'"),
    ({"data.name": "my_data:vectors", "data.preprocessing": "identity"},
     "eval.figures draws images (H, W, C), but data.name='my_data:vectors' gives examples of "
     "shape (8,): set eval.figures=False"),
    ({"data.name": "my_data:bad_labels"},
     "data.name='my_data:bad_labels': train_labels are int64 of shape (9,); expected (10,)"),
    ({"data.name": "my_data:squares", "data.data_dir": "/tmp"},
     "data.data_dir='/tmp' does nothing with data.name='my_data:squares' (it is read by "
     "data.name 'binarized_mnist', 'fashion_mnist' or 'mnist')"),
])
def test_what_a_dataset_cannot_be_given_is_refused_before_anything_is_written(
        tmp_path, capsys, overrides, message):
    args = ["train", "--config", str(_experiment(tmp_path, **overrides)),
            "--workdir", str(tmp_path / "run")]
    assert cli.main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_built_in_datasets_are_registry_entries():
    assert data.DATASETS.names() == ["binarized_mnist", "cifar10", "dsprites", "fashion_mnist", "mnist",
                                     "squares"]
    assert data.DATASETS.settings("mnist") == {"data_dir"}
    assert data.DATASETS.settings("cifar10") == frozenset()
    assert data.DATASETS.settings("idx:/some/folder") == frozenset()
