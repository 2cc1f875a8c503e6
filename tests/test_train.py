"""End to end: train, resume, NaN stop, workdir protection, evaluation, figures, reproduce.

Every run here is the real default config shrunk (fewer images, epochs and samples) on
real MNIST, as the flax examples test their `main`.
"""

import json
import pathlib
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from vaejax import checkpoints, cli, evaluate, records, reproduce, train
from vaejax import config as config_lib

REPO = pathlib.Path(__file__).resolve().parents[1]


def small_config(mnist_dir, **overrides):
    config = config_lib.load_config(REPO / "experiments" / "default.py")
    base = {
        "data.name": "mnist", "data.data_dir": str(mnist_dir), "data.num_train": 1024,
        "data.num_validation": 10_000, "model.hidden_sizes": (64,), "model.latent_dim": 2,
        "train.epochs": 2, "train.batch_size": 64, "eval.iwae_samples": 20,
        "eval.iwae_chunk": 10, "eval.num_test_examples": 200, "eval.batch_size": 100,
        "eval.figures": False,
    }
    base.update(overrides)
    for key, value in base.items():
        config_lib.apply_override(config, key, value)
    return config


def comparable(rows):
    return [{k: v for k, v in r.items() if k not in train.TIMING_KEYS} for r in rows]


def final_params(workdir, config):
    splits = train.load_splits(config, log=lambda *_: None)
    program = train.TrainProgram.build(config, splits.train.shape[1:], splits.train.shape[0])
    params, _ = train.restore_params(workdir, program, train.Hyper.from_config(config))
    return params


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist_dir):
    """One short real run with evaluation and figures, shared by the tests that read it."""
    workdir = tmp_path_factory.mktemp("run") / "run"
    config = small_config(mnist_dir, **{"eval.figures": True, "train.epochs": 3,
                                        "data.num_train": 4096})
    result = train.train(config, workdir, log=lambda *_: None)
    return workdir, config, result


def test_short_run_lowers_validation_loss_and_writes_everything(trained):
    workdir, config, result = trained
    rows = records.read_metrics(workdir)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["val/neg_elbo"] < rows[0]["val/neg_elbo"] - 5.0
    for key in ("train/neg_elbo", "train/rate", "train/distortion", "val/neg_elbo", "val/rate",
                "val/distortion", "lr", "examples_per_sec", "epoch_time"):
        assert np.isfinite(rows[-1][key]), key
    assert rows[-1]["train/neg_elbo"] == pytest.approx(
        rows[-1]["train/rate"] + rows[-1]["train/distortion"], rel=1e-6)
    assert checkpoints.Manager(workdir).epochs() == [1, 2, 3]
    run = records.read_run_record(workdir)
    assert run["seed"] == 0 and run["backend"] == jax.default_backend()
    assert run["versions"]["jax"] == jax.__version__ and run["device_kind"]
    assert run["config"]["model"]["latent_dim"] == 2


def test_results_are_consistent(trained):
    workdir, config, result = trained
    res = json.loads((workdir / "results.json").read_text())
    assert res["num_test_examples"] == 200 and res["iwae_samples"] == 20
    # The IWAE bound is tighter than the ELBO (same test binarization), and rate + distortion
    # is the negative ELBO.
    assert res["test/nll"] < res["test/neg_elbo"]
    assert res["test/neg_elbo"] == pytest.approx(res["test/rate"] + res["test/distortion"], rel=1e-5)
    assert len(res["kl_per_dim"]) == 2
    assert sum(res["kl_per_dim"]) == pytest.approx(res["test/rate"], rel=1e-5)
    assert res["active_units"] == sum(v > 0.01 for v in res["posterior_mean_variance"])


def test_figures_are_readable_pngs(trained):
    workdir, _, _ = trained
    sizes = {}
    for name in ("prior_samples.png", "reconstructions.png", "latent_traversals.png",
                 "training_curves.png", "latent_manifold.png"):
        path = workdir / "figures" / name
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG"
            pixels = np.asarray(image.convert("L"), dtype=np.float32)
            sizes[name] = image.size
        assert pixels.std() > 1.0, name  # not a blank image
    # 20 x 20 decoded 28x28 tiles, so the manifold is at least 20 * 28 pixels on a side.
    assert min(sizes["latent_manifold.png"]) >= 20 * 28
    assert sizes["prior_samples.png"][0] >= 10 * 28
    assert sizes["reconstructions.png"][0] >= 10 * 28


