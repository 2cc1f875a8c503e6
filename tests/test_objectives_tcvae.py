"""`vaejax.objectives.tcvae`: the minibatch estimators against exact MI, TC and DimKL on a small
dataset (NumPy float64), the decomposition identity, traced weights, distrax/TFP posteriors,
per-dimension log-densities, readable errors, and the `TCVAE` training objective."""
import dataclasses
import functools
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from vaejax import distributions
from vaejax import models
from vaejax.objectives import bounds
from vaejax.objectives import tcvae

import distrax  # after vaejax, which keeps distrax importable on current JAX
from tensorflow_probability.substrates import jax as tfp

tfd = tfp.distributions

# A dataset of N points in R^4 and a linear Gaussian encoder q(z|x) = N(A x + b, diag(s^2)), Z = 3.
# z_1 and z_2 share their inputs, so the aggregate posterior q(z) = (1/N) sum_n q(z|x_n) is far
# from the product of its marginals: TC > 1 nat. A Gaussian decoder p(x|z) = N(C z + c, e^lv I).
N, D, Z = 64, 4, 3


@functools.lru_cache(maxsize=None)
def dataset():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D))
    a = np.array([[1.5, 1.0, 0.0, 0.0], [1.0, 1.5, 0.0, 0.0], [0.0, 0.5, 0.0, 1.5]])
    b = np.array([0.5, -0.5, 0.0])
    s = np.array([0.3, 0.4, 0.5])
    c_DxZ = rng.normal(size=(D, Z))
    with jax.ensure_compile_time_eval():  # concrete arrays, even if first called inside jit
        params = {name: jnp.asarray(v, jnp.float32) for name, v in
                  (("a", a), ("b", b), ("logvar", 2 * np.log(s)), ("c", c_DxZ), ("c0", np.zeros(D)))}
    return types.SimpleNamespace(x=x, a=a, b=b, s=s, c=c_DxZ, mean=x @ a.T + b, x32=x.astype(np.float32),
                                 params=params)


def encoder(params):
    return lambda x: (params["a"] @ x + params["b"], params["logvar"])


def decoder(params):
    return lambda z: (params["c"] @ z + params["c0"], jnp.float32(0.0))


def run(key, x, params=None, **kw):
    params = dataset().params if params is None else params
    return tcvae.batch_tcvae(key, x, encoder(params), decoder(params), dataset_size=N,
                             likelihood="gaussian", **kw)


@jax.jit
def both_samplings(key, x, alpha=1.0, beta=1.0, gamma=1.0):
    """{sampling: run(...)}, compiled once per batch shape for the tests (compiling dominates their time)."""
    return {s: run(key, x, sampling=s, alpha=alpha, beta=beta, gamma=gamma) for s in tcvae.SAMPLINGS}


def _log_normal(z, mean, s):
    return -0.5 * (math.log(2 * math.pi) + 2 * np.log(s) + ((z - mean) / s) ** 2)


@functools.lru_cache(maxsize=None)
def exact_terms(draws_per_point=250):
    """MI, TC, DimKL (and their Monte Carlo standard errors) of the whole dataset, in float64.

    q(z) and q(z_d) are exact mixtures over all N points; E log q(z|x) and E log p(z) are in
    closed form; only the expectations of log q(z) and log q(z_d) over z ~ q(z|x_n) are sampled.
    """
    ds = dataset()
    rng = np.random.default_rng(1)
    z_KxZ = (ds.mean[:, None, :] + ds.s * rng.normal(size=(N, draws_per_point, Z))).reshape(-1, Z)
    log_q_KxNxZ = _log_normal(z_KxZ[:, None, :], ds.mean[None], ds.s)
    log_qz_K = logsumexp(log_q_KxNxZ.sum(-1), axis=1) - math.log(N)
    log_prod_qzd_K = np.sum(logsumexp(log_q_KxNxZ, axis=1) - math.log(N), axis=-1)
    expected_log_qzx = -0.5 * np.sum(math.log(2 * math.pi) + 2 * np.log(ds.s) + 1.0)
    expected_log_pz = -0.5 * np.mean(np.sum(math.log(2 * math.pi) + ds.mean**2 + ds.s**2, axis=1))
    terms = {"mi": expected_log_qzx - log_qz_K, "tc": log_qz_K - log_prod_qzd_K,
             "dim_kl": log_prod_qzd_K - expected_log_pz}
    return {name: (v.mean(), v.std() / math.sqrt(v.size)) for name, v in terms.items()}


