"""A model and an objective written outside vaejax plug in with no change to vaejax.

The model is experiments/my_models/mixture_prior.py (a learned mixture-of-Gaussians prior,
distrax distributions), selected by experiments/mixture_prior_mnist.py. On real MNIST it
trains, evaluates, draws its figures, reproduces exactly, sweeps as a vmapped group whose
members equal their runs alone, and loads back in three lines.
"""

import json
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vaejax
from vaejax import cli, records, reproduce, sweep, train
from vaejax import config as config_lib

from run_helpers import REPO, comparable

# `make test` (--dist loadgroup) runs this module on one worker: its module fixture is built once.
pytestmark = pytest.mark.xdist_group("plugin_model")

EXPERIMENT = REPO / "experiments" / "mixture_prior_mnist.py"
SHRINK = ["data.num_train=512", "data.num_validation=10000", "train.epochs=2", "train.batch_size=64",
          "model.hidden_size=64", "model.latent_dim=4", "model.num_components=3",
          "eval.iwae_samples=10", "eval.iwae_chunk=10", "eval.num_test_examples=100",
          "eval.batch_size=100"]


def quiet(*_):
    pass


@pytest.fixture
def config(mnist_dir, allow_rank_promotion):
    return config_lib.load_config(EXPERIMENT, SHRINK + [f"data.data_dir={mnist_dir}"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist_dir):
    """The plug-in model trained alone (seed 0), shared by the tests of this module."""
    with jax.numpy_rank_promotion("allow"):  # distrax broadcasts implicitly
        config = config_lib.load_config(EXPERIMENT, SHRINK + [f"data.data_dir={mnist_dir}"])
        workdir = tmp_path_factory.mktemp("plugin") / "run"
        return workdir, train.train(config, workdir, log=quiet)


def test_plugin_model_trains_evaluates_draws_reproduces_and_loads(tmp_path, trained, config):
    run_dir, result = trained
    rows = records.read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["val/neg_elbo"] < rows[0]["val/neg_elbo"]
    results = result["results"]
    # No closed-form KL against a mixture: no kl_per_dim, the rest as for built-in models.
    assert "kl_per_dim" not in results and results["latent_dim"] == 4
    assert results["test/nll"] <= results["test/neg_elbo"] + 0.5  # IWAE K=10 is tighter
    figures = {p.name for p in (run_dir / "figures").iterdir()}
    assert {"prior_samples.png", "reconstructions.png", "latent_traversals.png",
            "training_curves.png"} <= figures

    report = reproduce.reproduce(run_dir, tmp_path / "replica", log=quiet)
    assert report["match"], report["differences"]

    # A notebook: three lines give back the model, its params and its config.
    model, params, loaded = vaejax.load_run(run_dir, log=quiet)
    assert loaded.model.kind == "my_models.mixture_prior:MixturePriorVAE"
    assert params["prior"]["mu"].shape == (3, 4)
    x = jnp.zeros(model.data_shape)
    assert model.likelihood(params, model.posterior(params, x).mean()).mean().shape == (28, 28, 1)

    # vaejax eval and vaejax sample on the workdir, through the command line.
    assert cli.main(["eval", "--workdir", str(run_dir), "--config.eval.iwae_samples=20"]) == 0
    assert json.loads((run_dir / "results.json").read_text())["iwae_samples"] == 20
    (run_dir / "figures" / "prior_samples.png").unlink()
    assert cli.main(["sample", "--workdir", str(run_dir)]) == 0
    assert (run_dir / "figures" / "prior_samples.png").exists()


def test_plugin_model_sweeps_as_one_vmapped_group(tmp_path, trained, config, mnist_dir):
    out = sweep.run_sweep(EXPERIMENT, tmp_path / "sweep", log=quiet,
                           overrides=SHRINK + [f"data.data_dir={mnist_dir}", "eval.figures=false",
                                                    "eval.iwae_samples=0"])
    assert [len(g.runs) for g in out["groups"]] == [2]  # seeds 0 and 1 vmapped together
    member = comparable(records.read_metrics(tmp_path / "sweep" / "runs" / "seed=0"))
    single = comparable(records.read_metrics(trained[0]))  # seed 0 trained alone
    for a, b in zip(member, single):
        for key, value in b.items():
            assert a[key] == pytest.approx(value, rel=1e-5), key
    rows = sweep.collect(tmp_path / "sweep")[0]
    assert [r["status"] for r in rows] == ["finished", "finished"]


def test_plugin_objective_by_module_path(tmp_path, mnist_dir):
    """`objective.kind = "module:attribute"`: a user's batch-level objective, with its own
    static field and a traced scalar, imported from the experiment's folder."""
    (tmp_path / "my_objective.py").write_text(textwrap.dedent('''
        import dataclasses
        import functools
        import vaejax

        @dataclasses.dataclass(frozen=True)
        class ScaledIWAE:
            """scale * IWAE bound; `scale` is traced (vmappable), num_samples static."""
            scalars = ("scale",)
            num_samples: int = 1

            def __call__(self, key, x, model, params, *, scale):
                value, aux = vaejax.batch_iwae_bound(
                    key, x, functools.partial(model.posterior, params),
                    functools.partial(model.likelihood, params), prior=model.prior(params),
                    num_samples=self.num_samples)
                return -scale * value, {"rate": aux["kl"], "distortion": -aux["reconstruction"]}
    '''))
    (tmp_path / "experiment.py").write_text(textwrap.dedent(f'''
        from vaejax.config import sibling  # noqa
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("base", {str(REPO / "experiments" / "default.py")!r})
        base = importlib.util.module_from_spec(spec); spec.loader.exec_module(base)

        def get_config():
            config = base.get_config()
            config.objective.kind = "my_objective:ScaledIWAE"
            config.objective.scale = 0.5
            config.objective.num_samples = 3
            return config
    '''))
    config = config_lib.load_config(tmp_path / "experiment.py", [
        "data.name=mnist", f"data.data_dir={mnist_dir}", "data.num_train=256", "train.epochs=1",
        "train.batch_size=64", "model.hidden_sizes=(32,)", "eval.iwae_samples=0",
        "eval.figures=false", "eval.num_test_examples=100"])
    train.train(config, tmp_path / "run", log=quiet)
    row = records.read_metrics(tmp_path / "run")[0]
    assert row["scale"] == 0.5
    # The loss is the scaled bound: half the ELBO-like magnitude of rate + distortion.
    assert row["train/loss"] == pytest.approx(0.5 * row["train/neg_elbo"], rel=0.05)
    from vaejax.program import vmapped_keys  # noqa: PLC0415
    assert "objective.scale" in vmapped_keys(config)
    assert np.isfinite(row["train/loss"])


def test_an_experiment_outside_the_checkout_finds_the_model_beside_it(tmp_path, mnist_dir,
                                                                       monkeypatch):
    """A user's experiment in its own folder, built on experiments/default.py with
    `load_config` (which sets experiment_dir to the checkout's experiments/ on the way),
    trains the model from the file beside it: the file named on the command line decides."""
    research = tmp_path / "research"
    research.mkdir()
    (research / "my_model.py").write_text(textwrap.dedent('''
        from vaejax import models

        def make(*, image_shape, latent_dim, width):
            return models.mlp_vae(image_shape=image_shape, latent_dim=latent_dim, hidden_sizes=(width,))
    '''))
    (research / "my_experiment.py").write_text(textwrap.dedent(f'''
        from vaejax.config import load_config

        def get_config():
            config = load_config({str(REPO / "experiments" / "default.py")!r})
            config.model = dict(kind="my_model:make", latent_dim=2, width=16)
            return config
    '''))
    monkeypatch.chdir(tmp_path)  # not the checkout, not the experiment's folder
    argv = ["train", "--config", str(research / "my_experiment.py"), "--workdir", "run",
            "--config.data.name=mnist", f"--config.data.data_dir={mnist_dir}",
            "--config.data.num_train=256", "--config.train.epochs=1", "--config.train.batch_size=64",
            "--config.eval.iwae_samples=0", "--config.eval.figures=false",
            "--config.eval.num_test_examples=100"]
    assert cli.main(argv) == 0
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["config"]
    assert recorded["experiment_dir"] == str(research)
    assert recorded["model"]["kind"] == "my_model:make"
    assert records.read_metrics(tmp_path / "run")[0]["epoch"] == 1
