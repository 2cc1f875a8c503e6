"""MIWAE, CIWAE and the gradient estimators (reparam, STL, DReG), each held to its paper:
values on fixed log weights against NumPy, the zero-variance property at the exact posterior,
unbiasedness, equal decoder gradients, and the SNR trend of Rainforth et al. 2018."""
import importlib.util
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

import vaejax
from test_objectives_bounds import _bad_q, _distrax_model, _keys, linear_gaussian, mixture_linear_gaussian
from run_helpers import REPO

ESTIMATORS = ("reparam", "stl", "dreg")


def _lg_encode(phi):
    return lambda x: (phi["mean"], phi["logvar"])


def _lg_decode(lg, theta):
    return lambda z: (theta["w"] @ z + theta["b"], jnp.log(lg.s2))


def _lg_params(lg, exact):
    mean, logvar = (lg.post_mean, lg.post_logvar) if exact else _bad_q(lg)
    return {"mean": mean, "logvar": logvar}, {"w": lg.w, "b": lg.b}


def _bound_fn(name, **kw):
    """(key, phi, theta) -> value of bound `name` on the linear-Gaussian example."""
    lg = linear_gaussian()
    fn = getattr(vaejax, name)

    def value(key, phi, theta):
        return fn(key, lg.x, _lg_encode(phi), _lg_decode(lg, theta), likelihood="gaussian", **kw)[0]

    return value


BOUNDS = {  # name -> keyword arguments; every one takes gradient_estimator
    "elbo": {"num_samples": 3},
    "iwae_bound": {"num_samples": 6},
    "miwae_bound": {"num_groups": 3, "num_samples": 4},
    "ciwae_bound": {"beta": 0.3, "num_samples": 6},
}


# Values.

def test_bounds_on_fixed_log_weights_match_numpy():
    """The draws of every IWAE-family bound are those of iwae_log_weights with the same key."""
    lg = linear_gaussian()
    phi, theta = _lg_params(lg, exact=False)
    keys = _keys(0, 50)
    log_w = np.asarray(jax.vmap(lambda k: vaejax.iwae_log_weights(
            k, lg.x, _lg_encode(phi), _lg_decode(lg, theta), likelihood="gaussian", num_samples=12))(keys),
            np.float64)
    lse = scipy.special.logsumexp

    def values(name, **kw):
        return np.asarray(jax.vmap(lambda k: _bound_fn(name, **kw)(k, phi, theta))(keys))

    np.testing.assert_allclose(values("iwae_bound", num_samples=12), lse(log_w, 1) - math.log(12), rtol=1e-5)
    miwae = np.mean(lse(log_w.reshape(50, 3, 4), 2) - math.log(4), 1)
    np.testing.assert_allclose(values("miwae_bound", num_groups=3, num_samples=4), miwae, rtol=1e-5)
    for beta in (0.0, 0.05, 1.0):
        ciwae = beta * log_w.mean(1) + (1 - beta) * (lse(log_w, 1) - math.log(12))
        np.testing.assert_allclose(values("ciwae_bound", beta=beta, num_samples=12), ciwae, rtol=1e-5)
    # the special cases, bit for bit on the same key
    np.testing.assert_array_equal(values("miwae_bound", num_groups=1, num_samples=12),
                                  values("iwae_bound", num_samples=12))
    np.testing.assert_array_equal(values("ciwae_bound", beta=0.0, num_samples=12),
                                  values("iwae_bound", num_samples=12))
    np.testing.assert_allclose(values("ciwae_bound", beta=1.0, num_samples=12),
                               values("miwae_bound", num_groups=12, num_samples=1), rtol=1e-6)
    np.testing.assert_allclose(values("ciwae_bound", beta=1.0, num_samples=12),
                               values("elbo", num_samples=12, analytic_kl=False), rtol=1e-6)


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_value_is_the_same_for_every_estimator(name):
    lg = linear_gaussian()
    phi, theta = _lg_params(lg, exact=False)
    keys = _keys(1, 20)
    values = [jax.jit(jax.vmap(_bound_fn(name, **BOUNDS[name], gradient_estimator=e),
                               in_axes=(0, None, None)))(keys, phi, theta) for e in ESTIMATORS]
    # Equal up to rounding: XLA may fuse the same arithmetic differently in the three programs.
    np.testing.assert_allclose(values[1], values[0], rtol=1e-6)
    np.testing.assert_allclose(values[2], values[0], rtol=1e-6)


