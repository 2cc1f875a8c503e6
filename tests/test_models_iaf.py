"""The IAF posterior (`vaejax.models.iaf`): autoregressive masks, log-determinants, the inverse,
and the bounds against a hand computation in plain jnp. Tiny shapes: Z = 1..5 latents."""

import dataclasses
import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import vaejax
from vaejax import distributions, models
from vaejax.config import load_config
from vaejax.models import iaf

IMAGE_SHAPE = (4, 4, 1)  # 16 pixels

# Every computation is jitted, and few shapes are used: XLA:CPU takes seconds to compile even
# tiny programs (and eager flax compiles each op), which would dominate the run time.


def _vae(**kw):
    fields = dict(image_shape=IMAGE_SHAPE, latent_dim=4, hidden_sizes=(8,), flow_hidden_sizes=(12, 12),
                  context_dim=3, flow_steps=2) | kw
    return iaf.iaf_vae(**fields)


def _noisy(params, key):
    """params plus N(0, 0.3^2) on every entry, biases included, so that no connection the masks
    allow is zero by accident of the initialization."""
    flat, unravel = ravel_pytree(params)
    return unravel(flat + 0.3 * jax.random.normal(key, flat.shape))


@functools.partial(jax.jit, static_argnums=0)
def _params(vae):
    return _noisy(vae.init(jax.random.key(0)), jax.random.key(1))


def _x():
    return (jax.random.uniform(jax.random.key(2), (math.prod(IMAGE_SHAPE),)) < 0.4).astype(jnp.float32)


@functools.cache
def _flow(latent_dim=5, flow_steps=3, context_dim=2):
    """An `IAFPosterior` with a random base N(loc, exp(logvar)), context and MADE parameters
    (hidden sizes (12, 12), tanh): the flow alone, without an encoder."""
    made = iaf.MADE(latent_dim, (12, 12), "tanh")

    @jax.jit
    def build(key):
        keys = jax.random.split(key, 3 + flow_steps)
        h = jax.random.normal(keys[0], (context_dim,))
        flow_params = {}
        for t in range(flow_steps):
            init = made.init(keys[3 + t], jnp.zeros(latent_dim), h)["params"]
            flow_params[f"step_{t}"] = _noisy(init, keys[3 + t])
        loc = 0.5 * jax.random.normal(keys[1], (latent_dim,))
        logvar = 0.3 * jax.random.normal(keys[2], (latent_dim,))
        return iaf.IAFPosterior(loc, logvar, h, flow_params, made)

    return build(jax.random.key(3))


def _first_steps(q, num_steps):
    """q with only its first `num_steps` flow steps."""
    kept = {f"step_{t}": q.flow_params[f"step_{t}"] for t in range(num_steps)}
    return dataclasses.replace(q, flow_params=kept)


def _strictly_upper(a):
    return a[np.triu_indices(a.shape[-1], 1)]


# -- the MADE network -------------------------------------------------------------------------


@pytest.mark.parametrize("latent_dim,hidden_sizes", [(5, (7, 9)), (5, ()), (1, (4,)), (3, (2,))])
def test_made_output_d_depends_on_z_before_d_and_all_of_the_context(latent_dim, hidden_sizes):
    made = iaf.MADE(latent_dim, hidden_sizes, "tanh")

    @jax.jit
    def jacobians(z, h):
        params = made.init(jax.random.key(2), z, h)["params"]
        params = jax.tree.map(lambda a: a + 0.3, params)  # nonzero biases
        def apply(z, h):
            return made.apply({"params": params}, z, h)

        return jax.jacfwd(apply, argnums=(0, 1))(z, h)  # ((dm/dz, dm/dh), (ds/dz, ds/dh))

    z, h = jax.random.normal(jax.random.key(0), (latent_dim,)), jax.random.normal(jax.random.key(1), (2,))
    for dz, dh in jacobians(z, h):  # m, then s
        chex.assert_shape(dz, (latent_dim, latent_dim))
        np.testing.assert_array_equal(np.triu(dz), 0.0)  # d reads nothing of z_{>=d}
        assert np.all(np.abs(dh) > 0), dh  # every output reads the context
        if not hidden_sizes or min(hidden_sizes) >= latent_dim:
            assert np.all(np.abs(dz[np.tril_indices(latent_dim, -1)]) > 0), dz  # and all of z_{<d}