def _minibatch_terms(batch_size, num_batches, seed):
    """Mean and standard error over random minibatches (without replacement) of each estimator."""
    rng = np.random.default_rng(seed)
    index_RxB = np.argsort(rng.random((num_batches, N)), axis=1)[:, :batch_size]

    def one(key, index_B):
        x = jnp.asarray(dataset().x32)[index_B]
        return {sampling: run(key, x, sampling=sampling)[1] for sampling in tcvae.SAMPLINGS}

    aux = jax.device_get(jax.jit(lambda key, index_RxB: jax.lax.map(
            lambda a: one(jax.random.fold_in(key, a[0]), a[1]), (jnp.arange(num_batches), index_RxB)))(
            jax.random.key(seed), index_RxB))
    return {(sampling, name): (float(np.mean(aux[sampling][name])),
                               float(np.std(aux[sampling][name]) / math.sqrt(num_batches)))
            for sampling in tcvae.SAMPLINGS for name in ("mi", "tc", "dim_kl")}


def test_minibatch_estimators_converge_to_the_exact_terms():
    exact = exact_terms()
    assert exact["tc"][0] > 1.0 and exact["mi"][0] > 3.0  # correlated latents, informative codes
    results = {batch_size: _minibatch_terms(batch_size, num_batches, seed=batch_size)
               for batch_size, num_batches in ((8, 2000), (32, 1000), (N, 500))}
    for sampling in tcvae.SAMPLINGS:
        for name, (truth, truth_se) in exact.items():
            small, mid, whole = (results[b][sampling, name] for b in (8, 32, N))
            label = f"{sampling} {name}: B=8 {small}, B=32 {mid}, B=N {whole}, exact {truth:.4f}"
            bias = {b: abs(m - truth) for b, (m, _) in zip((8, 32, N), (small, mid, whole))}
            # The bias falls with the batch size: at B=N (the batch is the dataset) none is left.
            assert bias[8] > bias[32] + 4 * math.hypot(small[1], mid[1]), label
            assert bias[N] < 4 * math.hypot(whole[1], truth_se) + 1e-3, label
            assert bias[32] > bias[N] or bias[32] < 4 * math.hypot(mid[1], truth_se), label
    # At B=8 the estimators are far off, in opposite directions for MI: MWS weighs z_i's own
    # posterior 1/B > 1/N (qhat too high, MI too low); MSS is unbiased for q(z), so by Jensen
    # E log qhat < log q (MI too high).
    assert results[8]["mws", "mi"][0] < exact["mi"][0] - 1.0
    assert results[8]["mss", "mi"][0] > exact["mi"][0] + 0.2