def test_same_seed_same_metrics_other_seed_differs(tmp_path, mnist_dir):
    config = small_config(mnist_dir, **{"train.epochs": 1})
    a = train.train(config, tmp_path / "a", evaluate_at_end=False, log=lambda *_: None)
    b = train.train(config, tmp_path / "b", evaluate_at_end=False, log=lambda *_: None)
    other = small_config(mnist_dir, **{"train.epochs": 1, "seed": 1})
    c = train.train(other, tmp_path / "c", evaluate_at_end=False, log=lambda *_: None)
    assert comparable([a]) == comparable([b])
    assert a["val/neg_elbo"] != c["val/neg_elbo"] and a["train/loss"] != c["train/loss"]


def test_killed_and_resumed_equals_uninterrupted(tmp_path, mnist_dir, monkeypatch):
    config = small_config(mnist_dir, **{"train.epochs": 3})
    train.train(config, tmp_path / "whole", evaluate_at_end=False, log=lambda *_: None)

    # Kill the second run between writing epoch 2's metrics and its checkpoint: the worst
    # moment, since metrics.jsonl is then ahead of the checkpoints.
    original_save = checkpoints.Manager.save

    def dying_save(self, epoch, state):
        if epoch == 2:
            raise KeyboardInterrupt("killed")
        original_save(self, epoch, state)

    monkeypatch.setattr(checkpoints.Manager, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train.train(config, tmp_path / "killed", evaluate_at_end=False, log=lambda *_: None)
    assert [r["epoch"] for r in records.read_metrics(tmp_path / "killed")] == [1, 2]
    monkeypatch.setattr(checkpoints.Manager, "save", original_save)

    train.train(config, tmp_path / "killed", resume=True, evaluate_at_end=False,
                log=lambda *_: None)
    whole = records.read_metrics(tmp_path / "whole")
    resumed = records.read_metrics(tmp_path / "killed")
    assert comparable(whole) == comparable(resumed)
    pa, pb = final_params(tmp_path / "whole", config), final_params(tmp_path / "killed", config)
    for a, b in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # bitwise


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path, mnist_dir, monkeypatch):
    config = small_config(mnist_dir, **{"train.epochs": 3})  # 16 steps per epoch
    original_step = train.TrainProgram.train_step

    def poisoned_step(self, state, hyper, x, keys):
        state, metrics = original_step(self, state, hyper, x, keys)
        bad = state.step >= 20  # the 20th step (in epoch 2) yields NaN
        metrics["loss"] = jnp.where(bad, jnp.nan, metrics["loss"])
        return state, metrics

    monkeypatch.setattr(train.TrainProgram, "train_step", poisoned_step)
    with pytest.raises(train.TrainingDiverged, match=r"step 20 \(epoch 2\).*epoch 1"):
        train.train(config, tmp_path / "run", evaluate_at_end=False, log=lambda *_: None)
    assert checkpoints.Manager(tmp_path / "run").epochs() == [1]
    assert [r["epoch"] for r in records.read_metrics(tmp_path / "run")] == [1]


def test_existing_workdir_is_never_overwritten(tmp_path, mnist_dir):
    config = small_config(mnist_dir, **{"train.epochs": 1})
    workdir = tmp_path / "run"
    train.train(config, workdir, evaluate_at_end=False, log=lambda *_: None)
    before = (workdir / "metrics.jsonl").read_text()
    with pytest.raises(train.WorkdirExistsError, match="--resume"):
        train.train(config, workdir, evaluate_at_end=False, log=lambda *_: None)
    assert (workdir / "metrics.jsonl").read_text() == before
    # A resumed run with another architecture is refused, naming the key.
    changed = small_config(mnist_dir, **{"train.epochs": 1, "model.latent_dim": 3})
    with pytest.raises(ValueError, match="model.latent_dim"):
        train.train(changed, workdir, resume=True, evaluate_at_end=False, log=lambda *_: None)
    # --overwrite moves the old run aside: nothing is lost.
    train.train(config, workdir, overwrite=True, evaluate_at_end=False, log=lambda *_: None)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert len(aside) == 1 and (aside[0] / "metrics.jsonl").read_text() == before


