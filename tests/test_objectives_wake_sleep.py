"""Reweighted wake-sleep on a model with discrete latents, against exact enumeration."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np

import vaejax

NUM_BITS, NUM_FEATURES = 3, 4
STATES = jnp.asarray(list(itertools.product([0.0, 1.0], repeat=NUM_BITS)))  # (8, 3): every z


def _model():
    rng = np.random.default_rng(0)
    theta = {"prior_logits": jnp.asarray(rng.normal(size=NUM_BITS), jnp.float32),
             "w": jnp.asarray(2.0 * rng.normal(size=(NUM_FEATURES, NUM_BITS)), jnp.float32)}
    x = theta["w"] @ jnp.array([1.0, 0.0, 1.0]) + jnp.asarray(0.3 * rng.normal(size=NUM_FEATURES), jnp.float32)
    return x, theta


def _functions(theta, phi):
    encode = lambda x: vaejax.Bernoulli(phi)  # noqa: E731  (discrete: no reparameterization)
    decode = lambda z: vaejax.DiagGaussian(theta["w"] @ z, jnp.zeros(NUM_FEATURES))  # noqa: E731
    return encode, decode, vaejax.Bernoulli(theta["prior_logits"])


def _log_joint(x, theta):
    _, decode, prior = _functions(theta, None)
    return jax.vmap(lambda z: decode(z).log_prob(x) + prior.log_prob(z))(STATES)  # (8,)


def _exact_wake_gradients(x, theta, phi):
    """d/dtheta log p(x) and d/dphi sum_z p(z|x) log q(z), both by enumerating the 8 states."""
    g_theta = jax.grad(lambda t: jax.nn.logsumexp(_log_joint(x, t)))(theta)
    posterior = jax.nn.softmax(_log_joint(x, theta))
    g_phi = jax.grad(lambda f: jnp.sum(posterior * jax.vmap(vaejax.Bernoulli(f).log_prob)(STATES)))(phi)
    return g_theta, g_phi


def _rws(key, x, theta, phi, num_samples):
    encode, decode, prior = _functions(theta, phi)
    return vaejax.reweighted_wake_sleep(key, x, encode, decode, prior=prior, num_samples=num_samples)[0]


def test_rws_gradients_converge_to_the_exact_wake_updates():
    x, theta = _model()
    phi = jnp.zeros(NUM_BITS)  # q uniform: far from the posterior
    keys = jax.random.split(jax.random.key(0), 200)
    g_theta, g_phi = jax.jit(jax.vmap(jax.grad(_rws, argnums=(2, 3)), in_axes=(0, None, None, None, None)),
                             static_argnums=4)(keys, x, theta, phi, 2000)
    exact_theta, exact_phi = _exact_wake_gradients(x, theta, phi)
    for estimate, exact in zip(jax.tree.leaves((g_theta, g_phi)), jax.tree.leaves((exact_theta, exact_phi))):
        estimate = np.asarray(estimate, np.float64)
        se = estimate.std(0) / np.sqrt(len(estimate))
        np.testing.assert_array_less(np.abs(estimate.mean(0) - exact), 5 * se + 2e-3 * (1 + np.abs(exact)))


def test_the_value_is_the_iwae_bound_and_wake_phi_fits_the_posterior():
    x, theta = _model()
    key = jax.random.key(1)
    encode, decode, prior = _functions(theta, jnp.zeros(NUM_BITS))
    value = _rws(key, x, theta, jnp.zeros(NUM_BITS), 16)
    iwae, _ = vaejax.iwae_bound(key, x, encode, decode, prior=prior, num_samples=16)
    np.testing.assert_allclose(value, iwae, rtol=1e-6)

    def step(phi, key):  # ascend wake-phi only
        return phi + 0.5 * jax.grad(_rws, argnums=3)(key, x, theta, phi, 32), None

    phi, _ = jax.lax.scan(step, jnp.zeros(NUM_BITS), jax.random.split(key, 400))
    posterior = jax.nn.softmax(_log_joint(x, theta))
    log_q = lambda f: jax.vmap(vaejax.Bernoulli(f).log_prob)(STATES)  # noqa: E731
    kl = lambda f: float(jnp.sum(posterior * (jnp.log(posterior) - log_q(f))))  # noqa: E731
    assert kl(phi) < 0.05 < kl(jnp.zeros(NUM_BITS))