def test_masked_dense_is_a_masked_flax_dense():
    layer = iaf.MaskedDense((1, 2, 3), (0, 1, 2, 1), strict=False)
    x = jnp.arange(1.0, 4.0)
    params = jax.jit(layer.init)(jax.random.key(0), x)["params"]
    mask = np.array([[0, 1, 1, 1], [0, 0, 1, 0], [0, 0, 0, 0]], np.float32)
    np.testing.assert_array_equal(layer.mask(), mask)
    expected = x @ (params["kernel"] * mask) + params["bias"]
    np.testing.assert_allclose(layer.apply({"params": params}, x), expected, rtol=1e-6)
    x_BxI = jnp.ones((2, 3))  # leading axes, without implicit rank promotion
    chex.assert_shape(layer.apply({"params": params}, x_BxI), (2, 4))
    strict = iaf.MaskedDense((1, 2, 3), (1, 2, 3), strict=True)
    np.testing.assert_array_equal(strict.mask(), np.triu(np.ones((3, 3)), 1))


# -- the flow: triangular steps, log-determinant, inverse -------------------------------------


def test_each_step_has_a_lower_triangular_jacobian_with_diagonal_sigma():
    q = _flow()
    u = jax.random.normal(jax.random.key(4), (5,))

    @jax.jit
    def steps(q, u):
        return [(jax.jacfwd(lambda u: q.step(t, u)[0])(u), q.step(t, u)[1]) for t in range(q.num_steps)]

    for jac, log_sigma in steps(q, u):
        np.testing.assert_array_equal(_strictly_upper(jac), 0.0)
        np.testing.assert_allclose(np.diag(jac), jnp.exp(log_sigma), rtol=1e-6)
        assert np.all(np.abs(jac[np.tril_indices(5, -1)]) > 0)


@jax.jit
def _flow_jacobian(q, eps):
    """d forward(eps)[0] / d eps, (Z, Z)."""
    return jax.jacfwd(lambda e: q.forward(e)[0])(eps)


def test_one_step_flow_is_triangular_and_two_steps_reverse_the_order_between():
    eps = jax.random.normal(jax.random.key(5), (5,))
    np.testing.assert_array_equal(_strictly_upper(_flow_jacobian(_first_steps(_flow(), 1), eps)), 0.0)

    q = _first_steps(_flow(), 2)

    @jax.jit
    def factors(q, eps):
        z0 = q.loc + jnp.exp(0.5 * q.logvar) * eps
        u1 = q.step(0, z0)[0][::-1]
        return (jax.jacfwd(lambda u: q.step(0, u)[0])(z0), jax.jacfwd(lambda u: q.step(1, u)[0])(u1))

    jac = _flow_jacobian(q, eps)
    j0, j1 = factors(q, eps)  # the steps' triangular Jacobians
    reverse = np.eye(5)[::-1]
    # dz/deps = J_1 P J_0 diag(std), P the reversal
    np.testing.assert_allclose(jac, j1 @ reverse @ j0 @ np.diag(jnp.exp(0.5 * q.logvar)), rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(_strictly_upper(jac)) > 0)  # no longer triangular: the order was reversed


@pytest.mark.parametrize("flow_steps", [0, 1, 3])
def test_log_det_is_slogdet_of_the_jacobian(flow_steps):
    q = _first_steps(_flow(), flow_steps)
    key = jax.random.key(6)
    eps = jax.random.normal(key, (5,))  # the draw of sample_and_log_prob(seed=key)

    @jax.jit
    def forward_and_sample(q):
        return q.forward(eps), q.sample_and_log_prob(seed=key)

    (z, log_det), (z_sampled, log_q) = forward_and_sample(q)
    sign, expected = jnp.linalg.slogdet(_flow_jacobian(q, eps))
    assert sign == 1.0
    np.testing.assert_allclose(log_det, expected, rtol=1e-5, atol=1e-5)
    # and sample_and_log_prob uses it: log q(z) = log N(eps; 0, I) - log|det dz/deps|
    np.testing.assert_allclose(z_sampled, z, rtol=1e-6)
    np.testing.assert_allclose(log_q, vaejax.standard_normal_log_prob(eps) - expected, rtol=1e-5)


