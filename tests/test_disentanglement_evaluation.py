"""`eval.disentanglement`: the metrics of a trained run on a dataset with a full factor grid,
through the same code path as `vaejax train` / `eval` / `sweep`."""
import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaejax import config as config_lib
from vaejax import disentanglement_evaluation as de
from vaejax.data import dsprites, load_splits
from vaejax.data.grid_lookup import GridLookup
from vaejax.distributions import DiagGaussian

from run_helpers import REPO


def _squares_config(*overrides):
    return config_lib.load_config(REPO / "experiments" / "default.py", [
        "data.name=squares", "data.num_validation=100", "model.latent_dim=4",
        "model.hidden_sizes=(32,)", "train.epochs=1", "train.batch_size=64",
        "eval.iwae_samples=10", "eval.figures=False", *overrides])


def test_the_lookup_finds_each_image_by_its_factors_and_refuses_a_partial_grid():
    """The grid is every image of the dataset, also when a run trains on part of it; the
    split's order is shuffled, so its first images are spread over the grid."""
    splits = load_splits(_squares_config("eval.disentanglement=True", "data.num_train=412"),
                         log=lambda *_: None)
    assert splits.train.num_examples == 412
    assert len(np.unique(np.asarray(splits.train.factors)[:, 2])) == dsprites.SQUARES.sizes[2]
    lookup = splits.grid  # every image, though 510 of the training images do not train
    assert lookup.sizes == dsprites.SQUARES.sizes
    f = dsprites.SQUARES.sample(np.random.default_rng(0), 50)
    np.testing.assert_array_equal(np.asarray(lookup.images(f)) // 255, dsprites.render_squares(f))
    images = jnp.concatenate([splits.train.images, splits.validation.images, splits.test.images])
    factors = np.concatenate([splits.train.factors, splits.validation.factors, splits.test.factors])
    with pytest.raises(ValueError, match=r"holds 614 of its 1,024 points"):  # the splits alone
        GridLookup(images, factors)


def _measuring_program():
    """A stand-in for a trained model whose posterior mean is each square's centre and side,
    measured on its pixels (the factors, up to monotone maps), or noise that ignores them."""
    ys, xs = jnp.mgrid[:32, :32]

    def posterior(params, x):
        image = x[..., 0]
        area = image.sum()
        measured = jnp.stack([(image * xs).sum() / area, (image * ys).sum() / area, jnp.sqrt(area)])
        noise = jax.random.normal(jax.random.key(jnp.int32(image.sum() * 7 + (image * xs).sum())), (3,))
        return DiagGaussian(jnp.where(params, measured, noise), jnp.zeros(3))

    model = types.SimpleNamespace(posterior=posterior)
    return types.SimpleNamespace(model=model, inputs=lambda key, images: images.astype(jnp.float32) / 255)


def test_an_encoder_that_reads_the_factors_scores_high_and_noise_scores_low():
    grid = load_splits(_squares_config("eval.disentanglement=True"), log=lambda *_: None).grid
    program = _measuring_program()
    good = de.evaluate(program, True, grid, seed=0, num_examples=600, log=lambda *_: None)
    bad = de.evaluate(program, False, grid, seed=0, num_examples=600, log=lambda *_: None)
    assert good["disentanglement/mig"] > 0.3 > bad["disentanglement/mig"]
    assert good["disentanglement/factor_vae_eval_accuracy"] > 0.9 > bad["disentanglement/factor_vae_eval_accuracy"]
    assert good["disentanglement/dci_disentanglement"] > bad["disentanglement/dci_disentanglement"] + 0.3
    assert good["disentanglement/sap"] > bad["disentanglement/sap"]
    # the same seed gives the same scores; another seed draws other images
    scores = lambda seed: {k: v for k, v in de.evaluate(  # noqa: E731
        program, True, grid, seed=seed, num_examples=600, log=lambda *_: None).items()
        if not k.startswith("disentanglement_")}
    first = {k: v for k, v in good.items() if not k.startswith("disentanglement_")}
    assert set(good["disentanglement_metric_time"]) == {
        "mig", "sap", "dci", "modularity_explicitness", "beta_vae_score", "factor_vae_score"}
    assert sum(good["disentanglement_metric_time"].values()) <= good["disentanglement_time"]
    assert scores(0) == first and scores(1) != first


@pytest.mark.slow
def test_a_run_writes_its_disentanglement_metrics_to_results(tmp_path):
    from vaejax import train  # noqa: PLC0415

    config = _squares_config("eval.disentanglement=True", "eval.disentanglement_examples=200")
    train.train(config, tmp_path / "run", log=lambda *_: None)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    names = {"mig", "sap", "dci_disentanglement", "dci_completeness", "modularity",
             "explicitness_test", "beta_vae_eval_accuracy", "factor_vae_eval_accuracy"}
    for name in names:
        assert 0.0 <= results[f"disentanglement/{name}"] <= 1.0, name


def test_settings_nothing_can_read_are_refused_before_anything_is_written(tmp_path, mnist_dir):
    from vaejax import train  # noqa: PLC0415

    with pytest.raises(ValueError, match="eval.disentanglement_examples=500 is read only with"):
        train.train(_squares_config("eval.disentanglement_examples=500"), tmp_path / "a", log=lambda *_: None)
    no_factors = config_lib.load_config(REPO / "experiments" / "default.py", [
        "data.name=idx:" + str(mnist_dir), "eval.disentanglement=True"])
    with pytest.raises(ValueError, match="needs a dataset with ground-truth factors"):
        train.train(no_factors, tmp_path / "c", log=lambda *_: None)
    assert not any((tmp_path / d).exists() for d in "ac")


@pytest.mark.slow
def test_a_sweeps_members_are_scored_and_the_tables_show_the_scores(tmp_path):
    """Two seeds as one vmapped group: each member's results.json has its own scores, and the
    sweep's tables show them (results.md the headline ones, results.csv every one)."""
    from vaejax.sweep import group as sweep_group  # noqa: PLC0415

    sweep_file = tmp_path / "squares_sweep.py"
    sweep_file.write_text(
        "from vaejax.config import load_config\nfrom vaejax.sweep import product\n\n"
        f"def get_config():\n    return load_config({str(REPO / 'experiments' / 'default.py')!r}, [\n"
        "        'data.name=squares', 'data.num_validation=100', 'model.latent_dim=4',\n"
        "        'model.hidden_sizes=(32,)', 'train.epochs=1', 'train.batch_size=64',\n"
        "        'eval.iwae_samples=10', 'eval.figures=False', 'eval.disentanglement=True',\n"
        "        'eval.disentanglement_examples=200'])\n\n"
        "def get_sweep():\n    return product(seed=[0, 1])\n")
    sweep_group.run_sweep(sweep_file, tmp_path / "sweep", log=lambda *_: None)
    scores = [json.loads(p.read_text())["disentanglement/mig"]
              for p in sorted((tmp_path / "sweep" / "runs").glob("*/results.json"))]
    assert len(scores) == 2 and scores[0] != scores[1]
    table = (tmp_path / "sweep" / "results.md").read_text()
    assert "disentanglement/mig" in table and "disentanglement/factor_vae_eval_accuracy" in table
    header = (tmp_path / "sweep" / "results.csv").read_text().splitlines()[0]
    assert "disentanglement/dci_completeness" in header and "disentanglement/explicitness_test" in header


def test_each_factor_gets_the_latent_that_encodes_it():
    """Codes that hold factor f in dimension perm[f] (plus a noise dimension) give back perm."""
    rng = np.random.default_rng(0)
    factors = rng.integers(0, 6, size=(2000, 3))
    perm = np.array([2, 0, 3])
    codes = rng.normal(size=(2000, 4)) * 0.01
    codes[:, perm] += factors
    codes[:, 1] = rng.normal(size=2000)  # dimension 1 encodes nothing
    np.testing.assert_array_equal(de.factor_latents(codes, factors), perm)


def test_a_run_with_figures_draws_a_traversal_per_factor(tmp_path):
    from PIL import Image

    from vaejax import train  # noqa: PLC0415

    config = _squares_config("eval.disentanglement=True", "eval.disentanglement_examples=200",
                             "eval.figures=True")
    train.train(config, tmp_path / "run", log=lambda *_: None)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert "factor_traversals.png" in results["figures"]
    with Image.open(tmp_path / "run" / "figures" / "factor_traversals.png") as image:
        # one row per factor of squares (x, y, size): 3 rows of 32-pixel tiles at scale 2
        assert image.height == 2 * (3 * 32 + 2) + 88