# Gradients.

def _gradients(name, estimator, keys, exact, **kw):
    """Per-key gradients (phi, theta) of bound `name` on the linear-Gaussian example."""
    lg = linear_gaussian()
    phi, theta = _lg_params(lg, exact)
    grad = jax.grad(_bound_fn(name, **{**BOUNDS[name], **kw}, gradient_estimator=estimator), argnums=(1, 2))
    return jax.jit(jax.vmap(grad, in_axes=(0, None, None)))(keys, phi, theta)


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_stl_and_dreg_encoder_gradients_vanish_at_the_exact_posterior(name):
    """Roeder et al. 2017, Tucker et al. 2019: log w = log p(x) for every z, so the path
    derivative is zero for every key; the reparameterized gradient is not."""
    keys = _keys(2, 100)
    reparam, _ = _gradients(name, "reparam", keys, exact=True)
    assert min(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(reparam)) > 1e-2
    for estimator in ("stl", "dreg"):
        g_phi, _ = _gradients(name, estimator, keys, exact=True)
        for g in jax.tree.leaves(g_phi):
            np.testing.assert_allclose(g, 0.0, atol=2e-5)


def test_estimators_vanish_at_an_exact_mixture_posterior_from_distrax(allow_rank_promotion):
    """Any pytree distribution works: a distrax mixture posterior, exact, gives zero."""
    m = mixture_linear_gaussian(3)
    posterior, prior, decode = _distrax_model(m)

    def bound(key, means, estimator):
        q = posterior.__class__(posterior.mixture_distribution,
                                posterior.components_distribution.__class__(
                                        means, posterior.components_distribution.scale_tri))
        return vaejax.iwae_bound(key, m.x, lambda x: q, decode, prior=prior, num_samples=8,
                                 gradient_estimator=estimator)[0]

    keys = _keys(3, 50)
    for estimator, expect_zero in (("reparam", False), ("stl", True), ("dreg", True)):
        g = jax.jit(jax.vmap(jax.grad(bound, argnums=1), in_axes=(0, None, None)),
                    static_argnums=2)(keys, m.post_means, estimator)
        assert (float(jnp.max(jnp.abs(g))) < 1e-4) == expect_zero, (estimator, float(jnp.max(jnp.abs(g))))


@pytest.mark.parametrize("name", ["iwae_bound", "miwae_bound"])
def test_dreg_is_unbiased_for_the_encoder_and_equal_for_the_decoder(name):
    """Away from the posterior: mean DReG encoder gradient = mean reparameterized one (paired
    over keys, within 4 standard errors), and the decoder gradients are equal key by key."""
    keys = _keys(4, 20_000)
    phi_r, theta_r = _gradients(name, "reparam", keys, exact=False)
    phi_d, theta_d = _gradients(name, "dreg", keys, exact=False)
    for g_r, g_d in zip(jax.tree.leaves(phi_r), jax.tree.leaves(phi_d)):
        diff = np.asarray(g_d - g_r, np.float64)
        z = np.abs(diff.mean(0)) / (diff.std(0) / math.sqrt(len(diff)))
        assert np.all(z < 4.0), z
        assert np.all(np.asarray(g_d).std(0) < np.asarray(g_r).std(0))  # and less noisy here
    for g_r, g_d in zip(jax.tree.leaves(theta_r), jax.tree.leaves(theta_d)):
        np.testing.assert_allclose(g_d, g_r, rtol=1e-4, atol=1e-5)


def test_stl_decoder_gradient_equals_reparam():
    keys = _keys(5, 50)
    _, theta_r = _gradients("iwae_bound", "reparam", keys, exact=False)
    _, theta_s = _gradients("iwae_bound", "stl", keys, exact=False)
    for g_r, g_s in zip(jax.tree.leaves(theta_r), jax.tree.leaves(theta_s)):
        np.testing.assert_allclose(g_s, g_r, rtol=1e-4, atol=1e-5)


