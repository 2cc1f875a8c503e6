"""Hierarchical VAEs (`vaejax.models.hierarchical`): Burda et al.'s two-layer model, its `GaussianChain`,
the L-layer bottom-up and ladder models, and their exact linear-Gaussian cases.

The bounds are checked against the same draws redone in plain jnp, the prior's samples against
the Gaussian marginal of a linear chain, and the IWAE bound of a linear-Gaussian model against
its exact log p(x).
"""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import multivariate_normal

import vaejax
from vaejax import config as config_lib
from vaejax.models import base, hierarchical
from vaejax.objectives import bounds

from run_helpers import REPO

IMAGE_SHAPE, Z1, Z2 = (2, 3, 1), 3, 2  # tiny: x flattens to (6,)


def tiny_model(**kw):
    fields = dict(image_shape=IMAGE_SHAPE, latent_dims=(Z1, Z2), hidden_sizes=((5, 4), (4,)))
    return hierarchical.two_layer_vae(**{**fields, **kw})


def functions(model, params):
    """(encode, decode, prior) as the bounds take them."""
    encode = functools.partial(model.posterior, params)
    decode = functools.partial(model.likelihood, params)
    return encode, decode, model.prior(params)


def binary_x(key, model):
    return jax.random.bernoulli(key, 0.5, model.data_shape).astype(jnp.float32)


# -- plain jnp, independent of flax and vaejax.distributions ------------------------------

def dense_stack(layers, h):
    """tanh between Dense layers {"Dense_i": {"kernel", "bias"}}, none after the last."""
    for i in range(len(layers)):
        out = h @ layers[f"Dense_{i}"]["kernel"]
        h = out + jnp.broadcast_to(layers[f"Dense_{i}"]["bias"], out.shape)
        if i < len(layers) - 1:
            h = jnp.tanh(h)
    return h


def halves(h):
    d = h.shape[-1] // 2
    return h[..., :d], h[..., d:]


def normal_log_pdf(z, mean, logvar):
    """Sum over the last axis of log N(z; mean, exp(logvar)), all arguments the same shape."""
    return jnp.sum(-0.5 * (math.log(2 * math.pi) + logvar + (z - mean) ** 2 / jnp.exp(logvar)), -1)


def hand_log_weights(key, x, params, num_samples):
    """For the K draws GaussianChain documents: log w_k = log p(x, z_k) - log q(z_k|x), log p(x|z_k)
    and log q(z_k|x) - log p(z_k), each (K,)."""
    key_1, key_2 = jax.random.split(key)
    mean_1, logvar_1 = halves(dense_stack(params["q_z1"], x))
    eps_1 = jax.random.normal(key_1, (num_samples, Z1))
    z1 = mean_1[None] + jnp.exp(0.5 * logvar_1)[None] * eps_1
    mean_2, logvar_2 = halves(dense_stack(params["q_z2"], z1))
    z2 = mean_2 + jnp.exp(0.5 * logvar_2) * jax.random.normal(key_2, (num_samples, Z2))
    log_q = (normal_log_pdf(z1, jnp.broadcast_to(mean_1, z1.shape), jnp.broadcast_to(logvar_1, z1.shape))
             + normal_log_pdf(z2, mean_2, logvar_2))
    prior_mean_1, prior_logvar_1 = halves(dense_stack(params["p_z1"], z2))
    log_p_z = normal_log_pdf(z2, jnp.zeros_like(z2), jnp.zeros_like(z2)) + normal_log_pdf(
        z1, prior_mean_1, prior_logvar_1)
    logits = dense_stack(params["p_x"], z1)  # (K, 6)
    log_px_z = jnp.sum(x[None] * logits - jnp.logaddexp(0.0, logits), -1)
    return log_px_z + log_p_z - log_q, log_px_z, log_q - log_p_z


# -- the bounds --------------------------------------------------------------------------

