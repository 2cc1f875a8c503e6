"""The conditional VAE (`vaejax.models.conditional`) and the core's conditioning path: the
label reaches the model in the objectives, evaluation and the data layer.

The hand computations run in float64 NumPy from the parameters alone (dense layers, tanh,
one-hot labels, Gaussian and Bernoulli log-densities); only the standard-normal draws come
from JAX, with the key the bounds use, so the same key gives the same draws.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vaejax
from vaejax import data as data_lib
from vaejax import evaluate, objectives
from vaejax import metrics as metrics_lib
from vaejax import config as config_lib
from vaejax.models import conditional
from vaejax.program import Program

from run_helpers import REPO

IMAGE_SHAPE = (2, 3, 1)  # flattened to (6,)
LATENT, CLASSES = 3, 4


def _model(**kw):
    fields = dict(image_shape=IMAGE_SHAPE, latent_dim=LATENT, num_classes=CLASSES, hidden_sizes=(5,),
                  activation="tanh") | kw
    return conditional.conditional_vae(**fields)


def _mlp(layers, h):
    layers = jax.tree.map(lambda a: np.asarray(a, np.float64), layers)
    for i in range(len(layers)):
        h = h @ layers[f"Dense_{i}"]["kernel"] + layers[f"Dense_{i}"]["bias"]
        if i < len(layers) - 1:
            h = np.tanh(h)
    return h


def _log_weights(params, x, y, eps_KxZ):
    """log p(x|z, y) + log N(z; 0, I) - log q(z|x, y) for z = mean + std * eps, by hand."""
    onehot = np.eye(CLASSES)[y]
    out = _mlp(params["encoder"], np.concatenate([x, onehot]))
    mean, logvar = out[:LATENT], out[LATENT:]
    z = mean + np.exp(0.5 * logvar) * eps_KxZ
    logits = _mlp(params["decoder"], np.concatenate([z, np.repeat(onehot[None], len(z), 0)], -1))
    log_px = np.sum(x * logits - np.logaddexp(0.0, logits), -1)
    log_pz = -0.5 * np.sum(np.log(2 * np.pi) + z**2, -1)
    log_qz = -0.5 * np.sum(np.log(2 * np.pi) + logvar + eps_KxZ**2, -1)
    return log_px + log_pz - log_qz, (mean, logvar)


@pytest.fixture
def model_params_x():
    model = _model()
    params = model.init(jax.random.key(0))
    x = np.asarray(jax.random.bernoulli(jax.random.key(1), 0.4, (6,)), np.float64)
    return model, params, x


@pytest.mark.parametrize("y", [0, 3])
def test_elbo_and_iwae_against_numpy(model_params_x, y):
    model, params, x = model_params_x
    encode, decode, prior = objectives.model_functions(model, params, jnp.int32(y))
    key = jax.random.key(7)
    k = 5
    eps = np.asarray(jax.random.normal(key, (k, LATENT)), np.float64)
    log_w, (mean, logvar) = _log_weights(params, x, y, eps)
    value, _ = vaejax.iwae_bound(key, jnp.asarray(x, jnp.float32), encode, decode, prior=prior,
                                 num_samples=k)
    expected = np.log(np.mean(np.exp(log_w - log_w.max()))) + log_w.max()
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    # The ELBO (closed-form KL against N(0, I)) from the first of the same draws.
    value, aux = vaejax.elbo(key, jnp.asarray(x, jnp.float32), encode, decode, prior=prior)
    eps1 = np.asarray(jax.random.normal(key, (1, LATENT)), np.float64)
    kl = 0.5 * np.sum(np.exp(logvar) + mean**2 - 1 - logvar)
    np.testing.assert_allclose(aux["kl"], kl, rtol=1e-5)
    z1 = mean + np.exp(0.5 * logvar) * eps1[0]
    logits = _mlp(params["decoder"], np.concatenate([z1, np.eye(CLASSES)[y]]))
    log_px = np.sum(x * logits - np.logaddexp(0.0, logits))
    np.testing.assert_allclose(value, log_px - kl, rtol=1e-5)


def test_the_label_changes_the_posterior_and_the_likelihood(model_params_x):
    model, params, x = model_params_x
    x = jnp.asarray(x, jnp.float32)
    q0, q1 = (model.posterior(params, x, jnp.int32(y)) for y in (0, 1))
    assert not np.allclose(q0.loc, q1.loc)
    z = jnp.zeros(LATENT)
    assert not np.allclose(model.likelihood(params, z, jnp.int32(0)).logits,
                           model.likelihood(params, z, jnp.int32(1)).logits)
    with pytest.raises(ValueError, match="one label"):
        model.posterior(params, x, jnp.zeros(2, jnp.int32))


def test_prior_samples_standard_and_learned_per_class():
    model = _model()
    params = model.init(jax.random.key(0))
    z = model.prior(params, jnp.int32(2)).sample(seed=jax.random.key(1), sample_shape=(20_000,))
    assert z.shape == (20_000, LATENT)
    np.testing.assert_allclose(np.mean(z, 0), 0.0, atol=0.05)
    np.testing.assert_allclose(np.var(z, 0), 1.0, atol=0.05)

    learned = _model(prior="learned")
    params = learned.init(jax.random.key(0))
    loc = jnp.arange(CLASSES * LATENT, dtype=jnp.float32).reshape(CLASSES, LATENT)
    logvar = jnp.full((CLASSES, LATENT), np.log(0.25), jnp.float32)
    params["prior"] = {"loc": loc, "logvar": logvar}
    for y in range(CLASSES):
        z = learned.prior(params, jnp.int32(y)).sample(seed=jax.random.key(y), sample_shape=(20_000,))
        np.testing.assert_allclose(np.mean(z, 0), loc[y], atol=0.02)
        np.testing.assert_allclose(np.std(z, 0), 0.5, atol=0.02)


def test_objectives_bind_each_examples_label():
    """A training objective on a batch equals the mean of the per-example bounds, each with
    its own key and its own label; with the labels shifted, the value changes."""
    model = _model()
    params = model.init(jax.random.key(0))
    x = jax.random.bernoulli(jax.random.key(1), 0.4, (8, 6)).astype(jnp.float32)
    y = jnp.arange(8, dtype=jnp.int32) % CLASSES
    key = jax.random.key(2)
    for objective, bound, kw in [(objectives.ELBO(), vaejax.elbo, {"beta": 1.0}),
                                 (objectives.IWAE(num_samples=3), vaejax.iwae_bound, {})]:
        loss, _ = jax.jit(lambda p, c, o=objective, kw=kw: o(key, x, model, p, condition=c, **kw))(params, y)
        per_example = []
        for i, k in enumerate(jax.random.split(key, 8)):
            encode, decode, prior = objectives.model_functions(model, params, y[i])
            extra = {"num_samples": 3} if bound is vaejax.iwae_bound else {}
            per_example.append(bound(k, x[i], encode, decode, prior=prior, **extra)[0])
        np.testing.assert_allclose(-loss, np.mean(per_example), rtol=1e-5)
        shifted, _ = objective(key, x, model, params, condition=(y + 1) % CLASSES, **kw)
        assert abs(float(shifted) - float(loss)) > 1e-3


def test_evaluation_reads_the_labels():
    model = _model()
    params = model.init(jax.random.key(0))
    images = jax.random.randint(jax.random.key(1), (30,) + IMAGE_SHAPE, 0, 256).astype(jnp.uint8)
    labels = jnp.arange(30, dtype=jnp.int32) % CLASSES
    kw = dict(data_shape=model.data_shape, preprocessing="dynamic_binarize", batch_size=10)
    right = metrics_lib.elbo_metrics(model, params, data_lib.Examples(images, labels), jax.random.key(3), **kw)
    wrong = metrics_lib.elbo_metrics(model, params, data_lib.Examples(images, (labels + 1) % CLASSES),
                                  jax.random.key(3), **kw)
    assert float(right["neg_elbo"]) != pytest.approx(float(wrong["neg_elbo"]))
    log_px = evaluate.iwae_log_likelihood(model, params, data_lib.Examples(images, labels), jax.random.key(3),
                                          num_samples=4, chunk_size=2, batch_size=7, **{
                                              k: kw[k] for k in ("data_shape", "preprocessing")})
    assert log_px.shape == (30,) and np.all(np.isfinite(log_px))


def test_conditional_model_needs_labels_and_an_objective_that_takes_them():
    config = config_lib.load_config(REPO / "experiments" / "cvae.py", ["model.hidden_sizes=(8,)"])
    program = Program.build(config, (28, 28, 1), 1000)
    assert program.conditioning == "label"
    images = jnp.zeros((4, 28, 28, 1), jnp.uint8)
    unlabelled = data_lib.Splits(data_lib.Examples(images), None, data_lib.Examples(images), "test")
    with pytest.raises(ValueError, match="conditions on labels.*has none"):
        program.model_data(unlabelled)
    labelled = data_lib.Splits(data_lib.Examples(images, jnp.zeros(4, jnp.int32)), None,
                               data_lib.Examples(images, jnp.zeros(4, jnp.int32)), "test")
    assert program.model_data(labelled).train.labels is not None
    config_lib.apply_override(config, "objective.kind", "tcvae")
    with pytest.raises(ValueError, match="takes no `condition=`"):
        Program.build(config, (28, 28, 1), 1000)
    # An unconditional model's data drop the labels, so its programs do not carry them.
    plain = Program.build(config_lib.load_config(REPO / "experiments" / "default.py"), (28, 28, 1), 1000)
    assert plain.model_data(labelled).train.labels is None