def _gradient_snr():
    spec = importlib.util.spec_from_file_location("gradient_snr", REPO / "benchmarks" / "gradient_snr.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_encoder_snr_falls_with_k_for_iwae_and_rises_for_dreg():
    """Rainforth et al. 2018: the IWAE encoder gradient's SNR falls as O(1/sqrt(K)); Tucker et
    al. 2019: DReG's does not. The full table is benchmarks/gradient_snr.py's."""
    snr = _gradient_snr().table(sample_sizes=(1, 100), num_keys=500)
    assert snr[("reparam", 100)]["encoder"] < snr[("reparam", 1)]["encoder"] / 4  # ~1/10 expected
    assert snr[("dreg", 100)]["encoder"] > 2 * snr[("dreg", 1)]["encoder"]
    assert snr[("reparam", 100)]["decoder"] > 4 * snr[("reparam", 1)]["decoder"]  # ~10x: sqrt(K)


# Errors and transformations.

def test_bad_estimators_and_group_counts_are_readable_errors():
    lg = linear_gaussian()
    phi, theta = _lg_params(lg, exact=False)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="gradient_estimator must be one of 'reparam', 'stl', 'dreg'"):
        _bound_fn("iwae_bound", num_samples=2, gradient_estimator="rebar")(key, phi, theta)
    with pytest.raises(ValueError, match="num_groups must be a Python int >= 1"):
        _bound_fn("miwae_bound", num_groups=0, num_samples=2)(key, phi, theta)
    with pytest.raises(ValueError, match="free bits have no form"):
        _bound_fn("elbo", free_bits=0.1, gradient_estimator="stl")(key, phi, theta)

    class NotAPytree:  # a distribution JAX cannot see into
        event_shape = (3,)

        def log_prob(self, z):
            return jnp.sum(z)

        def sample_and_log_prob(self, *, seed, sample_shape):
            z = jax.random.normal(seed, sample_shape + (3,))
            return z, self.log_prob(z)

    with pytest.raises(ValueError, match="pytree of its parameters"):
        vaejax.iwae_bound(key, lg.x, lambda x: NotAPytree(), _lg_decode(lg, theta), likelihood="gaussian",
                          num_samples=2, gradient_estimator="stl")


def test_ciwae_beta_is_traced_and_vmappable():
    lg = linear_gaussian()
    phi, theta = _lg_params(lg, exact=False)
    key = jax.random.key(7)

    def ciwae(beta):
        return vaejax.ciwae_bound(key, lg.x, _lg_encode(phi), _lg_decode(lg, theta), likelihood="gaussian",
                                  beta=beta, num_samples=5, gradient_estimator="dreg")[0]

    betas = jnp.array([0.0, 0.05, 1.0])
    np.testing.assert_allclose(jax.jit(jax.vmap(ciwae))(betas), [ciwae(float(b)) for b in betas], rtol=1e-6)
    batched, _ = vaejax.batch_miwae_bound(key, jnp.stack([lg.x, lg.x]), _lg_encode(phi), _lg_decode(lg, theta),
                                          likelihood="gaussian", num_groups=2, num_samples=2)
    assert batched.shape == ()


def test_readme_estimator_example_runs():
    from test_objectives_bounds import _code_block_after

    readme = REPO / "docs" / "concepts" / "objectives.md"
    namespace = {"__name__": "readme_example"}
    code = _code_block_after(readme.read_text(), "# Bounds, gradient estimators and objectives of the literature")
    exec(compile(code, str(readme), "exec"), namespace)
    results = namespace["results"]
    values = [float(v) for v, _ in results.values()]
    np.testing.assert_allclose(values, values[0], rtol=1e-6)
    encoder_grads = [np.asarray(g["enc"]) for _, g in results.values()]
    assert not np.allclose(encoder_grads[0], encoder_grads[1]) and not np.allclose(encoder_grads[1], encoder_grads[2])
    np.testing.assert_allclose(results["dreg"][1]["dec"], results["reparam"][1]["dec"], rtol=1e-5)