def test_architecture_and_shapes():
    model = hierarchical.two_layer_vae(image_shape=(28, 28, 1))  # the paper's
    params = model.init(jax.random.key(0))
    shapes = jax.tree.map(jnp.shape, params)
    assert [shapes["q_z1"][f"Dense_{i}"]["kernel"] for i in range(3)] == [(784, 200), (200, 200), (200, 200)]
    assert [shapes["q_z2"][f"Dense_{i}"]["kernel"] for i in range(3)] == [(100, 100), (100, 100), (100, 100)]
    assert [shapes["p_z1"][f"Dense_{i}"]["kernel"] for i in range(3)] == [(50, 100), (100, 100), (100, 200)]
    assert [shapes["p_x"][f"Dense_{i}"]["kernel"] for i in range(3)] == [(100, 200), (200, 200), (200, 784)]
    assert model.data_shape == (784,)
    # yburda/iwae, experiments.py --layers 2: 784-200-200-100(z1)-100-100-50(z2), mirrored in p
    assert base.num_params(params) == 521_084
    q = model.posterior(params, jnp.zeros(784))
    assert q.event_shape == {"z1": (100,), "z2": (50,)}
    assert model.prior(params).event_shape == {"z2": (50,), "z1": (100,)}
    z, log_q = q.sample_and_log_prob(seed=jax.random.key(1), sample_shape=(7,))
    chex.assert_shape([z["z1"], z["z2"], log_q], [(7, 100), (7, 50), (7,)])
    p_x = model.likelihood(params, jax.tree.map(lambda a: a[0], z))
    assert isinstance(p_x, vaejax.Bernoulli) and p_x.logits.shape == (784,)


@pytest.mark.parametrize("gaussian_logvar", ["learned", -1.0])
def test_gaussian_likelihood(gaussian_logvar):
    model = tiny_model(likelihood="gaussian", gaussian_logvar=gaussian_logvar)
    params = model.init(jax.random.key(0))
    assert ("logvar" in params["p_x"]) == (gaussian_logvar == "learned")
    p_x = model.likelihood(params, {"z1": jnp.ones(Z1), "z2": jnp.ones(Z2)})
    assert isinstance(p_x, vaejax.DiagGaussian) and p_x.event_shape == (6,)
    np.testing.assert_allclose(p_x.variance(), math.exp(0.0 if gaussian_logvar == "learned" else -1.0),
                               rtol=1e-6)


def test_elbo_and_iwae_equal_the_same_draws_by_hand():
    model = tiny_model()
    params = model.init(jax.random.key(0))
    x = binary_x(jax.random.key(1), model)
    encode, decode, prior = functions(model, params)
    key = jax.random.key(2)
    log_w, log_px_z, kl = jax.jit(hand_log_weights, static_argnums=3)(key, x, params, 4)

    @jax.jit
    def library(key):
        return (vaejax.elbo(key, x, encode, decode, prior=prior, num_samples=4),
                vaejax.iwae_bound(key, x, encode, decode, prior=prior, num_samples=4),
                vaejax.iwae_log_weights(key, x, encode, decode, prior=prior, num_samples=4),
                vaejax.iwae_bound(key, x, encode, decode, prior=prior, num_samples=1)[0])

    (elbo, elbo_aux), (iwae, iwae_aux), library_log_w, iwae_1 = library(key)
    np.testing.assert_allclose(elbo, jnp.mean(log_w), rtol=1e-5)
    np.testing.assert_allclose(elbo_aux["reconstruction"], jnp.mean(log_px_z), rtol=1e-5)
    np.testing.assert_allclose(elbo_aux["kl"], jnp.mean(kl), rtol=1e-5, atol=1e-6)
    assert "kl_per_dim" not in elbo_aux  # no closed form for a chain: the Monte Carlo KL
    np.testing.assert_allclose(iwae, jax.nn.logsumexp(log_w) - math.log(4), rtol=1e-5)
    np.testing.assert_allclose(iwae_aux["elbo"], jnp.mean(log_w), rtol=1e-5)
    np.testing.assert_allclose(library_log_w, log_w, rtol=1e-5)
    # K = 1 takes the bounds' unvmapped path.
    np.testing.assert_allclose(iwae_1, hand_log_weights(key, x, params, 1)[0][0], rtol=1e-5)


def test_log_prob_of_a_draw_is_the_density_returned_with_it_and_mean_is_ancestral():
    model = tiny_model()
    params = model.init(jax.random.key(0))
    q = model.posterior(params, binary_x(jax.random.key(1), model))
    z, log_q = q.sample_and_log_prob(seed=jax.random.key(3), sample_shape=(2, 5))
    np.testing.assert_allclose(q.log_prob(z), log_q, rtol=1e-5)
    chex.assert_trees_all_equal(q.sample(seed=jax.random.key(3), sample_shape=(2, 5)), z)
    mean = q.mean()
    expected_z2, _ = halves(dense_stack(params["q_z2"], q.first.loc))
    chex.assert_trees_all_close(mean, {"z1": q.first.loc, "z2": expected_z2}, rtol=1e-5)


