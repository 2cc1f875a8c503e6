"""AIS, BDMC and the inference-gap split against models whose log p(x) is exact.

Linear-Gaussian: z ~ N(0, I_2), x | z ~ N(W z + b, σ² I_3) with W's columns orthogonal, so
p(x) = N(b, W Wᵀ + σ² I) and the posterior N(m, S) is diagonal: the diagonal-Gaussian family
holds it, and the approximation gap of q* is zero. A one-dimensional mixture prior gives a
bimodal posterior that no Gaussian holds: its gap is positive, and equals KL(q* || p(z|x))
computed by quadrature on a grid.
"""

import math

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vaejax
from run_helpers import Killed, dies_after
from vaejax.distributions import DiagGaussian, StandardNormal

SIGMA = 0.5
W = jnp.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]]) * 1.5  # orthogonal columns
B = jnp.array([0.3, -0.2, 0.1])
X = jnp.array([1.2, -2.0, 0.4])


def decode(z):
    return DiagGaussian(W @ z + B, jnp.full(3, 2 * math.log(SIGMA)))


def exact_log_px(x):
    cov = W @ W.T + SIGMA**2 * jnp.eye(3)
    return jax.scipy.stats.multivariate_normal.logpdf(x, B, cov)


def exact_posterior(x):
    precision = jnp.eye(2) + W.T @ W / SIGMA**2
    cov = jnp.linalg.inv(precision)
    return cov @ W.T @ (x - B) / SIGMA**2, jnp.diag(cov)


PRIOR = StandardNormal((2,))


def _stderr(log_w):
    """Standard error of log-mean-exp(log_w) by the delta method: sd(w) / (mean(w) √C)."""
    w = np.exp(np.asarray(log_w) - np.max(log_w))
    return float(np.std(w, ddof=1) / np.mean(w) / math.sqrt(len(w)))


def test_ais_converges_to_the_exact_log_likelihood():
    exact = float(exact_log_px(X))
    errors = {}
    for steps in (5, 400):
        estimate, log_w = vaejax.ais_log_prob(jax.random.key(0), X, decode, prior=PRIOR,
                                              num_steps=steps, num_chains=64,
                                              return_log_weights=True)
        errors[steps] = abs(float(estimate) - exact)
        if steps == 400:
            assert errors[steps] < max(3 * _stderr(log_w), 0.02), (estimate, exact, _stderr(log_w))
    assert errors[400] < errors[5]
    # IWAE with the prior as proposal at the same number of density evaluations is far looser
    iwae, _ = vaejax.iwae_bound(jax.random.key(1), X, lambda _: (jnp.zeros(2), jnp.zeros(2)),
                                decode, num_samples=64)
    assert exact - float(iwae) > 5 * errors[400]


def test_ais_from_the_exact_posterior_has_zero_variance_weights():
    """Started at p(z|x) itself, every intermediate distribution is p(z|x) and every weight is
    log p(x) exactly: a check of the weight bookkeeping."""
    mean, var = exact_posterior(X)
    estimate, log_w = vaejax.ais_log_prob(jax.random.key(2), X, decode, prior=PRIOR, num_steps=20,
                                          num_chains=8, initial=DiagGaussian(mean, jnp.log(var)),
                                          return_log_weights=True)
    np.testing.assert_allclose(log_w, exact_log_px(X), atol=1e-4)


def test_bdmc_brackets_the_exact_log_likelihood_and_closes_as_steps_grow():
    keys = jax.random.split(jax.random.key(3), 8)
    gaps = {}
    for steps in (10, 300):
        x, lower, upper = jax.vmap(lambda k: vaejax.bdmc(k, decode, prior=PRIOR, num_steps=steps,
                                                           num_chains=16))(keys)
        exact = jax.vmap(exact_log_px)(x)
        assert float(jnp.mean(lower)) <= float(jnp.mean(exact)) + 1e-3
        assert float(jnp.mean(upper)) >= float(jnp.mean(exact)) - 1e-3
        gaps[steps] = float(jnp.mean(upper - lower))
    assert 0 <= gaps[300] < gaps[10] and gaps[300] < 0.05, gaps