def _numpy_batch_terms(key, index_B, sampling, weights=(1.0, 1.0, 1.0)):
    """The estimators written out in float64 for one batch, with the draws z_i of `key`."""
    ds = dataset()
    batch_size = len(index_B)
    eps = np.stack([np.asarray(jax.random.normal(k, (Z,)), np.float64)
                    for k in jax.random.split(key, batch_size)])
    mean_BxZ = ds.mean[index_B]
    z_BxZ = mean_BxZ + ds.s * eps
    log_q_BxBxZ = _log_normal(z_BxZ[:, None, :], mean_BxZ[None], ds.s)
    if sampling == "mws":
        w = np.full((batch_size, batch_size), 1.0 / batch_size)
    else:
        w = np.full((batch_size, batch_size), (N - 1) / (N * (batch_size - 1)))
        np.fill_diagonal(w, 1.0 / N)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    log_qzx = np.diagonal(log_q_BxBxZ.sum(-1))
    log_qz = np.log(np.sum(w * np.exp(log_q_BxBxZ.sum(-1)), axis=1))
    log_prod_qzd = np.sum(np.log(np.sum(w[:, :, None] * np.exp(log_q_BxBxZ), axis=1)), axis=-1)
    log_pz = np.sum(-0.5 * (math.log(2 * math.pi) + z_BxZ**2), axis=1)
    residual = ds.x[index_B] - z_BxZ @ ds.c.T
    reconstruction = np.mean(np.sum(-0.5 * (math.log(2 * math.pi) + residual**2), axis=1))
    out = {"reconstruction": reconstruction, "mi": np.mean(log_qzx - log_qz),
           "tc": np.mean(log_qz - log_prod_qzd), "dim_kl": np.mean(log_prod_qzd - log_pz),
           "kl": np.mean(log_qzx - log_pz)}
    out["elbo"] = reconstruction - out["kl"]
    alpha, beta, gamma = weights
    return reconstruction - alpha * out["mi"] - beta * out["tc"] - gamma * out["dim_kl"], out


def test_one_batch_matches_the_formulas_in_numpy():
    key, index_B = jax.random.key(3), np.random.default_rng(3).permutation(N)[:16]
    weights = (0.5, 3.0, 2.0)
    for sampling, (value, aux) in both_samplings(key, dataset().x32[index_B], *weights).items():
        expected_value, expected = _numpy_batch_terms(key, index_B, sampling, weights)
        assert set(aux) == set(expected)
        for name in expected:
            np.testing.assert_allclose(aux[name], expected[name], rtol=1e-4, atol=1e-4, err_msg=(sampling, name))
        np.testing.assert_allclose(value, expected_value, rtol=1e-4, atol=1e-4, err_msg=sampling)