# -- the exact case: a linear-Gaussian chain ----------------------------------------------

def linear_gaussian(x_dim=4, z1_dim=3, z2_dim=2):
    """A model built with linear layers and a Gaussian likelihood, parameters set by hand:
    p(z2) = N(0, I), p(z1|z2) = N(A z2 + b, S1), p(x|z1) = N(C z1 + d, Sx); and q set to
    the exact posterior with its covariances made diagonal (q's only error)."""
    model = hierarchical.two_layer_vae(image_shape=(x_dim,), latent_dims=(z1_dim, z2_dim),
                                    hidden_sizes=((), ()), likelihood="gaussian")
    ka, kb, kc, kd = jax.random.split(jax.random.key(10), 4)
    a = jax.random.normal(ka, (z1_dim, z2_dim))
    b = jax.random.normal(kb, (z1_dim,))
    c = jax.random.normal(kc, (x_dim, z1_dim))
    d = jax.random.normal(kd, (x_dim,))
    s1 = jnp.array([0.3, 0.5, 0.4])[:z1_dim]
    sx = jnp.full((x_dim,), 0.5)
    # Exact posteriors: z1 | x and z2 | z1 (= z2 | z1, x).
    cov_1 = a @ a.T + jnp.diag(s1)
    cov_x = c @ cov_1 @ c.T + jnp.diag(sx)
    gain = cov_1 @ c.T @ jnp.linalg.inv(cov_x)  # E[z1|x] = b + gain (x - C b - d)
    cov_1_given_x = cov_1 - gain @ c @ cov_1
    cov_2_given_1 = jnp.linalg.inv(jnp.eye(z2_dim) + a.T @ jnp.diag(1 / s1) @ a)
    gain_2 = cov_2_given_1 @ a.T @ jnp.diag(1 / s1)  # E[z2|z1] = gain_2 (z1 - b)

    def dense(kernel_mean, bias_mean, logvar):
        zeros = jnp.zeros((kernel_mean.shape[0], logvar.shape[0]))
        return {"Dense_0": {"kernel": jnp.concatenate([kernel_mean, zeros], 1),
                            "bias": jnp.concatenate([bias_mean, logvar])}}

    params = {
        "q_z1": dense(gain.T, b - gain @ (c @ b + d), jnp.log(jnp.diag(cov_1_given_x))),
        "q_z2": dense(gain_2.T, -gain_2 @ b, jnp.log(jnp.diag(cov_2_given_1))),
        "p_z1": dense(a.T, b, jnp.log(s1)),
        "p_x": {"decoder": {"Dense_0": {"kernel": c.T, "bias": d}}, "logvar": jnp.log(sx)},
    }
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, model.init(jax.random.key(0)))
    marginal_x = (c @ b + d, cov_x)
    return model, params, (a, b, s1), marginal_x


def test_prior_samples_have_the_linear_chains_moments_and_density():
    model, params, (a, b, s1), _ = linear_gaussian()
    prior = model.prior(params)
    n = 100_000
    z = prior.sample(seed=jax.random.key(4), sample_shape=(n,))
    chex.assert_shape([z["z1"], z["z2"]], [(n, 3), (n, 2)])
    # Joint of (z1, z2): mean (b, 0), covariance [[A A^T + S1, A], [A^T, I]].
    joint = jnp.concatenate([z["z1"], z["z2"]], 1)
    mean = jnp.concatenate([b, jnp.zeros(2)])
    cov = jnp.block([[a @ a.T + jnp.diag(s1), a], [a.T, jnp.eye(2)]])
    sd = jnp.sqrt(jnp.diag(cov))
    np.testing.assert_array_less(jnp.abs(jnp.mean(joint, 0) - mean), 5 * sd / math.sqrt(n))
    cov_se = jnp.sqrt((jnp.outer(sd**2, sd**2) + cov**2) / n)  # SE of a sample covariance
    np.testing.assert_array_less(jnp.abs(jnp.cov(joint.T) - cov), 5 * cov_se)
    # log p(z1, z2) is the joint Gaussian's density.
    np.testing.assert_allclose(prior.log_prob(jax.tree.map(lambda v: v[:10], z)),
                               jax.vmap(lambda z: multivariate_normal.logpdf(z, mean, cov))(joint[:10]),
                               rtol=1e-4)
    chex.assert_trees_all_close(prior.mean(), {"z2": jnp.zeros(2), "z1": b}, atol=1e-6)


