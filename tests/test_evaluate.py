"""`vaejax.evaluate`: results of a real run, IWAE against an exact log-likelihood, compile-once."""

import json
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from run_helpers import Killed, dies_after
from vaejax import distributions, evaluate
from vaejax import metrics as metrics_lib
from vaejax import config as config_lib



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


class LinearGaussian:
    """p(z) = N(0, I_2), p(x|z) = N(W z + b, s^2 I_16), with a deliberately imperfect q."""

    latent_dim = 2
    data_shape = (4, 4, 1)

    def __init__(self):
        rng = np.random.default_rng(0)
        self.W = jnp.asarray(rng.normal(size=(16, 2)) * 0.3, jnp.float32)
        self.b = jnp.asarray(rng.uniform(0.2, 0.8, size=16), jnp.float32)
        self.s2 = 0.05

    def init(self, key):
        return {}

    def posterior(self, params, x):
        x = x.reshape(-1)
        cov = jnp.linalg.inv(jnp.eye(2) + self.W.T @ self.W / self.s2)
        mean = cov @ self.W.T @ (x - self.b) / self.s2
        # Exact posterior mean, but the diagonal of the covariance inflated: a worse q.
        return distributions.DiagGaussian(mean + 0.1, jnp.log(jnp.diag(cov) * 2.0))

    def prior(self, params):
        return distributions.StandardNormal((2,))

    def likelihood(self, params, z):
        return distributions.DiagGaussian((self.W @ z + self.b).reshape(4, 4, 1),
                                          jnp.full((4, 4, 1), np.log(self.s2), jnp.float32))

    def exact_log_px(self, x_ND):
        cov = self.W @ self.W.T + self.s2 * jnp.eye(16)
        return jax.vmap(lambda x: jax.scipy.stats.multivariate_normal.logpdf(x, self.b, cov))(x_ND)


def test_iwae_estimate_of_linear_gaussian_log_likelihood(tmp_path):
    """The evaluation code path (chunked IWAE over uint8 test images) recovers log p(x)."""
    model = LinearGaussian()
    images = np.random.default_rng(1).integers(0, 256, size=(64, 4, 4, 1), dtype=np.uint8)
    log_px = evaluate.iwae_log_likelihood(
        model, None, jnp.asarray(images), jax.random.key(0), data_shape=model.data_shape,
        preprocessing="scale", num_samples=2000, chunk_size=250, batch_size=32)
    exact = model.exact_log_px(jnp.asarray(images.reshape(64, 16), jnp.float32) / 255.0)
    assert log_px.shape == (64,)
    assert abs(float(np.mean(log_px) - np.mean(exact))) < 0.1
    assert np.mean(log_px) <= np.mean(exact) + 0.02  # a lower bound, up to Monte Carlo noise
    # One sample: the ELBO, clearly below log p(x) for this imperfect q.
    elbo = evaluate.iwae_log_likelihood(
        model, None, jnp.asarray(images), jax.random.key(0), data_shape=model.data_shape,
        preprocessing="scale", num_samples=1, chunk_size=1, batch_size=32)
    assert np.mean(elbo) < np.mean(log_px) - 0.1


def test_evaluation_compiles_once_per_model_and_settings():
    """A second evaluation of the same model and settings reuses both compiled programs."""
    model = LinearGaussian()
    images = jnp.asarray(np.random.default_rng(2).integers(0, 256, (8, 4, 4, 1), dtype=np.uint8))
    program = types.SimpleNamespace(model=model, data_shape=model.data_shape, preprocessing="scale")
    eval_config = config_lib.from_dict(dict(
        num_test_examples=0, batch_size=4, active_unit_threshold=0.01, iwae_samples=20,
        iwae_chunk=10, iwae_batch_size=4))

    def run(seed):
        hyper = {"seed": jnp.int32(seed), "learning_rate": jnp.float32(1e-3)}
        return evaluate.test_metrics(program, None, hyper, images, eval_config, log=lambda *_: None)

    def cache_sizes():
        return metrics_lib.compiled_elbo_metrics._cache_size(), metrics_lib.compiled_iwae_batch._cache_size()

    first = run(0)
    compiled = cache_sizes()
    second = run(1)
    assert cache_sizes() == compiled
    assert compiled[0] >= 1 and compiled[1] >= 1
    # The new seed's keys were used, not a cached result.
    assert first["test/nll"] != second["test/nll"]
    assert first["test/neg_elbo"] != second["test/neg_elbo"]


def test_a_kept_checkpoint_is_evaluated_beside_a_training_run(tmp_path, mnist_dir, capsys):
    """`vaejax eval --epoch E` on a kept checkpoint writes evals/, not results.json; the last
    epoch's evaluation equals the one at the end of training; the workdir's lock (a training
    run) does not stop it; an epoch not kept is a one-line error naming the kept ones."""
    from run_helpers import small_config

    from vaejax import cli, locking, records, train

    config = small_config(mnist_dir, **{"train.epochs": 4, "train.keep_every": 2,
                                        "train.keep_checkpoints": 1})
    workdir = tmp_path / "run"
    train.train(config, workdir, log=lambda *_: None)
    final = records.read_json(workdir / records.RESULTS)
    with locking.hold(workdir, "a training run"):
        assert cli.main(["eval", "--workdir", str(workdir), "--epoch", "4"]) == 0
        assert cli.main(["eval", "--workdir", str(workdir), "--epoch", "2",
                         "--config.eval.iwae_samples=10"]) == 0
    evals = evaluate.read_checkpoint_evals(workdir)
    assert [(e["epoch"], e["iwae_samples"]) for e in evals] == [(2, 10), (4, 20)]
    assert [e["step"] for e in evals] == [r["step"] for r in records.read_metrics(workdir)][1::2]
    for key in ("test/nll", "test/neg_elbo", "active_units"):
        assert evals[1][key] == pytest.approx(final[key], rel=1e-6)
    assert records.read_json(workdir / records.RESULTS) == final
    assert (workdir / "evals" / "epoch-000002_k10_n200.json").exists()
    capsys.readouterr()
    assert cli.main(["eval", "--workdir", str(workdir), "--epoch", "3"]) == 2
    assert "keeps no checkpoint of epoch 3; it keeps [2, 4]" in capsys.readouterr().err