def test_reproduce_matches_and_detects_a_planted_mismatch(tmp_path, mnist_dir):
    config = small_config(mnist_dir, **{"train.epochs": 1})
    train.train(config, tmp_path / "orig", log=lambda *_: None)
    report = reproduce.reproduce(tmp_path / "orig", tmp_path / "replica", log=lambda *_: None)
    assert report["match"] and report["differences"] == [], report["differences"]

    rows = records.read_metrics(tmp_path / "orig")
    rows[0]["val/neg_elbo"] += 1e-4
    (tmp_path / "orig" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = reproduce.reproduce(tmp_path / "orig", tmp_path / "replica2", log=lambda *_: None)
    assert not report["match"]
    assert any("val/neg_elbo" in d for d in report["differences"])
    assert json.loads((tmp_path / "replica2" / "reproduce.json").read_text())["match"] is False


class LinearGaussian:
    """p(z) = N(0, I_2), p(x|z) = N(W z + b, s^2 I_16), with a deliberately imperfect q."""

    latent_dim = 2
    data_shape = (4, 4, 1)

    def __init__(self):
        rng = np.random.default_rng(0)
        self.W = jnp.asarray(rng.normal(size=(16, 2)) * 0.3, jnp.float32)
        self.b = jnp.asarray(rng.uniform(0.2, 0.8, size=16), jnp.float32)
        self.s2 = 0.05

    def encode(self, params, x):
        x = x.reshape(-1)
        cov = jnp.linalg.inv(jnp.eye(2) + self.W.T @ self.W / self.s2)
        mean = cov @ self.W.T @ (x - self.b) / self.s2
        # Exact posterior mean, but the diagonal of the covariance inflated: a worse q.
        return mean + 0.1, jnp.log(jnp.diag(cov) * 2.0)

    def decode(self, params, z):
        return ((self.W @ z + self.b).reshape(4, 4, 1),
                jnp.full((4, 4, 1), np.log(self.s2), jnp.float32))

    def exact_log_px(self, x_ND):
        cov = self.W @ self.W.T + self.s2 * jnp.eye(16)
        return jax.vmap(lambda x: jax.scipy.stats.multivariate_normal.logpdf(x, self.b, cov))(x_ND)


def test_iwae_estimate_of_linear_gaussian_log_likelihood(tmp_path):
    """The evaluation code path (chunked IWAE over uint8 test images) recovers log p(x)."""
    model = LinearGaussian()
    images = np.random.default_rng(1).integers(0, 256, size=(64, 4, 4, 1), dtype=np.uint8)
    log_px = evaluate.iwae_log_likelihood(
        model, None, jnp.asarray(images), jax.random.key(0), likelihood="gaussian",
        preprocessing="scale", num_samples=2000, chunk_size=250, batch_size=32)
    exact = model.exact_log_px(jnp.asarray(images.reshape(64, 16), jnp.float32) / 255.0)
    assert log_px.shape == (64,)
    assert abs(float(np.mean(log_px) - np.mean(exact))) < 0.1
    assert np.mean(log_px) <= np.mean(exact) + 0.02  # a lower bound, up to Monte Carlo noise
    # One sample: the ELBO, clearly below log p(x) for this imperfect q.
    elbo = evaluate.iwae_log_likelihood(
        model, None, jnp.asarray(images), jax.random.key(0), likelihood="gaussian",
        preprocessing="scale", num_samples=1, chunk_size=1, batch_size=32)
    assert np.mean(elbo) < np.mean(log_px) - 0.1


def test_evaluation_compiles_once_per_model_and_settings():
    """A second evaluation of the same model and settings reuses both compiled programs."""
    model = LinearGaussian()
    images = jnp.asarray(np.random.default_rng(2).integers(0, 256, (8, 4, 4, 1), dtype=np.uint8))
    program = types.SimpleNamespace(vae=model, likelihood="gaussian", preprocessing="scale")
    eval_config = config_lib.from_dict(dict(
        num_test_examples=0, batch_size=4, active_unit_threshold=0.01, iwae_samples=20,
        iwae_chunk=10, iwae_batch_size=4))

    def run(seed):
        hyper = train.Hyper(jnp.int32(seed), jnp.float32(1), jnp.float32(1e-3))
        return evaluate.test_metrics(program, None, hyper, images, eval_config, log=lambda *_: None)

    def cache_sizes():
        return evaluate._elbo_metrics._cache_size(), evaluate._iwae_batch._cache_size()

    first = run(0)
    compiled = cache_sizes()
    second = run(1)
    assert cache_sizes() == compiled
    assert compiled[0] >= 1 and compiled[1] >= 1
    # The new seed's keys were used, not a cached result.
    assert first["test/nll"] != second["test/nll"]
    assert first["test/neg_elbo"] != second["test/neg_elbo"]


def test_cli_train_eval_sample_and_errors(tmp_path, mnist_dir, capsys):
    workdir = str(tmp_path / "cli")
    args = ["train", "--config", str(REPO / "experiments" / "default.py"), "--workdir", workdir,
            "--config.data.name=mnist", f"--config.data.data_dir={mnist_dir}",
            "--config.data.num_train=512", "--config.train.epochs=1", "--config.model.hidden_sizes=(32,)",
            "--config.eval.iwae_samples=5", "--config.eval.num_test_examples=100",
            "--config.eval.figures=false"]
    assert cli.main(args) == 0
    assert (tmp_path / "cli" / "results.json").exists()
    assert cli.main(args) == 2  # the workdir exists
    assert "--resume" in capsys.readouterr().err
    assert cli.main(["eval", "--workdir", workdir, "--config.eval.iwae_samples=10"]) == 0
    assert json.loads((tmp_path / "cli" / "results.json").read_text())["iwae_samples"] == 10
    assert cli.main(["sample", "--workdir", workdir]) == 0
    assert (tmp_path / "cli" / "figures" / "prior_samples.png").exists()
    assert cli.main(args[:3] + ["--workdir", str(tmp_path / "x"), "--config.model.latent_dims=3"]) == 2
    err = capsys.readouterr().err
    assert "Unknown config key 'model.latent_dims'" in err and "model.latent_dim" in err


def test_resuming_a_finished_run_changes_nothing(trained):
    workdir, config, _ = trained
    files = ["results.json", "metrics.jsonl"]
    before = {f: ((workdir / f).read_bytes(), (workdir / f).stat().st_mtime_ns) for f in files}
    result = train.train(config, workdir, resume=True, log=lambda *_: None)
    after = {f: ((workdir / f).read_bytes(), (workdir / f).stat().st_mtime_ns) for f in files}
    assert before == after
    assert result["results"]["test/nll"] == json.loads(before["results.json"][0])["test/nll"]


def test_eight_cpu_devices_match_one(tmp_path, mnist_dir):
    """Batches sharded over a mesh axis "data" of 8 devices give one device's numbers."""
    import os
    import subprocess
    import sys

    overrides = {"train.epochs": 2, "eval.iwae_samples": 10}
    config = small_config(mnist_dir, **overrides)
    train.train(config, tmp_path / "one", log=lambda *_: None)
    code = (
        "import jax, json, sys\n"
        "assert jax.device_count() == 8\n"
        "sys.path.insert(0, {tests!r})\n"
        "from test_train import small_config\n"
        "from vaejax import train\n"
        "config = small_config({mnist!r}, **{overrides!r})\n"
        "train.train(config, {workdir!r})\n"
    ).format(tests=str(REPO / "tests"), mnist=str(mnist_dir), overrides=overrides,
             workdir=str(tmp_path / "eight"))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sharded over 8 devices" in proc.stdout
    one, eight = (comparable(records.read_metrics(tmp_path / w)) for w in ("one", "eight"))
    assert len(one) == len(eight) == 2
    for a, b in zip(one, eight):
        for key, value in a.items():
            assert b[key] == pytest.approx(value, rel=1e-4), key
    ra, rb = (json.loads((tmp_path / w / "results.json").read_text()) for w in ("one", "eight"))
    for key in ("test/neg_elbo", "test/nll", "test/rate", "test/distortion"):
        assert rb[key] == pytest.approx(ra[key], rel=1e-4), key


def test_cli_bad_settings_are_one_readable_line(tmp_path, capsys):
    args = ["train", "--config", str(REPO / "experiments" / "default.py"),
            "--workdir", str(tmp_path / "x")]
    assert cli.main(args + ["--config.data.name=imagenet"]) == 2
    assert "Unknown dataset 'imagenet'" in capsys.readouterr().err