def test_iwae_approaches_the_exact_log_likelihood_from_below():
    """x ~ N(C b + d, C (A A^T + S1) C^T + Sx) exactly. MIWAE(M, K) is the mean of M independent
    K-sample IWAE bounds, so M = N / K groups of the same N draws average IWAE(K) over M keys."""
    model, params, _, (mean_x, cov_x) = linear_gaussian()
    x = mean_x + jnp.linalg.cholesky(cov_x) @ jax.random.normal(jax.random.key(5), mean_x.shape)
    exact = multivariate_normal.logpdf(x, mean_x, cov_x)
    encode, decode, prior = functions(model, params)
    key, n = jax.random.key(6), 64_000
    log_w = jax.jit(lambda key: vaejax.iwae_log_weights(key, x, encode, decode, prior=prior,
                                                        num_samples=n))(key)

    def iwae(k):
        """Mean of n / k IWAE(k) bounds, and its standard error."""
        bound = jax.jit(lambda key: vaejax.miwae_bound(key, x, encode, decode, prior=prior,
                                                       num_groups=n // k, num_samples=k)[0])
        groups = jax.nn.logsumexp(log_w.reshape(n // k, k), -1) - math.log(k)
        np.testing.assert_allclose(bound(key), jnp.mean(groups), rtol=1e-5)
        return jnp.mean(groups), jnp.std(groups) / math.sqrt(n // k)

    (k1, se1), (k10, se10), (k1000, se1000) = iwae(1), iwae(10), iwae(1000)
    assert k1 + 10 * se1 < k10 < exact - 3 * se10, (k1, k10, exact)  # gaps of 0.17, then 0.015 nats
    assert k10 < k1000, (k10, k1000)
    assert abs(k1000 - exact) < 4 * se1000 < 0.01, (k1000, se1000, exact)
    elbo, _ = jax.jit(lambda key: vaejax.elbo(key, x, encode, decode, prior=prior, num_samples=n))(key)
    np.testing.assert_allclose(elbo, k1, rtol=1e-5)  # the same draws
    assert elbo + 10 * se1 < exact  # q's diagonal covariances cost a visible gap


# -- L = 3, both inference models: a diagonal linear-Gaussian chain ----------------------

def scalar_chain():
    """z3 -> z2 -> z1 -> x, each of dimension D = 2, every map elementwise:
    z3 ~ N(0, 1), z2 = a2 z3 + b2 + N(0, s2), z1 = a1 z2 + b1 + N(0, s1), x = c z1 + c0 + N(0, sx).
    Each dimension is its own scalar chain, so every exact posterior factor below is a
    diagonal Gaussian: both inference models can represent it."""
    f = lambda *v: jnp.array(v, jnp.float32)  # noqa: E731
    return dict(a2=f(0.8, -1.2), b2=f(0.3, -0.5), s2=f(0.4, 0.6), a1=f(1.5, 0.7), b1=f(-0.2, 0.4),
                s1=f(0.3, 0.5), c=f(-1.1, 1.3), c0=f(0.5, 0.1), sx=f(0.2, 0.35))


def chain_moments(p):
    """The marginal means and variances of z3, z2, z1 and x (elementwise)."""
    m3, v3 = jnp.zeros(2), jnp.ones(2)
    m2, v2 = p["a2"] * m3 + p["b2"], p["a2"] ** 2 * v3 + p["s2"]
    m1, v1 = p["a1"] * m2 + p["b1"], p["a1"] ** 2 * v2 + p["s1"]
    mx, vx = p["c"] * m1 + p["c0"], p["c"] ** 2 * v1 + p["sx"]
    return (m3, v3), (m2, v2), (m1, v1), (mx, vx)


def exact_log_px(p, x):
    _, _, _, (mx, vx) = chain_moments(p)
    return jnp.sum(-0.5 * (jnp.log(2 * jnp.pi * vx) + (x - mx) ** 2 / vx))


def diag_dense(weight, bias, var):
    """A Dense(2D) layer's parameters giving mean = weight * input + bias (elementwise) and a
    constant logvar = log(var)."""
    return {"Dense_0": {"kernel": jnp.concatenate([jnp.diag(weight), jnp.zeros((2, 2))], 1),
                        "bias": jnp.concatenate([bias, jnp.log(var)])}}


def exact_chain_model(inference):
    """The L = 3 model at `scalar_chain`'s generative parameters, with q(z|x) set to the exact
    posterior: bottom-up p(z1|x) p(z2|z1) p(z3|z2) (the reverse of a Markov chain is Markov),
    or the ladder's q(z3|x) and the bottom-up terms p(x|z_i) as Gaussians in z_i."""
    kind = {"bottom_up": hierarchical.hierarchical_vae, "ladder": hierarchical.ladder_vae}[inference]
    model = kind(image_shape=(2,), latent_dims=(2, 2, 2), hidden_sizes=((), (), ()),
                 variance="exp", likelihood="gaussian")
    p = scalar_chain()
    (m3, v3), (m2, v2), (m1, v1), (mx, vx) = chain_moments(p)
    params = {
        "p_z2": diag_dense(p["a2"], p["b2"], p["s2"]),
        "p_z1": diag_dense(p["a1"], p["b1"], p["s1"]),
        "p_x": {"decoder": {"Dense_0": {"kernel": jnp.diag(p["c"]), "bias": p["c0"]}},
                "logvar": jnp.log(p["sx"])},
    }
    if inference == "bottom_up":  # Gaussian conditioning, one scalar pair at a time
        def conditional(cov, v_given, m_given, m_out, v_out):
            gain = cov / v_given
            return diag_dense(gain, m_out - gain * m_given, v_out - gain * cov)
        params["q_z1"] = conditional(p["c"] * v1, vx, mx, m1, v1)
        params["q_z2"] = conditional(p["a1"] * v2, v1, m1, m2, v2)
        params["q_z3"] = conditional(p["a2"] * v3, v2, m2, m3, v3)
    else:
        cov_3x = p["c"] * p["a1"] * p["a2"] * v3
        gain = cov_3x / vx
        params["up_z3"] = diag_dense(gain, m3 - gain * mx, v3 - gain * cov_3x)
        # p(x | z2) = N(c a1 z2 + c b1 + c0, c^2 s1 + sx): as a Gaussian in z2.
        ca = p["c"] * p["a1"]
        params["up_z2"] = diag_dense(1 / ca, -(p["c"] * p["b1"] + p["c0"]) / ca,
                                     (p["c"] ** 2 * p["s1"] + p["sx"]) / ca ** 2)
        params["up_z1"] = diag_dense(1 / p["c"], -p["c0"] / p["c"], p["sx"] / p["c"] ** 2)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, model.init(jax.random.key(0)))
    return model, params, p


@pytest.mark.parametrize("inference", ["bottom_up", "ladder"])
def test_three_layers_at_the_exact_posterior_every_log_weight_is_log_px(inference):
    """log p(x, z) - log q(z|x) = log p(x) for every z when q is the exact posterior: the ELBO
    and every IWAE bound equal the closed-form log p(x)."""
    model, params, p = exact_chain_model(inference)
    encode, decode, prior = functions(model, params)
    for x in (jnp.array([0.7, -1.4]), jnp.array([-2.0, 3.0])):
        exact = exact_log_px(p, x)
        log_w = vaejax.iwae_log_weights(jax.random.key(1), x, encode, decode, prior=prior,
                                        num_samples=64)
        np.testing.assert_allclose(log_w, jnp.full(64, exact), atol=2e-4)
        elbo, _ = vaejax.elbo(jax.random.key(2), x, encode, decode, prior=prior, num_samples=8)
        np.testing.assert_allclose(elbo, exact, atol=2e-4)


@pytest.mark.parametrize("inference", ["bottom_up", "ladder"])
def test_three_layers_away_from_the_posterior_the_bounds_climb_to_log_px(inference):
    """With q's means shifted, ELBO < IWAE(10) < IWAE(1000) ~ log p(x), within standard errors."""
    model, params, p = exact_chain_model(inference)
    first = "q_z1" if inference == "bottom_up" else "up_z3"
    params[first]["Dense_0"]["bias"] = params[first]["Dense_0"]["bias"].at[:2].add(0.6)
    encode, decode, prior = functions(model, params)
    x = jnp.array([0.7, -1.4])
    exact = exact_log_px(p, x)
    n = 64_000
    log_w = jax.jit(lambda key: vaejax.iwae_log_weights(key, x, encode, decode, prior=prior,
                                                        num_samples=n))(jax.random.key(3))

    def iwae(k):
        groups = jax.nn.logsumexp(log_w.reshape(n // k, k), -1) - math.log(k)
        return jnp.mean(groups), jnp.std(groups) / math.sqrt(n // k)

    (k1, se1), (k10, se10), (k1000, se1000) = iwae(1), iwae(10), iwae(1000)
    assert k1 + 10 * se1 < k10 < exact - 3 * se10, (k1, k10, exact)
    assert abs(k1000 - exact) < 4 * se1000 + 1e-3, (k1000, se1000, exact)


def test_ladder_merges_the_bottom_up_term_with_the_prior_by_precision():
    """q(z_i | z_{i+1}, x) is N(mu^, var^) * N(mu_p, var_p) renormalized, checked in plain jnp."""
    model = hierarchical.ladder_vae(image_shape=IMAGE_SHAPE, latent_dims=(3, 2, 2),
                                    hidden_sizes=((5,), (4,), (3,)), variance="exp")
    params = model.init(jax.random.key(0))
    x = binary_x(jax.random.key(1), model)
    q = model.posterior(params, x)
    assert q.names == ("z3", "z2", "z1") and q.event_shape == {"z3": (2,), "z2": (2,), "z1": (3,)}
    z, log_q = q.sample_and_log_prob(seed=jax.random.key(2), sample_shape=(4,))
    # bottom-up by hand: d1 = tanh(Dense(x)), d2 = tanh(Dense(d1)), d3 = tanh(Dense(d2))
    d, heads = x, {}
    for name in ("z1", "z2", "z3"):
        block = params[f"up_{name}"]
        d = jnp.tanh(d @ block["Dense_0"]["kernel"] + block["Dense_0"]["bias"])
        heads[name] = halves(d @ block["Dense_1"]["kernel"] + block["Dense_1"]["bias"])
    expected = normal_log_pdf(z["z3"], *jnp.broadcast_arrays(*heads["z3"], z["z3"])[:2])
    for name, above in (("z2", "z3"), ("z1", "z2")):
        mean_p, logvar_p = halves(dense_stack(params[f"p_{name}"], z[above]))
        mean_u, logvar_u = (jnp.broadcast_to(h, mean_p.shape) for h in heads[name])
        precision = jnp.exp(-logvar_u) + jnp.exp(-logvar_p)
        mean = (mean_u * jnp.exp(-logvar_u) + mean_p * jnp.exp(-logvar_p)) / precision
        expected = expected + normal_log_pdf(z[name], mean, -jnp.log(precision))
    np.testing.assert_allclose(log_q, expected, rtol=1e-5)
    np.testing.assert_allclose(q.log_prob(z), log_q, rtol=1e-5)
    chex.assert_trees_all_equal(q.sample(seed=jax.random.key(2), sample_shape=(4,)), z)
    # the generative model is the bottom-up model's: same names, same prior
    bottom_up = hierarchical.hierarchical_vae(image_shape=IMAGE_SHAPE, latent_dims=(3, 2, 2),
                                              hidden_sizes=((5,), (4,), (3,)), variance="exp")
    shared = {k: v for k, v in params.items() if k.startswith("p_")}
    assert set(shared) == {k for k in bottom_up.init(jax.random.key(0)) if k.startswith("p_")}
    bu_params = {**bottom_up.init(jax.random.key(0)), **shared}
    np.testing.assert_allclose(bottom_up.prior(bu_params).log_prob(z), model.prior(params).log_prob(z),
                               rtol=1e-6)


def test_softplus_variances_are_the_lvae_codes():
    """variance="softplus": var = softplus(raw) + 1e-5 for every Gaussian of the model."""
    raw = jnp.array([-30.0, -1.0, 0.0, 2.0, 50.0])
    np.testing.assert_allclose(jnp.exp(hierarchical.log_variance("softplus", raw)),
                               np.log1p(np.exp(np.asarray(raw, np.float64))) + 1e-5, rtol=1e-5)
    np.testing.assert_array_equal(hierarchical.log_variance("exp", raw), raw)
    model = hierarchical.ladder_vae(image_shape=IMAGE_SHAPE, latent_dims=(3, 2), hidden_sizes=((5,), (4,)))
    params = model.init(jax.random.key(0))
    x = binary_x(jax.random.key(1), model)
    top = params["up_z2"]
    d1 = jnp.tanh(x @ params["up_z1"]["Dense_0"]["kernel"] + params["up_z1"]["Dense_0"]["bias"])
    d2 = jnp.tanh(d1 @ top["Dense_0"]["kernel"] + top["Dense_0"]["bias"])
    _, raw = halves(d2 @ top["Dense_1"]["kernel"] + top["Dense_1"]["bias"])
    np.testing.assert_allclose(jnp.exp(model.posterior(params, x).top.logvar),
                               jax.nn.softplus(raw) + 1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="Unknown model.variance 'relu'"):
        hierarchical.ladder_vae(image_shape=IMAGE_SHAPE, latent_dims=(3, 2), hidden_sizes=((5,), (4,)),
                                variance="relu")


def test_sample_to_depth_draws_the_top_layers_and_sets_the_rest_at_their_means():
    model = hierarchical.hierarchical_vae(image_shape=IMAGE_SHAPE, latent_dims=(3, 2, 2),
                                          hidden_sizes=((5,), (4,), (3,)))
    prior = model.prior(model.init(jax.random.key(0)))
    key = jax.random.key(5)
    full = prior.sample(seed=key, sample_shape=(4,))
    chex.assert_trees_all_close(prior.sample_to_depth(seed=key, depth=2, sample_shape=(4,)), full,
                                rtol=1e-6)
    top = prior.sample_to_depth(seed=key, depth=0, sample_shape=(4,))
    np.testing.assert_array_equal(top["z3"], full["z3"])  # the same top draws
    mean_2, _ = prior.conditionals[0].apply({"params": prior.params[0]}, top["z3"])
    mean_1, _ = prior.conditionals[1].apply({"params": prior.params[1]}, mean_2)
    chex.assert_trees_all_close((top["z2"], top["z1"]), (mean_2, mean_1), rtol=1e-6)


def test_log_prob_parts_are_one_term_per_layer():
    for kind in (hierarchical.hierarchical_vae, hierarchical.ladder_vae):
        model = kind(image_shape=IMAGE_SHAPE, latent_dims=(3, 2, 2), hidden_sizes=((5,), (4,), (3,)))
        params = model.init(jax.random.key(0))
        q, prior = model.posterior(params, binary_x(jax.random.key(1), model)), model.prior(params)
        z = q.sample(seed=jax.random.key(2), sample_shape=(5,))
        for dist in (q, prior):
            parts = dist.log_prob_parts(z)
            assert set(parts) == {"z1", "z2", "z3"}
            np.testing.assert_allclose(sum(parts.values()), dist.log_prob(z), rtol=1e-6)


# -- transforms ---------------------------------------------------------------------------

def test_vmap_jit_and_batch_bounds():
    model = tiny_model()
    params = model.init(jax.random.key(0))
    x_B = jax.random.bernoulli(jax.random.key(1), 0.5, (3,) + model.data_shape).astype(jnp.float32)
    encode, decode, prior = functions(model, params)
    key = jax.random.key(2)
    batch = jax.jit(lambda key, x: vaejax.batch_iwae_bound(key, x, encode, decode, prior=prior,
                                                            num_samples=5)[0])
    keys = jax.random.split(key, 3)
    one = jax.jit(lambda k, x: vaejax.iwae_bound(k, x, encode, decode, prior=prior, num_samples=5)[0])
    one_by_one = [one(k, x) for k, x in zip(keys, x_B)]
    np.testing.assert_allclose(batch(key, x_B), np.mean(one_by_one), rtol=1e-5)
    value, aux = jax.jit(lambda key, x: vaejax.batch_elbo(key, x, encode, decode, prior=prior))(key, x_B)
    assert np.isfinite(value) and np.isfinite(aux["kl"])
    q = jax.jit(model.posterior)(params, x_B[0])  # a chain comes out of jit and vmap
    chex.assert_trees_all_close(q.mean(), model.posterior(params, x_B[0]).mean(), rtol=1e-6)
    q_B = jax.vmap(model.posterior, (None, 0))(params, x_B)
    chex.assert_shape([q_B.first.loc, q_B.first.logvar], (3, Z1))
    z_B = jax.vmap(lambda q, k: q.sample(seed=k))(q_B, keys)
    chex.assert_shape([z_B["z1"], z_B["z2"]], [(3, Z1), (3, Z2)])


def test_stop_gradient_of_parameters_keeps_the_density_and_stops_its_gradient():
    model = tiny_model()
    params = model.init(jax.random.key(0))
    x = binary_x(jax.random.key(1), model)
    z = model.posterior(params, x).sample(seed=jax.random.key(2), sample_shape=(3,))

    def log_q(params, z, stop):
        q = model.posterior(params, x)
        if stop:
            q = bounds.stop_gradient_parameters(q)
        return jnp.sum(q.log_prob(z))

    value_and_grads = jax.jit(jax.value_and_grad(log_q, (0, 1)), static_argnums=2)
    stopped, (params_grad_stopped, z_grad_stopped) = value_and_grads(params, z, True)
    value, (params_grad, z_grad) = value_and_grads(params, z, False)
    np.testing.assert_allclose(stopped, value, rtol=1e-6)
    assert all(np.all(g == 0) for g in jax.tree.leaves(params_grad_stopped))
    assert any(np.any(g != 0) for g in jax.tree.leaves(params_grad))
    chex.assert_trees_all_close(z_grad_stopped, z_grad, rtol=1e-5)


@pytest.mark.parametrize("bound,estimator", [("elbo", "reparam"), ("elbo", "stl"), ("iwae", "reparam"),
                                             ("iwae", "stl"), ("iwae", "dreg")])
def test_gradients_are_finite(bound, estimator):
    model = tiny_model()
    params = model.init(jax.random.key(0))
    x_B = jax.random.bernoulli(jax.random.key(1), 0.5, (2,) + model.data_shape).astype(jnp.float32)

    @jax.jit
    def loss(params):
        encode, decode, prior = functions(model, params)
        if bound == "elbo":
            return -vaejax.batch_elbo(jax.random.key(2), x_B, encode, decode, prior=prior,
                                      num_samples=2, gradient_estimator=estimator)[0]
        return -vaejax.batch_iwae_bound(jax.random.key(2), x_B, encode, decode, prior=prior,
                                        num_samples=4, gradient_estimator=estimator)[0]

    grads = jax.grad(loss)(params)
    for name in ("q_z1", "q_z2", "p_z1", "p_x"):
        leaves = jax.tree.leaves(grads[name])
        assert all(np.all(np.isfinite(g)) for g in leaves), name
        assert any(np.any(g != 0) for g in leaves), name


# -- errors, registry and the experiment --------------------------------------------------

def test_wrong_shapes_are_clear_errors():
    model = tiny_model()
    params = model.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"one example of shape \(6,\)"):
        model.posterior(params, jnp.zeros((2, 6)))
    with pytest.raises(ValueError, match=r"'z1' of shape \(3,\)"):
        model.likelihood(params, jnp.zeros(3))
    with pytest.raises(ValueError, match=r"'z1' of shape \(3,\)"):
        model.likelihood(params, {"z1": jnp.zeros((4, 3)), "z2": jnp.zeros((4, 2))})
    with pytest.raises(ValueError, match="one entry per stochastic layer"):
        tiny_model(latent_dims=(3,))
    with pytest.raises(ValueError, match="Unknown model.likelihood"):
        tiny_model(likelihood="poisson")


def test_experiment_builds_the_papers_model_by_name():
    config = config_lib.load_config(REPO / "experiments" / "iwae_two_layer.py")
    assert config.model.kind == "two_layer" and config.objective.kind == "elbo"
    mean_image = np.linspace(0.0, 1.0, 784, dtype=np.float32).reshape(28, 28, 1)
    model = base.build(config.model, (28, 28, 1), mean_image=mean_image)
    assert isinstance(model, hierarchical.HierarchicalVAE) and model.latent_dims == (100, 50)
    params = model.init(jax.random.key(0))
    assert base.num_params(params) == 521_084
    # the decoder's output bias starts at the logit of the (clipped) mean image, as Burda's code
    p = np.clip(mean_image.reshape(-1).astype(np.float64), 0.001, 0.999)
    np.testing.assert_allclose(params["p_x"]["Dense_2"]["bias"], np.log(p / (1 - p)), rtol=1e-5, atol=1e-5)
    runs = config_lib.load_module(REPO / "experiments" / "iwae_two_layer.py").get_sweep()
    assert [r["seed"] for r in runs] == [0, 1, 2]