def test_the_flow_is_invertible_and_log_prob_matches_sample_and_log_prob():
    q = _flow()
    eps = jax.random.normal(jax.random.key(7), (6, 5))

    @jax.jit
    def check(q, key, eps):
        z, log_q = q.sample_and_log_prob(seed=key, sample_shape=(3, 2))
        steps = [q.step(t, eps[t]) for t in range(3)]
        inverses = [q.inverse_step(t, y) for t, (y, _) in enumerate(steps)]
        return z, log_q, q.log_prob(z), q.inverse(q.forward(eps)[0])[0], steps, inverses

    z, log_q, log_prob, eps_back, steps, inverses = check(q, jax.random.key(8), eps)
    chex.assert_shape(z, (3, 2, 5))
    chex.assert_shape(log_q, (3, 2))
    np.testing.assert_allclose(log_prob, log_q, rtol=1e-5)
    np.testing.assert_allclose(eps_back, eps, rtol=1e-5, atol=1e-5)
    for t, ((_, log_sigma), (u_back, log_sigma_back)) in enumerate(zip(steps, inverses)):
        np.testing.assert_allclose(u_back, eps[t], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(log_sigma_back, log_sigma, rtol=1e-5, atol=1e-6)


def test_log_prob_of_arbitrary_z_integrates_to_one():
    """log_prob on a grid (z not drawn from q): a density, so its integral is 1."""
    q = _flow(latent_dim=2, flow_steps=2)
    grid = jnp.linspace(-9.0, 9.0, 301)
    z = jnp.stack(jnp.meshgrid(grid, grid, indexing="ij"), axis=-1)  # (301, 301, 2)
    density = jnp.exp(jax.jit(lambda q, z: q.log_prob(z))(q, z))
    step = grid[1] - grid[0]
    assert abs(float(jnp.sum(density) * step**2) - 1.0) < 1e-3


def test_zero_flow_steps_is_the_diagonal_gaussian():
    q = _first_steps(_flow(), 0)
    gaussian = distributions.DiagGaussian(q.loc, q.logvar)
    key = jax.random.key(9)
    z, log_q = q.sample_and_log_prob(seed=key, sample_shape=(7,))
    np.testing.assert_allclose(z, gaussian.sample(seed=key, sample_shape=(7,)), rtol=1e-6)
    np.testing.assert_allclose(log_q, gaussian.log_prob(z), rtol=1e-5)
    np.testing.assert_allclose(q.mean(), q.loc, rtol=1e-6)


def test_mean_is_the_flow_of_the_base_mean():
    mean, z, eps = jax.jit(lambda q: (q.mean(), q.forward(jnp.zeros(5))[0], q.inverse(q.mean())[0]))(_flow())
    chex.assert_shape(mean, (5,))
    np.testing.assert_allclose(mean, z)
    np.testing.assert_allclose(eps, jnp.zeros(5), atol=1e-5)


# -- the bounds, against plain jnp ------------------------------------------------------------


def _dense(params, x):
    return x @ params["kernel"] + params["bias"]


def _hand_mask(d_in, d_out, strict):
    d_in, d_out = np.asarray(d_in)[:, None], np.asarray(d_out)[None, :]
    return (d_out > d_in) if strict else (d_out >= d_in)


def _hand_flow(flow_params, eps, loc, logvar, h, forget_bias):
    """eps (Z,) -> (z, sum_t sum_d log sigma_td), written out from the paper with explicit masks."""
    num_latents = eps.shape[0]
    z = loc + jnp.exp(0.5 * logvar) * eps
    log_sigma_sum = 0.0
    for t in range(len(flow_params)):
        p = flow_params[f"step_{t}"]
        if t > 0:
            z = z[::-1]
        d_z = np.arange(1, num_latents + 1)
        d_1 = np.arange(p["hidden_0"]["kernel"].shape[1]) % num_latents
        d_2 = np.arange(p["hidden_1"]["kernel"].shape[1]) % num_latents
        d_out = np.concatenate([d_z, d_z])
        a = z @ (p["hidden_0"]["kernel"] * _hand_mask(d_z, d_1, False)) + p["hidden_0"]["bias"]
        a = jnp.tanh(a + h @ p["context"]["kernel"])
        a = jnp.tanh(a @ (p["hidden_1"]["kernel"] * _hand_mask(d_1, d_2, False)) + p["hidden_1"]["bias"])
        out = a @ (p["output"]["kernel"] * _hand_mask(d_2, d_out, True)) + p["output"]["bias"]
        m, s = out[:num_latents], out[num_latents:] + forget_bias
        sigma = 1.0 / (1.0 + jnp.exp(-s))
        z = sigma * z + (1.0 - sigma) * m
        log_sigma_sum = log_sigma_sum + jnp.sum(jnp.log(sigma))
    return z, log_sigma_sum


def _hand_log_weights(params, x, key, num_samples, num_latents=4, context_dim=3, forget_bias=1.0):
    """log p(x|z_k) + log p(z_k) - log q(z_k|x) for the draws a key gives, in plain jnp."""
    enc, dec = params["encoder"], params["decoder"]
    out = _dense(enc["Dense_1"], jnp.tanh(_dense(enc["Dense_0"], x)))
    loc, logvar, h = out[:num_latents], out[num_latents:2 * num_latents], out[2 * num_latents:]
    assert h.shape == (context_dim,)
    eps_K = jax.random.normal(key, (num_samples, num_latents))
    log_w = []
    for eps in eps_K:
        z, log_sigma_sum = _hand_flow(params["flow"], eps, loc, logvar, h, forget_bias)
        log_q = (-0.5 * jnp.sum(eps**2 + math.log(2 * math.pi)) - 0.5 * jnp.sum(logvar) - log_sigma_sum)
        log_p = -0.5 * jnp.sum(z**2 + math.log(2 * math.pi))
        logits = _dense(dec["Dense_1"], jnp.tanh(_dense(dec["Dense_0"], z)))
        log_px = jnp.sum(x * jnp.log(1.0 / (1.0 + jnp.exp(-logits)))
                         + (1 - x) * jnp.log(1.0 / (1.0 + jnp.exp(logits))))
        log_w.append(log_px + log_p - log_q)
    return jnp.stack(log_w)


def test_elbo_and_iwae_bound_equal_a_hand_computation():
    vae = _vae()
    params, x, key = _params(vae), _x(), jax.random.key(10)

    @jax.jit
    def bounds(params, key, x):
        encode, decode = (lambda x: vae.posterior(params, x)), (lambda z: vae.likelihood(params, z))
        kw = dict(num_samples=6, prior=vae.prior(params))
        return (vaejax.elbo(key, x, encode, decode, **kw), vaejax.iwae_bound(key, x, encode, decode, **kw),
                _hand_log_weights(params, x, key, 6))

    (elbo, elbo_aux), (iwae, iwae_aux), log_w = bounds(params, key, x)
    np.testing.assert_allclose(elbo, jnp.mean(log_w), rtol=1e-5)
    np.testing.assert_allclose(elbo_aux["elbo"], jnp.mean(log_w), rtol=1e-5)
    assert "kl_per_dim" not in elbo_aux  # Monte Carlo KL: no closed form for a flow
    np.testing.assert_allclose(iwae, jax.nn.logsumexp(log_w) - math.log(6), rtol=1e-5)
    np.testing.assert_allclose(iwae_aux["elbo"], jnp.mean(log_w), rtol=1e-5)


def test_prior_samples_have_the_right_shape_and_moments():
    z = _vae(latent_dim=3).prior(None).sample(seed=jax.random.key(11), sample_shape=(20_000,))
    chex.assert_shape(z, (20_000, 3))
    se = 1.0 / math.sqrt(20_000)
    assert np.all(np.abs(np.mean(z, axis=0)) < 4 * se)
    assert np.all(np.abs(np.var(z, axis=0) - 1.0) < 4 * math.sqrt(2) * se)


def test_free_bits_are_refused_with_a_clear_error():
    vae = _vae()
    params = _params(vae)
    encode, decode = (lambda x: vae.posterior(params, x)), (lambda z: vae.likelihood(params, z))
    assert distributions.kl_closed_form(jax.eval_shape(encode, _x()), vae.prior(params)) is None
    with pytest.raises(ValueError, match=r"free_bits needs the closed-form KL per latent dimension.*"
                                         r"q=IAFPosterior, p=StandardNormal.*pass free_bits=0.0"):
        jax.eval_shape(lambda x: vaejax.elbo(jax.random.key(0), x, encode, decode, free_bits=0.5), _x())


# -- the model: batches, jit, training, the registry ------------------------------------------


def test_batched_jitted_elbo_equals_per_example_and_training_lowers_the_loss():
    vae = _vae()
    params = _params(vae)
    x_B = (jax.random.uniform(jax.random.key(12), (8,) + vae.data_shape) < 0.3).astype(jnp.float32)
    key = jax.random.key(13)

    @jax.jit
    def loss_fn(params, key):
        value, _ = vaejax.batch_elbo(key, x_B, lambda x: vae.posterior(params, x),
                                     lambda z: vae.likelihood(params, z), prior=vae.prior(params))
        return -value

    @jax.jit
    def one(params, key, x):  # one example, and the posteriors of the batch through jax.vmap
        value, _ = vaejax.elbo(key, x, lambda x: vae.posterior(params, x), lambda z: vae.likelihood(params, z))
        q_B = jax.vmap(lambda x: vae.posterior(params, x))(x_B)
        return value, q_B, jax.vmap(lambda q, k: q.sample(seed=k))(q_B, jax.random.split(key, 8))

    per_example = [one(params, k, x)[0] for k, x in zip(jax.random.split(key, 8), x_B)]
    np.testing.assert_allclose(loss_fn(params, key), -np.mean(per_example), rtol=1e-5)
    _, q_B, z_B = one(params, key, x_B[0])
    chex.assert_shape([q_B.loc, q_B.logvar, z_B], (8, 4))

    tx = optax.adam(3e-3)

    @jax.jit
    def step(params, opt_state, key):
        grads = jax.grad(loss_fn)(params, key)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, grads

    params, opt_state, grads = step(params, tx.init(params), jax.random.key(14))
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert float(optax.tree.norm(grads["flow"])) > 0.0
    before = loss_fn(params, key)
    for i in range(30):
        params, opt_state, _ = step(params, opt_state, jax.random.key(20 + i))
    assert loss_fn(params, key) < before - 1.0


def test_stl_gradient_goes_through_the_inverse():
    """elbo(gradient_estimator="stl") calls log_prob on the draws: the inverse, differentiated."""
    vae = _vae()

    def value(params, estimator):
        return vaejax.elbo(jax.random.key(15), _x(), lambda x: vae.posterior(params, x),
                           lambda z: vae.likelihood(params, z), gradient_estimator=estimator)[0]

    stl, reparam, grads = jax.jit(lambda p: (value(p, "stl"), value(p, "reparam"),
                                             jax.grad(value)(p, "stl")))(_params(vae))
    np.testing.assert_allclose(stl, reparam, rtol=1e-5)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert float(optax.tree.norm(grads["encoder"])) > 0.0


def test_experiment_config_builds_the_registered_model():
    config = load_config("experiments/iaf.py")
    assert config.model.kind == "iaf" and config.objective.kind == "elbo"
    assert config.objective.num_samples == 1 and config.data.name == "mnist"
    assert config.data.preprocessing == "dynamic_binarize"
    vae = models.build(config.model, (28, 28, 1))
    assert isinstance(vae, iaf.IAFVAE) and vae.data_shape == (784,)
    shapes = jax.eval_shape(vae.init, jax.random.key(0))
    assert shapes["encoder"]["Dense_2"]["kernel"].shape == (200, 2 * 50 + 50)
    assert shapes["decoder"]["Dense_0"]["kernel"].shape == (50, 200)
    assert sorted(shapes["flow"]) == ["step_0", "step_1"]
    step = shapes["flow"]["step_0"]
    assert step["hidden_0"]["kernel"].shape == (50, 320)
    assert step["context"]["kernel"].shape == (50, 320)
    assert step["output"]["kernel"].shape == (320, 100)


def test_no_context_and_bad_fields():
    vae = _vae(context_dim=0)
    params = _params(vae)
    assert "context" not in params["flow"]["step_0"]

    @jax.jit
    def draws(params, key):
        q = vae.posterior(params, _x())
        z, log_q = q.sample_and_log_prob(seed=key, sample_shape=(2,))
        return q, log_q, q.log_prob(z)

    q, log_q, log_prob = draws(params, jax.random.key(1))
    assert q.context is None
    np.testing.assert_allclose(log_prob, log_q, rtol=1e-5)
    with pytest.raises(ValueError, match="one example"):
        vae.posterior(params, jnp.zeros((2, 16)))
    with pytest.raises(ValueError, match=r"model.flow_steps=-1 must be >= 0"):
        _vae(flow_steps=-1)
    with pytest.raises(ValueError, match="Unknown activation"):
        _vae(activation="swishy")
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 4\)"):
        q.log_prob(jnp.zeros(3))