def _check_decomposition(value, aux):
    np.testing.assert_allclose(aux["mi"] + aux["tc"] + aux["dim_kl"], aux["kl"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(value, aux["reconstruction"] - aux["kl"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(aux["elbo"], aux["reconstruction"] - aux["kl"], rtol=1e-6)


def test_terms_sum_to_the_monte_carlo_kl_and_unit_weights_give_the_elbo():
    rng = np.random.default_rng(4)
    for seed in range(6):  # any batch, any key
        x = dataset().x32[rng.permutation(N)[:16]]
        for value, aux in both_samplings(jax.random.key(seed), x).values():
            _check_decomposition(value, aux)
    # The same key gives the same draws as the Monte Carlo ELBO of `bounds.batch_elbo`; any prior.
    prior = distributions.DiagGaussian(jnp.array([0.3, -0.2, 0.1]), jnp.array([0.5, -0.3, 0.0]))
    params = dataset().params
    (value, aux), (elbo, elbo_aux) = jax.jit(lambda k, x: (
            run(k, x, sampling="mss", prior=prior),
            bounds.batch_elbo(k, x, encoder(params), decoder(params), likelihood="gaussian", prior=prior,
                              analytic_kl=False)))(jax.random.key(7), x)
    _check_decomposition(value, aux)
    np.testing.assert_allclose(value, elbo, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(aux["kl"], elbo_aux["kl"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(aux["reconstruction"], elbo_aux["reconstruction"], rtol=1e-5, atol=1e-4)


def test_weights_are_traced_vmappable_and_differentiable():
    key, x = jax.random.key(5), dataset().x32[:16]
    weights_Wx3 = jnp.array([[1.0, 1.0, 1.0], [0.0, 6.0, 1.0], [2.0, 0.5, 0.0]])

    def objective(params, weights):
        return run(key, x, params, sampling="mss", alpha=weights[0], beta=weights[1], gamma=weights[2])

    sweep = jax.jit(jax.vmap(jax.value_and_grad(objective, argnums=(0, 1), has_aux=True), in_axes=(None, 0)))
    (values, aux), (grads, d_weights_Wx3) = sweep(dataset().params, weights_Wx3)
    terms_Wx3 = np.stack([aux["mi"], aux["tc"], aux["dim_kl"]], axis=1)
    for i, weights in enumerate(weights_Wx3.tolist()):
        np.testing.assert_allclose(values[i], both_samplings(key, x, *weights)["mss"][0], rtol=1e-5)
        np.testing.assert_allclose(values[i], aux["reconstruction"][i] - terms_Wx3[i] @ np.array(weights), rtol=1e-5)
    np.testing.assert_allclose(terms_Wx3, np.broadcast_to(terms_Wx3[0], (3, 3)), rtol=1e-6)  # weights only weigh
    np.testing.assert_allclose(d_weights_Wx3, -terms_Wx3, rtol=1e-5)  # d value / d alpha = -MI, ...
    for name, g in grads.items():
        assert np.all(np.isfinite(g)) and np.all(np.any(g != 0, axis=tuple(range(1, g.ndim)))), name


def test_distrax_posterior_gives_the_same_terms(allow_rank_promotion):
    # The same draws for the same key as the (mean, logvar) pair, so the same numbers. (TFP's
    # MultivariateNormalDiag takes the same path: see test_marginal_log_prob_per_dimension.)
    params, key, x = dataset().params, jax.random.key(6), dataset().x32[10:26]

    def encode(x):
        mean, logvar = encoder(params)(x)
        return distrax.MultivariateNormalDiag(mean, jnp.exp(0.5 * logvar))

    value, aux = jax.jit(lambda k, x: tcvae.batch_tcvae(
            k, x, encode, decoder(params), dataset_size=N, likelihood="gaussian", sampling="mss"))(key, x)
    expected_value, expected = both_samplings(key, x)["mss"]
    np.testing.assert_allclose(value, expected_value, rtol=1e-5, atol=1e-5)
    for name in expected:
        np.testing.assert_allclose(aux[name], expected[name], rtol=1e-5, atol=1e-5, err_msg=name)


def test_marginal_log_prob_per_dimension(allow_rank_promotion):
    loc, scale = jnp.array([0.5, -1.0, 2.0]), jnp.array([0.3, 1.0, 2.5])
    value_SxTxZ = np.random.default_rng(7).normal(size=(2, 5, 3)).astype(np.float32)
    expected = _log_normal(value_SxTxZ.astype(np.float64), np.asarray(loc), np.asarray(scale))
    dists = (distributions.DiagGaussian(loc, 2 * jnp.log(scale)), distrax.MultivariateNormalDiag(loc, scale),
             distrax.Independent(distrax.Normal(loc, scale), 1), distrax.Normal(loc, scale),
             tfd.MultivariateNormalDiag(loc, scale), tfd.Independent(tfd.Normal(loc, scale), 1))
    per_dim, log_prob = jax.jit(lambda v: ([distributions.marginal_log_prob(d, v) for d in dists],
                                           [d.log_prob(v) for d in dists]))(value_SxTxZ)
    for dist, per_dim_SxTxZ, log_prob_SxT in zip(dists, per_dim, log_prob):
        np.testing.assert_allclose(per_dim_SxTxZ, expected, rtol=1e-5, atol=1e-5, err_msg=type(dist).__name__)
        if not isinstance(dist, distrax.Normal):  # a Normal's batch axis is not an event axis
            np.testing.assert_allclose(per_dim_SxTxZ.sum(-1), log_prob_SxT, rtol=1e-5, err_msg=type(dist).__name__)
    standard = distributions.marginal_log_prob(distributions.StandardNormal((3,)), value_SxTxZ)
    np.testing.assert_allclose(standard, _log_normal(value_SxTxZ.astype(np.float64), 0.0, 1.0), rtol=1e-5)


def test_readable_errors(allow_rank_promotion):
    key, x, params = jax.random.key(8), dataset().x32[:8], dataset().params
    trace = lambda f, *args, **kw: jax.eval_shape(functools.partial(f, *args, **kw))  # noqa: E731  (no compiling)
    mixture = lambda x: distrax.MixtureSameFamily(  # noqa: E731
            distrax.Categorical(logits=jnp.zeros(2)),
            distrax.MultivariateNormalDiag(jnp.zeros((2, 3)), jnp.ones((2, 3))))
    full_covariance = lambda x: distrax.MultivariateNormalTri(jnp.zeros(3), jnp.eye(3))  # noqa: E731
    for encode in (mixture, full_covariance):
        with pytest.raises(ValueError, match=r"factorized \(diagonal\) posterior"):
            trace(tcvae.batch_tcvae, key, x, encode, decoder(params), dataset_size=N, likelihood="gaussian")
    with pytest.raises(ValueError, match="factorized"):
        distributions.marginal_log_prob(distributions.Bernoulli(jnp.zeros(3)), jnp.zeros(3))
    with pytest.raises(ValueError, match="sampling must be 'mws'.*'mss'"):
        trace(run, key, x, sampling="stratified")
    with pytest.raises(ValueError, match=r"dataset_size=4 is smaller than the batch \(8\)"):
        trace(tcvae.batch_tcvae, key, x, encoder(params), decoder(params), dataset_size=4)
    with pytest.raises(ValueError, match="dataset_size must be a Python int"):
        trace(tcvae.batch_tcvae, key, x, encoder(params), decoder(params), dataset_size=64.0)
    with pytest.raises(ValueError, match="at least 2"):
        trace(run, key, x[:1], sampling="mss")
    with pytest.raises(ValueError, match="gamma must be a scalar"):
        trace(run, key, x, gamma=jnp.ones(3))
    with pytest.raises(ValueError, match="leading batch axis"):
        trace(run, key, jnp.float32(1.0))
    with pytest.raises(ValueError, match="sampling must be"):
        tcvae.TCVAE(dataset_size=100, sampling="MWS")
    with pytest.raises(ValueError, match="dataset_size must be"):
        tcvae.TCVAE(dataset_size=0)


def test_tcvae_objective_on_a_tiny_model():
    model = models.mlp_vae(image_shape=(4, 4, 1), latent_dim=2, hidden_sizes=(8,))
    shapes = jax.eval_shape(model.init, jax.random.key(9))  # no compiling: random weights of these shapes
    rng = np.random.default_rng(9)
    params = jax.tree.map(lambda a: jnp.asarray(0.5 * rng.normal(size=a.shape), a.dtype), shapes)
    x_BxD = (rng.random((8,) + model.data_shape) < 0.4).astype(np.float32)
    objective = tcvae.TCVAE(dataset_size=1000, sampling="mss")
    assert tcvae.TCVAE.scalars == ("alpha", "beta", "gamma")
    assert [f.name for f in dataclasses.fields(tcvae.TCVAE)] == ["dataset_size", "sampling"]

    loss_fn = lambda p, key, beta: objective(key, x_BxD, model, p, beta=beta)  # noqa: E731  (alpha = gamma = 1)
    (loss, metrics), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params, jax.random.key(11), 6.0)
    assert set(metrics) == {"rate", "distortion", "mi", "tc", "dim_kl"}
    assert np.isfinite(loss) and all(np.isfinite(v) and np.shape(v) == () for v in metrics.values())
    np.testing.assert_allclose(metrics["rate"], metrics["mi"] + metrics["tc"] + metrics["dim_kl"], rtol=1e-5)
    np.testing.assert_allclose(loss, metrics["distortion"] + metrics["mi"] + 6.0 * metrics["tc"] + metrics["dim_kl"],
                               rtol=1e-5)
    leaves = jax.tree.leaves(grads)
    assert all(np.all(np.isfinite(g)) for g in leaves) and any(np.any(g != 0) for g in leaves)