def test_a_vmapped_batch_equals_each_example_alone_and_the_key_decides():
    xs = jnp.stack([X, X + 0.5, X - 1.0])
    key = jax.random.key(4)
    batch = vaejax.batch_ais_log_prob(key, xs, decode, prior=PRIOR, num_steps=30, num_chains=4)
    alone = [vaejax.ais_log_prob(k, x, decode, prior=PRIOR, num_steps=30, num_chains=4)
             for k, x in zip(jax.random.split(key, 3), xs)]
    np.testing.assert_allclose(batch, alone, rtol=1e-5, atol=1e-5)
    again = vaejax.batch_ais_log_prob(key, xs, decode, prior=PRIOR, num_steps=30, num_chains=4)
    np.testing.assert_array_equal(batch, again)


def test_ais_takes_pytree_latents():
    """A latent {"a": (1,), "b": (1,)}: the same model as the 2-D one, split in two."""
    class Split:
        def sample(self, *, seed, sample_shape=()):
            z = PRIOR.sample(seed=seed, sample_shape=sample_shape)
            return {"a": z[..., :1], "b": z[..., 1:]}

        def log_prob(self, z):
            return PRIOR.log_prob(jnp.concatenate([z["a"], z["b"]], -1))

    estimate = vaejax.ais_log_prob(jax.random.key(5), X,
                                   lambda z: decode(jnp.concatenate([z["a"], z["b"]], -1)),
                                   prior=Split(), num_steps=100, num_chains=8)
    flat = vaejax.ais_log_prob(jax.random.key(5), X, decode, prior=PRIOR, num_steps=100,
                               num_chains=8)
    np.testing.assert_allclose(estimate, flat, rtol=1e-5)  # the same chains, split in two


def test_the_local_optimum_closes_the_gap_when_the_posterior_is_in_the_family():
    """q* from a poor start: its ELBO reaches log p(x) (approximation gap 0), and the split
    of a poor encoder's gap puts it all in amortization."""
    init = (jnp.zeros(2), jnp.zeros(2))  # a poor encoder: the prior
    params, elbo_local = vaejax.optimize_local_posterior(
        jax.random.key(6), X, decode, prior=PRIOR, init=init, num_steps=1500,
        learning_rate=5e-2, eval_samples=20_000)
    mean, var = exact_posterior(X)
    np.testing.assert_allclose(params[0], mean, atol=0.02)
    np.testing.assert_allclose(jnp.exp(params[1]), var, rtol=0.05)
    elbo_encoder, _ = vaejax.elbo(jax.random.key(7), X, lambda _: init, decode, num_samples=20_000)
    gaps = vaejax.split_gap(exact_log_px(X), elbo_encoder, elbo_local)
    assert abs(float(gaps["approximation"])) < 0.02, gaps
    assert float(gaps["amortization"]) > 1.0
    np.testing.assert_allclose(gaps["inference"], gaps["approximation"] + gaps["amortization"],
                               rtol=1e-6)


