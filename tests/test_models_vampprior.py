"""The VampPrior VAE (`vaejax.models.vampprior`) and `DiagGaussianMixture`, against NumPy.

The hand computations run in float64 NumPy from the parameters alone (dense layers, tanh,
diagonal Gaussian log-densities, logsumexp); only the standard-normal draws come from JAX,
with the key the bounds use, so the same key gives the same draws.
"""
import math
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vaejax
from vaejax import config as config_lib
from vaejax import distributions as dist
from vaejax import models
from vaejax.models import vampprior

IMAGE_SHAPE = (2, 3, 1)  # flattened to (6,) by the model
LATENT = 3
K = 3


def _model(num_pseudo_inputs=K, **kw):
    fields = dict(image_shape=IMAGE_SHAPE, latent_dim=LATENT, hidden_sizes=(5,), activation="tanh",
                  num_pseudo_inputs=num_pseudo_inputs, pseudo_input_init="uniform") | kw
    return vampprior.vampprior_vae(**fields)


def _np(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _mlp(layers, h):
    """NumPy forward pass of a flax MLP of Dense_0..Dense_n with tanh between."""
    for i in range(len(layers)):
        h = h @ layers[f"Dense_{i}"]["kernel"] + layers[f"Dense_{i}"]["bias"]
        if i < len(layers) - 1:
            h = np.tanh(h)
    return h


def _encode(params, x):
    out = _mlp(_np(params["encoder"]), np.asarray(x, np.float64))
    return out[..., :LATENT], out[..., LATENT:]


def _gauss(z, mean, logvar):
    return -0.5 * np.sum(np.log(2 * np.pi) + logvar + (z - mean) ** 2 / np.exp(logvar), axis=-1)


def _logsumexp(a, axis=-1):
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def _mixture_log_prob(z, log_w, mean, logvar):
    """log sum_k w_k N(z; mean_k, exp(logvar_k)): z (..., D), mean/logvar (K, D) -> (...)."""
    return _logsumexp(_gauss(z[..., None, :], mean, logvar) + log_w, axis=-1)


def _prior_components(params):
    """The encoder at the clipped pseudo-inputs: (mean (K, Z), logvar (K, Z)), by hand."""
    u = np.minimum(np.maximum(np.asarray(params["pseudo_inputs"], np.float64), 0.0), 1.0)
    return _encode(params, u)


def _within(samples, mean, variance, num_se=5.0):
    """Sample mean and variance within `num_se` standard errors of `mean`, `variance` (D,)."""
    n = samples.shape[0]
    centred = samples - mean
    assert np.all(np.abs(centred.mean(0)) < num_se * np.sqrt(variance / n)), (samples.mean(0), mean)
    sq = centred**2
    se_var = sq.std(0) / np.sqrt(n)
    assert np.all(np.abs(sq.mean(0) - variance) < num_se * se_var), (sq.mean(0), variance)


# -- DiagGaussianMixture ---------------------------------------------------------------------

LOGITS = np.array([0.5, -1.0, 0.0])
LOC = np.array([[-3.0, 0.0], [0.0, 2.0], [4.0, -1.0]])
LOGVAR = np.array([[0.0, -1.0], [0.5, 0.0], [-2.0, 1.0]])


def _hand_moments():
    w = np.exp(LOGITS - _logsumexp(LOGITS))
    mean = w @ LOC
    return mean, w @ (np.exp(LOGVAR) + LOC**2) - mean**2


def test_mixture_log_prob_matches_numpy():
    mixture = dist.DiagGaussianMixture(jnp.asarray(LOGITS, jnp.float32), jnp.asarray(LOC, jnp.float32),
                                       jnp.asarray(LOGVAR, jnp.float32))
    assert mixture.event_shape == (2,)
    value = np.random.default_rng(0).normal(size=(4, 5, 2)) * 3  # sample_shape (4, 5)
    expected = _mixture_log_prob(value, LOGITS - _logsumexp(LOGITS), LOC, LOGVAR)
    got = mixture.log_prob(jnp.asarray(value, jnp.float32))
    chex.assert_shape(got, (4, 5))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert mixture.log_prob(jnp.zeros(2)).shape == ()
    mean, variance = _hand_moments()
    np.testing.assert_allclose(mixture.mean(), mean, rtol=1e-5)
    np.testing.assert_allclose(mixture.variance(), variance, rtol=1e-5)


def test_mixture_samples_have_the_mixture_moments():
    mixture = dist.DiagGaussianMixture(jnp.asarray(LOGITS, jnp.float32), jnp.asarray(LOC, jnp.float32),
                                       jnp.asarray(LOGVAR, jnp.float32))
    z, log_p = mixture.sample_and_log_prob(seed=jax.random.key(0), sample_shape=(40_000,))
    chex.assert_shape([z, log_p], [(40_000, 2), (40_000,)])
    np.testing.assert_allclose(log_p, mixture.log_prob(z), rtol=1e-6)
    _within(np.asarray(z, np.float64), *_hand_moments())
    chex.assert_shape(mixture.sample(seed=jax.random.key(1)), (2,))
    chex.assert_shape(mixture.sample(seed=jax.random.key(1), sample_shape=(2, 3)), (2, 3, 2))


def test_mixture_samples_are_reparameterized_given_the_component_only():
    """d sum(z) / d loc_k is the number of draws from component k; logits get no gradient."""
    key = jax.random.key(3)

    def total(logits, loc):
        mixture = dist.DiagGaussianMixture(logits, loc, jnp.zeros((3, 2)))
        return mixture.sample(seed=key, sample_shape=(50,)).sum()

    d_logits, d_loc = jax.grad(total, argnums=(0, 1))(jnp.zeros(3), jnp.asarray(LOC, jnp.float32))
    np.testing.assert_array_equal(d_logits, 0.0)
    counts = np.asarray(d_loc[:, 0])
    np.testing.assert_array_equal(d_loc[:, 1], counts)
    assert counts.sum() == 50 and np.all(counts == np.round(counts))


# -- the VampPrior VAE -------------------------------------------------------------------------

def test_prior_is_the_mixture_of_posteriors_at_the_pseudo_inputs():
    model = _model()
    params = model.init(jax.random.key(0))
    chex.assert_shape(params["pseudo_inputs"], (K, 6))
    prior = model.prior(params)
    assert isinstance(prior, dist.DiagGaussianMixture)
    chex.assert_shape([prior.logits, prior.loc, prior.logvar], [(K,), (K, LATENT), (K, LATENT)])
    z = np.random.default_rng(1).normal(size=(7, LATENT))
    mean, logvar = _prior_components(params)
    expected = _logsumexp(_gauss(z[:, None, :], mean, logvar), axis=-1) - math.log(K)
    np.testing.assert_allclose(prior.log_prob(jnp.asarray(z, jnp.float32)), expected, rtol=1e-5, atol=1e-5)


def test_one_pseudo_input_with_a_fixed_encoder_is_that_gaussian():
    """Zero kernels: q(z|u) = N(mu, exp(logvar)) from the last bias, whatever u is."""
    model = _model(num_pseudo_inputs=1)
    params = model.init(jax.random.key(0))
    mu, logvar = jnp.array([1.0, -2.0, 0.5]), jnp.array([-1.0, 0.0, 0.7])
    encoder = jax.tree.map(jnp.zeros_like, params["encoder"])
    encoder["Dense_1"]["bias"] = jnp.concatenate([mu, logvar])
    params = params | {"encoder": encoder}
    prior = model.prior(params)
    gaussian = dist.DiagGaussian(mu, logvar)
    z = jax.random.normal(jax.random.key(1), (9, LATENT)) * 2
    np.testing.assert_allclose(prior.log_prob(z), gaussian.log_prob(z), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(prior.log_prob(z), jnp.sum(jax.scipy.stats.norm.logpdf(
        z, jnp.broadcast_to(mu, z.shape), jnp.broadcast_to(jnp.exp(0.5 * logvar), z.shape)), -1), rtol=1e-5)
    samples = np.asarray(prior.sample(seed=jax.random.key(2), sample_shape=(40_000,)), np.float64)
    _within(samples, np.asarray(mu), np.exp(np.asarray(logvar)))


def test_prior_samples_have_the_mixture_moments():
    model = _model(pseudo_input_init="random", pseudo_input_mean=0.5, pseudo_input_std=0.5)
    params = model.init(jax.random.key(4))
    mean, logvar = _prior_components(params)
    mixture_mean = mean.mean(0)
    mixture_variance = (np.exp(logvar) + mean**2).mean(0) - mixture_mean**2
    samples = model.prior(params).sample(seed=jax.random.key(5), sample_shape=(40_000,))
    chex.assert_shape(samples, (40_000, LATENT))
    _within(np.asarray(samples, np.float64), mixture_mean, mixture_variance)


def _by_hand(params, x, key, num_samples):
    """(log p(x|z_s), log p(z_s), log q(z_s|x)) for the bounds' draws z_s, each (S,), float64."""
    mean, logvar = _encode(params, x)
    eps = np.asarray(jax.random.normal(key, (num_samples, LATENT)), np.float64)
    z = mean + np.exp(0.5 * logvar) * eps
    logits = _mlp(_np(params["decoder"]), z)
    log_px_z = np.sum(x * logits - np.logaddexp(0.0, logits), axis=-1)
    p_mean, p_logvar = _prior_components(params)
    log_pz = _mixture_log_prob(z, np.full(K, -math.log(K)), p_mean, p_logvar)
    return log_px_z, log_pz, _gauss(z, mean, logvar)


@pytest.mark.parametrize("num_samples", [1, 5])
def test_elbo_and_iwae_match_a_hand_computation(num_samples):
    model = _model()
    params = model.init(jax.random.key(0))
    x = np.asarray(jax.random.bernoulli(jax.random.key(6), 0.4, (6,)), np.float64)
    key = jax.random.key(7)
    encode, decode = (lambda xi: model.posterior(params, xi)), (lambda z: model.likelihood(params, z))
    log_px_z, log_pz, log_qz = _by_hand(params, x, key, num_samples)

    value, aux = vaejax.elbo(key, jnp.asarray(x, jnp.float32), encode, decode, num_samples=num_samples,
                             prior=model.prior(params))
    np.testing.assert_allclose(value, log_px_z.mean() - (log_qz - log_pz).mean(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(aux["kl"], (log_qz - log_pz).mean(), rtol=1e-5, atol=1e-4)
    assert "kl_per_dim" not in aux  # no closed form: the Monte Carlo KL

    value, _ = vaejax.iwae_bound(key, jnp.asarray(x, jnp.float32), encode, decode, num_samples=num_samples,
                                 prior=model.prior(params))
    log_w = log_px_z + log_pz - log_qz
    np.testing.assert_allclose(value, _logsumexp(log_w) - math.log(num_samples), rtol=1e-5, atol=1e-4)


def test_learned_images_are_the_clipped_pseudo_inputs():
    model = _model()
    params = model.init(jax.random.key(0))
    params["pseudo_inputs"] = 3.0 * jax.random.normal(jax.random.key(1), (K, 6))  # raw, out of [0, 1]
    images = model.learned_images(params)
    assert list(images) == ["pseudo_inputs"]
    chex.assert_shape(images["pseudo_inputs"], (K,) + model.data_shape)
    u = np.asarray(images["pseudo_inputs"])
    assert u.min() == 0.0 and u.max() == 1.0
    np.testing.assert_array_equal(u, np.clip(np.asarray(params["pseudo_inputs"]), 0.0, 1.0))


def test_jit_vmap_and_gradients_reach_the_pseudo_inputs():
    model = _model()
    params = model.init(jax.random.key(0))
    x_B = jax.random.bernoulli(jax.random.key(1), 0.4, (4, 6)).astype(jnp.float32)
    key = jax.random.key(2)

    def loss(params):
        value, _ = vaejax.batch_elbo(key, x_B, lambda xi: model.posterior(params, xi),
                                     lambda z: model.likelihood(params, z), prior=model.prior(params))
        return -value

    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    keys = jax.random.split(key, 4)
    one_by_one = [vaejax.elbo(k, xi, lambda xi: model.posterior(params, xi),
                              lambda z: model.likelihood(params, z), prior=model.prior(params))[0]
                  for k, xi in zip(keys, x_B)]
    np.testing.assert_allclose(value, -np.mean(one_by_one), rtol=1e-5)
    assert jax.tree.map(jnp.shape, grads) == jax.tree.map(jnp.shape, params)
    assert float(jnp.abs(grads["pseudo_inputs"]).sum()) > 0.0

    prior = jax.jit(model.prior)(params)
    z = jax.random.normal(jax.random.key(3), (5, LATENT))
    np.testing.assert_allclose(prior.log_prob(z), model.prior(params).log_prob(z), rtol=1e-5)
    batched = jax.jit(jax.vmap(lambda xi: model.posterior(params, xi)))(x_B)
    chex.assert_shape([batched.loc, batched.logvar], (4, LATENT))
    images = jax.jit(model.learned_images)(params)
    chex.assert_shape(images["pseudo_inputs"], (K, 6))
    hash(model)  # a static argument of jit elsewhere


def test_registered_and_built_from_the_experiment_config():
    model = models.build(dict(kind="vampprior", latent_dim=2, hidden_sizes=(4,), num_pseudo_inputs=3),
                         IMAGE_SHAPE)
    assert isinstance(model, vampprior.VampPriorVAE)
    assert model.data_shape == (6,) and model.latent_dim == 2 and model.num_pseudo_inputs == 3

    experiment = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "vampprior.py"
    config = config_lib.load_config(experiment)
    assert config.model.kind == "vampprior" and config.objective.kind == "elbo"
    assert config.objective.warmup_steps == 100 * 50_000 // config.train.batch_size
    paper = models.build(config.model, (28, 28, 1))
    assert (paper.latent_dim, paper.num_pseudo_inputs, paper.data_shape) == (40, 500, (784,))
    assert paper.init(jax.random.key(0))["pseudo_inputs"].shape == (500, 784)

    with pytest.raises(ValueError, match="Unknown pseudo_input_init 'data'"):
        _model(pseudo_input_init="data")