def test_an_interrupted_iwae_evaluation_continues_where_it_stopped(trained, tmp_path):
    """Killed after 3 of 5 batches, the evaluation continues from its saved batches and ends
    bitwise equal to an uninterrupted one; saved batches of other settings are ignored."""
    import vaejax

    workdir, _, _ = trained
    run = vaejax.load_run(workdir, log=lambda *_: None)
    test = run.splits.test.take(slice(0, 50))
    settings = dict(data_shape=run.program.data_shape, preprocessing=run.program.preprocessing,
                    num_samples=20, chunk_size=10, batch_size=10)
    key = jax.random.key(7)
    whole = evaluate.iwae_log_likelihood(run.model, run.params, test, key, **settings)
    partial = tmp_path / "eval.partial.npz"
    with pytest.raises(Killed):
        evaluate.iwae_log_likelihood(run.model, run.params, test, key, **settings,
                                     progress=dies_after(3), partial_file=partial, save_every=0)
    assert partial.exists()
    with pytest.raises(Killed):  # other K: the saved batches are not reused, and are replaced
        evaluate.iwae_log_likelihood(run.model, run.params, test, key, **{**settings, "num_samples": 10},
                                     progress=dies_after(3), partial_file=partial, save_every=0)
    with pytest.raises(Killed):
        evaluate.iwae_log_likelihood(run.model, run.params, test, key, **settings,
                                     progress=dies_after(3), partial_file=partial, save_every=0)
    # a kill while the file was being saved leaves its writer's temporary: removed on resume
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    torn = tmp_path / f".{partial.name}.{gone}.tmp"
    other = tmp_path / f".results.json.{gone}.tmp"  # not this evaluation's: left alone
    for path in (torn, other):
        path.write_bytes(b"torn")
    seen = []
    resumed = evaluate.iwae_log_likelihood(run.model, run.params, test, key, **settings,
                                           progress=seen.append, partial_file=partial)
    assert seen == [30, 10, 10]  # the three saved batches at once, then the two left
    np.testing.assert_array_equal(resumed, whole)
    assert not partial.exists() and not torn.exists() and other.exists()


def test_evaluation_progress_in_a_log_file_is_lines_with_the_time_left(monkeypatch):
    """Outside a terminal (nohup, Slurm) the IWAE evaluation reports lines, not a tqdm bar
    whose carriage returns pile up into one line of the log."""
    from vaejax import progress as progress_lib  # noqa: PLC0415

    lines = []
    progress = progress_lib.ProgressLines("eval IWAE K=250", 1000, log=lines.append)
    progress.update(100)
    assert lines == []  # within PROGRESS_INTERVAL of the start
    monkeypatch.setattr(progress_lib, "PROGRESS_INTERVAL", 0.0)
    progress.update(150)
    assert len(lines) == 1 and lines[0].startswith("eval IWAE K=250: 250/1,000 examples (25%), ")
    assert "examples/s, done in " in lines[0]
    progress.update(750)
    assert len(lines) == 1  # the last batch: the results line says it

    # a resumed evaluation restores 900 examples at once: the rate counts only what follows
    resumed = progress_lib.ProgressLines("eval", 1000, log=lines.append)
    resumed.update(900)
    resumed._first = (resumed._first[0] - 10.0, resumed._first[1])  # 10 s ago
    resumed.update(50)
    rate = float(lines[-1].split("examples/s")[0].split(", ")[-1])
    assert lines[-1].startswith("eval: 950/1,000 examples (95%)") and 4.0 < rate < 6.0


def test_active_units_match_an_independent_numpy_computation():
    """posterior_mean_variance is Cov_x(E_q[z_d]) over the examples (population variance), and
    active_units counts the dimensions above the threshold: recomputed here with numpy from
    the encoder's weights, on deterministically thresholded images."""
    from vaejax import models  # noqa: PLC0415

    model = models.build(dict(kind="mlp", latent_dim=6, hidden_sizes=(16,)), (4, 4, 1))
    params = model.init(jax.random.key(0))
    images = np.random.default_rng(3).integers(0, 256, (40, 4, 4, 1), dtype=np.uint8)
    x = (images.reshape(40, 16) > 127).astype(np.float64)  # preprocessing "threshold"
    enc = jax.tree.map(lambda a: np.asarray(a, np.float64), params["encoder"])
    hidden = np.maximum(x @ enc["Dense_0"]["kernel"] + enc["Dense_0"]["bias"], 0.0)
    means = (hidden @ enc["Dense_1"]["kernel"] + enc["Dense_1"]["bias"])[:, :6]
    variance = means.var(axis=0)
    threshold = float(np.median(variance))  # half the units above it
    metrics = metrics_lib.elbo_metrics(model, params, jnp.asarray(images), jax.random.key(1),
                                    data_shape=model.data_shape, preprocessing="threshold",
                                    batch_size=16, threshold=threshold)
    np.testing.assert_allclose(metrics["posterior_mean_variance"], variance, rtol=2e-4, atol=1e-7)
    assert int(metrics["active_units"]) == int(np.sum(variance > threshold)) == 3