def test_the_approximation_gap_of_a_bimodal_posterior_is_the_kl_by_quadrature(allow_rank_promotion):
    """p(z) = ½ N(−2, 0.5²) + ½ N(2, 0.5²), x | z ~ N(z, 1), x = 0.3: p(z|x) has two modes.
    A Gaussian q* leaves a positive gap, equal to KL(q* || p(z|x)) on a fine grid."""
    prior = distrax.MixtureSameFamily(distrax.Categorical(logits=jnp.zeros(2)),
                                      distrax.MultivariateNormalDiag(jnp.array([[-2.0], [2.0]]),
                                                                     jnp.full((2, 1), 0.5)))
    x = jnp.array([0.3])

    def decode_1d(z):
        return DiagGaussian(z, jnp.zeros(1))

    grid = jnp.linspace(-8, 8, 40_001)[:, None]
    log_joint = jax.vmap(lambda z: decode_1d(z).log_prob(x) + prior.log_prob(z))(grid)
    dz = float(grid[1, 0] - grid[0, 0])
    log_px = jax.nn.logsumexp(log_joint) + math.log(dz)
    params, elbo_local = vaejax.optimize_local_posterior(
        jax.random.key(8), x, decode_1d, prior=prior, init=(jnp.array([0.5]), jnp.zeros(1)),
        num_steps=2000, learning_rate=5e-2, eval_samples=50_000)
    q = DiagGaussian(*params)
    log_q = jax.vmap(q.log_prob)(grid)
    kl = float(jnp.sum(jnp.exp(log_q) * (log_q - (log_joint - log_px))) * dz)
    gap = float(log_px - elbo_local)
    assert kl > 0.1
    assert abs(gap - kl) < 0.02, (gap, kl)
    # and AIS recovers log p(x) where the Gaussian cannot
    ais = vaejax.ais_log_prob(jax.random.key(9), x, decode_1d, prior=prior, num_steps=500,
                              num_chains=32)
    assert abs(float(ais) - float(log_px)) < 0.05 < gap


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="Unknown annealing schedule 'cosine'"):
        vaejax.ais_log_prob(jax.random.key(0), X, decode, prior=PRIOR, num_steps=3, num_chains=2,
                            schedule="cosine")
    with pytest.raises(ValueError, match="num_steps=0 must be >= 1"):
        vaejax.ais_log_prob(jax.random.key(0), X, decode, prior=PRIOR, num_steps=0, num_chains=2)


# -- AIS and the gap split of a trained run (vaejax eval) -------------------------------------

def test_an_interrupted_ais_evaluation_continues_where_it_stopped(trained, tmp_path):
    """Killed after 2 of 3 batches, AIS with the gap split continues from its saved batches
    and ends bitwise equal to an uninterrupted evaluation."""
    from vaejax import evaluate  # noqa: PLC0415

    workdir, _, _ = trained
    run = vaejax.load_run(workdir, log=lambda *_: None)
    test = run.splits.test.take(slice(0, 6))
    settings = dict(data_shape=run.program.data_shape, preprocessing=run.program.preprocessing,
                    num_steps=10, num_chains=2, gap_steps=5, batch_size=2)
    key = jax.random.key(11)
    whole = evaluate.ais_log_likelihood(run.model, run.params, test, key, **settings)
    assert whole.shape == (3, 6)
    partial = tmp_path / "eval.ais.partial.npz"
    with pytest.raises(Killed):
        evaluate.ais_log_likelihood(run.model, run.params, test, key, **settings,
                                    progress=dies_after(2), partial_file=partial, save_every=0)
    seen = []
    resumed = evaluate.ais_log_likelihood(run.model, run.params, test, key, **settings,
                                          progress=seen.append, partial_file=partial)
    assert seen == [4, 2]
    np.testing.assert_array_equal(resumed, whole)
    assert not partial.exists()


@pytest.mark.slow
def test_vaejax_eval_adds_ais_and_the_gap_split_to_results(trained, tmp_path):
    """`vaejax eval --config.eval.ais_steps=...` on a trained run: AIS's NLL is below the IWAE
    NLL of the same examples (a tighter bound), and the gaps add up."""
    import shutil  # noqa: PLC0415

    from vaejax import cli, records  # noqa: PLC0415

    workdir, _, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy)
    code = cli.main(["eval", "--workdir", str(copy), "--config.eval.ais_steps=200",
                     "--config.eval.ais_chains=8", "--config.eval.ais_num_examples=20",
                     "--config.eval.gap_steps=200", "--config.eval.iwae_samples=100",
                     "--config.eval.bdmc_examples=4"])
    assert code == 0
    results = records.read_json(copy / records.RESULTS)
    assert results["ais_num_examples"] == 20 and results["ais_steps"] == 200
    assert results["test/ais_nll"] < results["test/iwae_nll_subset"]
    np.testing.assert_allclose(results["test/ais_gain"],
                               results["test/iwae_nll_subset"] - results["test/ais_nll"], rtol=1e-4)
    assert results["test/ais_gain_stderr"] > 0
    np.testing.assert_allclose(results["test/gap_inference"],
                               results["test/gap_approximation"] + results["test/gap_amortization"],
                               rtol=1e-5)
    assert results["test/gap_amortization"] > 0
    assert results["bdmc_examples"] == 4 and results["bdmc/lower"] <= results["bdmc/upper"]


