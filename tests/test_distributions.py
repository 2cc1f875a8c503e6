"""Tests for vaejax.distributions against closed forms, jax.scipy.stats and Monte Carlo."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy.stats import norm

from vaejax import distributions as dist

NUM_MC = 200_000


def _q_and_p():
    keys = jax.random.split(jax.random.key(0), 4)
    mean_q = jax.random.normal(keys[0], (4,))
    logvar_q = 0.5 * jax.random.normal(keys[1], (4,))
    mean_p = jax.random.normal(keys[2], (4,))
    logvar_p = 0.5 * jax.random.normal(keys[3], (4,))
    return mean_q, logvar_q, mean_p, logvar_p


def _assert_within_standard_errors(samples, expected, num_se=4.0):
    estimate = jnp.mean(samples)
    se = jnp.std(samples) / jnp.sqrt(samples.shape[0])
    assert abs(estimate - expected) < num_se * se + 1e-6, (estimate, expected, se)


# Log-densities.

def test_diag_gaussian_log_prob_matches_scipy_norm():
    keys = jax.random.split(jax.random.key(1), 3)
    x = jax.random.normal(keys[0], (6, 3))
    mean = jax.random.normal(keys[1], (6, 3))
    logvar = jax.random.normal(keys[2], (6, 3))
    expected = jnp.sum(norm.logpdf(x, mean, jnp.exp(0.5 * logvar)), axis=-1)
    got = dist.diag_gaussian_log_prob(x, mean, logvar)
    chex.assert_shape(got, (6,))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_diag_gaussian_log_prob_broadcasts_leading_axes():
    x_SxZ = jax.random.normal(jax.random.key(2), (7, 3))
    mean_Z, logvar_Z = jnp.array([0.5, -1.0, 2.0]), jnp.array([0.0, 1.0, -2.0])
    got = dist.diag_gaussian_log_prob(x_SxZ, mean_Z, logvar_Z)
    chex.assert_shape(got, (7,))
    expected = jnp.stack([dist.diag_gaussian_log_prob(x, mean_Z, logvar_Z) for x in x_SxZ])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # Hand value: N(0; 0, 1) in one dimension is -0.5 log(2 pi).
    np.testing.assert_allclose(dist.diag_gaussian_log_prob(jnp.zeros(1), 0.0, 0.0), -0.5 * np.log(2 * np.pi),
                               rtol=1e-6)
    np.testing.assert_allclose(dist.standard_normal_log_prob(x_SxZ),
                               dist.diag_gaussian_log_prob(x_SxZ, jnp.zeros(3), jnp.zeros(3)), rtol=1e-6)


def test_gaussian_log_prob_scalar_and_full_logvar():
    keys = jax.random.split(jax.random.key(3), 3)
    x = jax.random.normal(keys[0], (4, 5))
    mean = jax.random.normal(keys[1], (4, 5))
    # Scalar (fixed) log-variance counts once per element.
    for logvar in (-0.7, jnp.float32(-0.7)):
        got = dist.gaussian_log_prob(x, mean, logvar)
        chex.assert_shape(got, ())
        np.testing.assert_allclose(got, jnp.sum(norm.logpdf(x, mean, np.exp(-0.35))), rtol=1e-5)
    # Per-element (learned) log-variance.
    logvar = jax.random.normal(keys[2], (4, 5))
    got = dist.gaussian_log_prob(x, mean, logvar)
    np.testing.assert_allclose(got, jnp.sum(norm.logpdf(x, mean, jnp.exp(0.5 * logvar))), rtol=1e-5)
    with pytest.raises(ValueError, match="logvar has shape"):
        dist.gaussian_log_prob(x, mean, jnp.zeros(5))


def test_bernoulli_log_prob_matches_independent_formula():
    keys = jax.random.split(jax.random.key(4), 3)
    logits = 3.0 * jax.random.normal(keys[0], (2, 7))
    for x in (jax.random.bernoulli(keys[1], 0.5, (2, 7)).astype(jnp.float32),  # binary
              jax.random.uniform(keys[2], (2, 7))):                             # soft targets
        p = jax.nn.sigmoid(logits)
        expected = jnp.sum(x * jnp.log(p) + (1.0 - x) * jnp.log1p(-p))
        got = dist.bernoulli_log_prob(x, logits)
        chex.assert_shape(got, ())
        np.testing.assert_allclose(got, expected, rtol=1e-5)
        np.testing.assert_allclose(got, -jnp.sum(optax.sigmoid_binary_cross_entropy(logits, x)), rtol=1e-5)
    # Boolean targets are accepted.
    x_bool = jnp.array([True, False])
    np.testing.assert_allclose(dist.bernoulli_log_prob(x_bool, jnp.array([0.0, 0.0])), 2 * np.log(0.5), rtol=1e-6)


def test_bernoulli_log_prob_is_exact_at_extreme_logits():
    cases = [  # (x, logit, exact log-prob)
        (1.0, 100.0, 0.0), (0.0, 100.0, -100.0), (0.0, -100.0, 0.0), (1.0, -100.0, -100.0),
        (0.5, 100.0, -50.0), (1.0, 1e4, 0.0), (0.0, 1e4, -1e4),
    ]
    for x, logit, exact in cases:
        value = dist.bernoulli_log_prob(jnp.array([x]), jnp.array([logit]))
        assert jnp.isfinite(value), (x, logit)
        np.testing.assert_allclose(value, exact, atol=1e-6, err_msg=f"x={x}, logit={logit}")
        grad = jax.grad(lambda l: dist.bernoulli_log_prob(jnp.array([x]), l))(jnp.array([logit]))
        # d/dlogit = x - sigmoid(logit)
        np.testing.assert_allclose(grad, x - jax.nn.sigmoid(logit), atol=1e-6)
    with pytest.raises(ValueError, match="logits has shape"):
        dist.bernoulli_log_prob(jnp.zeros((28, 28)), jnp.zeros((784,)))


# Sampling.

def test_diag_gaussian_sample_shape_moments_and_reparameterization():
    mean = jnp.array([1.0, -2.0, 0.0])
    logvar = jnp.array([0.0, 1.0, -3.0])
    z = dist.diag_gaussian_sample(jax.random.key(5), mean, logvar, (NUM_MC,))
    chex.assert_shape(z, (NUM_MC, 3))
    std = jnp.exp(0.5 * logvar)
    for d in range(3):
        _assert_within_standard_errors(z[:, d], mean[d])
        _assert_within_standard_errors(jnp.square(z[:, d] - mean[d]), std[d] ** 2)
    # Same key, same draw; another key, another draw.
    key = jax.random.key(6)
    chex.assert_trees_all_equal(dist.diag_gaussian_sample(key, mean, logvar, (2,)),
                                dist.diag_gaussian_sample(key, mean, logvar, (2,)))
    assert not jnp.allclose(dist.diag_gaussian_sample(key, mean, logvar),
                            dist.diag_gaussian_sample(jax.random.key(7), mean, logvar))
    # Reparameterized: dz/dmean = 1 and dz/dlogvar = 0.5 (z - mean), per element.
    z = dist.diag_gaussian_sample(key, mean, logvar)
    chex.assert_shape(z, (3,))
    d_mean = jax.grad(lambda m: jnp.sum(dist.diag_gaussian_sample(key, m, logvar)))(mean)
    d_logvar = jax.grad(lambda lv: jnp.sum(dist.diag_gaussian_sample(key, mean, lv)))(logvar)
    np.testing.assert_allclose(d_mean, jnp.ones(3), rtol=1e-6)
    np.testing.assert_allclose(d_logvar, 0.5 * (z - mean), rtol=1e-5, atol=1e-6)


def test_diag_gaussian_sample_batched_parameters():
    mean_BxZ = jnp.zeros((4, 2))
    z = dist.diag_gaussian_sample(jax.random.key(8), mean_BxZ, jnp.zeros(2), (3,))
    chex.assert_shape(z, (3, 4, 2))


# KL divergences.

def test_kl_to_standard_normal_hand_values():
    np.testing.assert_allclose(dist.kl_to_standard_normal(jnp.zeros(3), jnp.zeros(3)), 0.0, atol=1e-7)
    np.testing.assert_allclose(dist.kl_to_standard_normal(jnp.array([1.0, 2.0]), jnp.zeros(2)), 0.5 * 5, rtol=1e-6)
    np.testing.assert_allclose(dist.kl_to_standard_normal(jnp.zeros(1), jnp.log(jnp.array([2.0]))),
                               0.5 * (2.0 - 1.0 - np.log(2.0)), rtol=1e-6)
    mean_BxZ = jax.random.normal(jax.random.key(9), (5, 3))
    logvar_BxZ = jax.random.normal(jax.random.key(10), (5, 3))
    per_dim = dist.kl_to_standard_normal_per_dim(mean_BxZ, logvar_BxZ)
    chex.assert_shape(per_dim, (5, 3))
    assert jnp.all(per_dim >= 0.0)
    np.testing.assert_allclose(dist.kl_to_standard_normal(mean_BxZ, logvar_BxZ), per_dim.sum(-1), rtol=1e-6)


def test_kl_to_standard_normal_matches_monte_carlo():
    mean_q, logvar_q, _, _ = _q_and_p()
    z = dist.diag_gaussian_sample(jax.random.key(11), mean_q, logvar_q, (NUM_MC,))
    log_ratio = dist.diag_gaussian_log_prob(z, mean_q, logvar_q) - jnp.sum(norm.logpdf(z), axis=-1)
    _assert_within_standard_errors(log_ratio, dist.kl_to_standard_normal(mean_q, logvar_q))
    # Per dimension too.
    per_dim = dist.kl_to_standard_normal_per_dim(mean_q, logvar_q)
    for d in range(4):
        log_ratio_d = (norm.logpdf(z[:, d], mean_q[d], jnp.exp(0.5 * logvar_q[d])) - norm.logpdf(z[:, d]))
        _assert_within_standard_errors(log_ratio_d, per_dim[d])


def test_kl_diag_gaussians_matches_monte_carlo():
    mean_q, logvar_q, mean_p, logvar_p = _q_and_p()
    z = dist.diag_gaussian_sample(jax.random.key(12), mean_q, logvar_q, (NUM_MC,))
    log_ratio = (jnp.sum(norm.logpdf(z, mean_q[None], jnp.exp(0.5 * logvar_q)[None]), axis=-1)
                 - jnp.sum(norm.logpdf(z, mean_p[None], jnp.exp(0.5 * logvar_p)[None]), axis=-1))
    kl = dist.kl_diag_gaussians(mean_q, logvar_q, mean_p, logvar_p)
    chex.assert_shape(kl, ())
    _assert_within_standard_errors(log_ratio, kl)
    assert kl > 0.0


def test_kl_diag_gaussians_identities():
    mean_q, logvar_q, mean_p, logvar_p = _q_and_p()
    np.testing.assert_allclose(dist.kl_diag_gaussians(mean_q, logvar_q, mean_q, logvar_q), 0.0, atol=1e-6)
    np.testing.assert_allclose(dist.kl_diag_gaussians(mean_q, logvar_q, jnp.zeros(4), jnp.zeros(4)),
                               dist.kl_to_standard_normal(mean_q, logvar_q), rtol=1e-6)
    # Batched q against one p; asymmetric in general.
    mean_BxZ = jnp.stack([mean_q, mean_p])
    logvar_BxZ = jnp.stack([logvar_q, logvar_p])
    kl_B = dist.kl_diag_gaussians(mean_BxZ, logvar_BxZ, mean_p, logvar_p)
    chex.assert_shape(kl_B, (2,))
    np.testing.assert_allclose(kl_B[1], 0.0, atol=1e-6)
    assert not jnp.allclose(dist.kl_diag_gaussians(mean_q, logvar_q, mean_p, logvar_p),
                            dist.kl_diag_gaussians(mean_p, logvar_p, mean_q, logvar_q))


def test_binary_bernoulli_form_equals_general_form_on_binary_data():
    key_x, key_l = jax.random.split(jax.random.key(7))
    x = jax.random.bernoulli(key_x, 0.4, (28, 28, 1)).astype(jnp.float32)
    logits = 5.0 * jax.random.normal(key_l, (28, 28, 1))
    general = dist.bernoulli_log_prob(x, logits)
    binary = dist.bernoulli_log_prob_binary(x, logits)
    np.testing.assert_allclose(binary, general, rtol=1e-6)
    extreme = jnp.full((4,), 100.0)
    np.testing.assert_allclose(dist.bernoulli_log_prob_binary(jnp.array([1., 0., 1., 0.]), extreme),
                               -200.0, rtol=1e-6)
    # Soft targets are where the two differ: the binary form must not be used there.
    half = jnp.full((3,), 0.5)
    assert abs(float(dist.bernoulli_log_prob_binary(half, jnp.full((3,), 4.0))
                     - dist.bernoulli_log_prob(half, jnp.full((3,), 4.0)))) > 1.0


# Distributions as values.

def test_distribution_classes_against_scipy_and_their_functions():
    key = jax.random.key(7)
    mean, logvar = jnp.array([0.5, -1.0, 2.0]), jnp.array([0.0, 1.0, -2.0])
    q = dist.DiagGaussian(mean, logvar)
    z, log_q = q.sample_and_log_prob(seed=key, sample_shape=(5,))
    chex.assert_shape(z, (5, 3))
    np.testing.assert_array_equal(z, dist.diag_gaussian_sample(key, mean, logvar, (5,)))
    np.testing.assert_allclose(log_q, jnp.sum(norm.logpdf(z, mean[None], jnp.exp(0.5 * logvar)[None]), -1), rtol=1e-5)
    p = dist.StandardNormal((3,))
    np.testing.assert_allclose(p.log_prob(z), jnp.sum(norm.logpdf(z), -1), rtol=1e-5)
    np.testing.assert_allclose(q.kl_divergence(p), dist.kl_to_standard_normal(mean, logvar), rtol=1e-6)
    # An image-shaped Gaussian likelihood with a shared scalar logvar: every axis is an event axis.
    x = jax.random.normal(key, (2, 2, 1))
    g = dist.DiagGaussian(jnp.zeros((2, 2, 1)), jnp.float32(-1.0))
    assert g.event_shape == (2, 2, 1)
    np.testing.assert_allclose(g.log_prob(x), dist.gaussian_log_prob(x, jnp.zeros((2, 2, 1)), -1.0), rtol=1e-6)
    b = dist.Bernoulli(jnp.array([[0.3, -2.0], [1.0, 0.0]]))
    bits = jnp.array([[1.0, 0.0], [1.0, 1.0]])
    expected = jnp.sum(jnp.log(jnp.where(bits > 0, jax.nn.sigmoid(b.logits), 1 - jax.nn.sigmoid(b.logits))))
    np.testing.assert_allclose(b.log_prob(bits), expected, rtol=1e-6)
    assert b.log_prob_binary(bits) == pytest.approx(float(b.log_prob(bits)), rel=1e-6)
    draws, log_b = b.sample_and_log_prob(seed=key, sample_shape=(4,))
    np.testing.assert_allclose(log_b, jnp.stack([b.log_prob(d) for d in draws]), rtol=1e-6)
    # Pytrees: returned from jit and vmap.
    batched = jax.jit(jax.vmap(lambda m: dist.DiagGaussian(m, logvar)))(jnp.ones((4, 3)))
    chex.assert_shape(batched.loc, (4, 3))


def test_kl_closed_form_picks_the_formula_of_the_pair():
    mean_q, logvar_q, mean_p, logvar_p = _q_and_p()
    q, p = dist.DiagGaussian(mean_q, logvar_q), dist.DiagGaussian(mean_p, logvar_p)
    kl = dist.kl_closed_form(q, p)
    np.testing.assert_allclose(kl.per_dim, dist.kl_diag_gaussians_per_dim(mean_q, logvar_q, mean_p, logvar_p))
    np.testing.assert_allclose(jnp.sum(kl.per_dim), dist.kl_diag_gaussians(mean_q, logvar_q, mean_p, logvar_p),
                               rtol=1e-6)
    assert dist.kl_closed_form(q, dist.Bernoulli(jnp.zeros(4))) is None  # no formula: Monte Carlo