def test_ais_settings_without_ais_are_refused(tmp_path):
    from vaejax import config as config_lib  # noqa: PLC0415
    from vaejax import program as program_lib  # noqa: PLC0415
    from run_helpers import REPO  # noqa: PLC0415

    config = config_lib.load_config(REPO / "experiments" / "default.py", ["eval.gap_steps=100"])
    with pytest.raises(ValueError, match=r"eval.gap_steps=100 is read only with eval.ais_steps > 0"):
        program_lib.check_new_run(config)


def test_the_ais_against_iwae_benchmark_reads_equal_time_and_equal_accuracy():
    """benchmarks/ais_vs_iwae.py's reading of its measurements, on constructed ones: the IWAE
    setting paired with each AIS setting is the closest in seconds, and "equal accuracy" is the
    cheapest setting within 0.1 nats of the reference (the AIS setting with most steps)."""
    import importlib.util

    from run_helpers import REPO

    spec = importlib.util.spec_from_file_location("ais_vs_iwae", REPO / "benchmarks" / "ais_vs_iwae.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    reference = np.array([-80.0, -90.0])

    def row(estimator, setting, seconds, below):
        return {"estimator": estimator, "setting": setting, "seconds": seconds,
                "log_px": reference - below}

    rows = [row("IWAE", "K=100", 0.01, 1.0), row("IWAE", "K=5,000", 0.2, 0.3),
            row("IWAE", "K=100,000", 4.0, 0.25), row("AIS", "10 steps", 0.1, 0.4),
            row("AIS", "100 steps", 1.0, 0.05), row("AIS", "1000 steps", 10.0, 0.0)]
    text = bench.table(rows, "a constructed model")
    assert "AIS 10 steps (0.100 s) against IWAE K=5,000 (0.200 s): IWAE is tighter by 0.10" in text
    assert "AIS 100 steps (1.000 s) against IWAE K=100,000 (4.000 s): AIS is tighter by 0.20" in text
    assert "AIS 1000 steps (10.000 s) against IWAE K=100,000 (4.000 s): AIS is tighter by 0.25" in text
    assert "- IWAE: none of the settings run; the closest, K=100,000 (4.000 s), is 0.25 nats below." in text
    assert "- AIS: 100 steps, 1.000 s per image." in text
    assert "| IWAE | K=100 | 0.010 | -86.00 | 1.00 ± 0.00 |" in text


def test_the_ais_against_iwae_benchmark_times_per_image(monkeypatch):
    """`measure` divides each setting's seconds by the number of images (an `Examples` has
    three fields, so len() of it is not that number): with a clock that advances one second
    per reading, every timed call takes 1 s, so 5 images take 0.2 s each."""
    import importlib.util
    import itertools

    from run_helpers import REPO
    from tiny import IMAGE_SHAPE, images, tiny_config
    from vaejax.data import Examples
    from vaejax.program import Program

    spec = importlib.util.spec_from_file_location("ais_vs_iwae", REPO / "benchmarks" / "ais_vs_iwae.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    program = Program.build(tiny_config(), IMAGE_SHAPE, 64)
    params = program.model.init(jax.random.key(0))
    clock = itertools.count()
    monkeypatch.setattr(bench, "clock", lambda: float(next(clock)))
    rows = bench.measure(program, params, Examples(jnp.asarray(images(5))), iwae_samples=(10,),
                         ais_steps=(2,), log=lambda *_: None)
    assert [r["estimator"] for r in rows] == ["IWAE", "AIS"]
    for row in rows:
        assert row["seconds"] == pytest.approx(0.2) and row["log_px"].shape == (5,)
