"""Built-in models (`vaejax.models`): the protocol's shapes, architectures, and a few optax steps."""

import math
import sys
import textwrap

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import vaejax
from vaejax import models


@pytest.mark.parametrize("kind,image_shape", [("mlp", (28, 28, 1)), ("conv", (28, 28, 1)),
                                              ("mlp", (32, 32, 3)), ("conv", (32, 32, 3))])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_shapes(kind, image_shape, likelihood):
    fields = dict(kind=kind, latent_dim=5, likelihood=likelihood)
    if kind == "mlp":
        fields["hidden_sizes"] = (32, 16)
    model = models.build(fields, image_shape)
    params = model.init(jax.random.key(0))
    x = jnp.zeros(model.data_shape)  # the MLP reads flat vectors, the conv VAE images
    assert model.data_shape == ((math.prod(image_shape),) if kind == "mlp" else image_shape)
    q = model.posterior(params, x)
    chex.assert_shape([q.loc, q.logvar, q.sample(seed=jax.random.key(1))], (5,))
    p_x = model.likelihood(params, q.mean())
    chex.assert_shape(p_x.mean(), model.data_shape)
    assert p_x.log_prob(x).shape == ()
    assert model.prior(params).log_prob(q.mean()).shape == ()
    batched = jax.vmap(lambda x: model.posterior(params, x))(jnp.zeros((4,) + model.data_shape))
    chex.assert_shape([batched.loc, batched.logvar], (4, 5))


def test_seed_conv_architecture_layers():
    vae = models.conv_vae(image_shape=(28, 28, 1), latent_dim=2)
    params = vae.init(jax.random.key(0))
    enc = jax.tree.map(jnp.shape, params["encoder"])
    dec = jax.tree.map(jnp.shape, params["decoder"])
    assert enc["Conv_0"]["kernel"] == (3, 3, 1, 32)
    assert enc["Conv_1"]["kernel"] == (3, 3, 32, 64)
    assert enc["Dense_0"]["kernel"] == (7 * 7 * 64, 4)
    assert dec["Dense_0"]["kernel"] == (2, 7 * 7 * 32)
    assert dec["ConvTranspose_0"]["kernel"] == (3, 3, 32, 64)
    assert dec["ConvTranspose_1"]["kernel"] == (3, 3, 64, 32)
    assert dec["ConvTranspose_2"]["kernel"] == (3, 3, 32, 1)


@pytest.mark.parametrize("image_shape", [(28, 28, 1), (32, 32, 3)])
def test_conv_vae_equals_the_same_model_built_from_flax_convs(image_shape, monkeypatch):
    """vaejax.layers are drop-in: the param tree (so checkpoints) and the function are flax's."""
    vae = models.conv_vae(image_shape=image_shape, latent_dim=2)
    with monkeypatch.context() as m:
        m.setattr(models.conv, "Conv", nn.Conv)
        m.setattr(models.conv, "ConvTranspose", nn.ConvTranspose)
        reference = models.conv_vae(image_shape=image_shape, latent_dim=2)
        reference_params = reference.init(jax.random.key(0))
        x = jax.random.uniform(jax.random.key(1), image_shape)
        expected = _raw(reference, reference_params, x)
    params = vae.init(jax.random.key(0))
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, reference_params)
    chex.assert_trees_all_equal(params, reference_params)
    actual = _raw(vae, params, x)
    chex.assert_trees_all_close(actual, expected, rtol=1e-5, atol=1e-5)


def _raw(model, params, x):
    """The encoder's (mean, logvar) and the decoder's logits at z = (1, 1)."""
    q = model.posterior(params, x)
    return (q.loc, q.logvar), model.likelihood(params, jnp.ones(2)).logits


def test_mlp_mirrors_hidden_sizes():
    vae = models.mlp_vae(image_shape=(28, 28, 1), latent_dim=20, hidden_sizes=(400,))
    params = vae.init(jax.random.key(0))
    assert params["encoder"]["Dense_0"]["kernel"].shape == (784, 400)
    assert params["encoder"]["Dense_1"]["kernel"].shape == (400, 40)
    assert params["decoder"]["Dense_0"]["kernel"].shape == (20, 400)
    assert params["decoder"]["Dense_1"]["kernel"].shape == (400, 784)
    assert models.num_params(params) == 784 * 400 + 400 + 400 * 40 + 40 + 20 * 400 + 400 + 400 * 784 + 784


def test_bad_inputs_raise_readable_errors():
    vae = models.mlp_vae(image_shape=(28, 28, 1), latent_dim=3)
    params = vae.init(jax.random.key(0))
    with pytest.raises(ValueError, match="one example"):
        vae.posterior(params, jnp.zeros((8, 784)))
    with pytest.raises(ValueError, match="one z"):
        vae.likelihood(params, jnp.zeros((8, 3)))
    with pytest.raises(ValueError, match="divisible by 4"):
        models.build(dict(kind="conv", latent_dim=2), (30, 30, 1))
    with pytest.raises(ValueError, match="Unknown model.kind 'rnn'.*'conditional', 'conv', 'hierarchical', 'iaf', 'ladder', 'mlp', 'two_layer', 'vampprior'.*module:attribute"):
        models.build(dict(kind="rnn", latent_dim=2), (28, 28, 1))
    with pytest.raises(ValueError, match="Unknown activation"):
        models.build(dict(kind="mlp", latent_dim=2, activation="swishy"), (28, 28, 1))
    with pytest.raises(ValueError, match="model.kind='conv'.*hidden_sizes"):
        models.build(dict(kind="conv", latent_dim=2, hidden_sizes=(4,)), (28, 28, 1))
    with pytest.raises(ValueError, match="Unknown model.likelihood 'poisson'"):
        models.build(dict(kind="mlp", latent_dim=2, likelihood="poisson"), (28, 28, 1))


def test_a_plugin_factory_still_taking_data_shape_is_told_to_rename_it(tmp_path, monkeypatch):
    """Factories are called with `image_shape=` (H, W, C); one written for the old name
    `data_shape` (a function or a dataclass field) gets an error naming the fix, while
    `image_shape` (or both names) builds."""
    (tmp_path / "old_style_models.py").write_text(textwrap.dedent('''
        import dataclasses
        from vaejax import models

        def make(*, data_shape, latent_dim):
            return models.mlp_vae(image_shape=data_shape, latent_dim=latent_dim)

        @dataclasses.dataclass(frozen=True)
        class OldVAE:
            data_shape: tuple
            latent_dim: int = 2

        def new(*, image_shape, latent_dim):
            return models.mlp_vae(image_shape=image_shape, latent_dim=latent_dim, hidden_sizes=(4,))

        def both(*, image_shape, data_shape=None, latent_dim):
            return new(image_shape=image_shape, latent_dim=latent_dim)
    '''))
    monkeypatch.delitem(sys.modules, "old_style_models", raising=False)  # gone again afterwards
    for kind, name in [("old_style_models:make", "make"), ("old_style_models:OldVAE", "OldVAE")]:
        with pytest.raises(ValueError, match=(
                rf"model.kind='{kind}': {name} takes `data_shape`, but model factories are now "
                r"called with `image_shape=` \(the image shape, \(H, W, C\)\): rename its "
                r"`data_shape` parameter to `image_shape`")):
            models.build(dict(kind=kind, latent_dim=2), (4, 4, 1), search_path=str(tmp_path))
    for kind in ["old_style_models:new", "old_style_models:both"]:
        model = models.build(dict(kind=kind, latent_dim=2), (4, 4, 1), search_path=str(tmp_path))
        assert model.data_shape == (16,)  # the model's own data_shape: the flat x it reads


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_optax_steps_lower_the_loss_on_a_fixed_batch(kind):
    fields = dict(kind=kind, latent_dim=4) | ({"hidden_sizes": (64,)} if kind == "mlp" else {})
    vae = models.build(fields, (28, 28, 1))
    params = vae.init(jax.random.key(0))
    x = (jax.random.uniform(jax.random.key(1), (16,) + vae.data_shape) < 0.3).astype(jnp.float32)
    tx = optax.adam(1e-3)
    opt_state = tx.init(params)

    def loss_fn(params, key):
        value, _ = vaejax.batch_elbo(key, x, lambda xi: vae.posterior(params, xi),
                                     lambda z: vae.likelihood(params, z), prior=vae.prior(params))
        return -value

    @jax.jit
    def step(params, opt_state, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, key)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    eval_key = jax.random.key(2)
    before = loss_fn(params, eval_key)
    for i in range(30):
        params, opt_state, _ = step(params, opt_state, jax.random.key(10 + i))
    after = loss_fn(params, eval_key)
    assert after < before - 20.0, (before, after)


def test_output_bias_mean_logit_starts_at_the_mean_images_logits():
    mean_image = np.random.default_rng(0).uniform(0, 1, (4, 4, 1)).astype(np.float32)
    mean_image[0, 0, 0], mean_image[0, 1, 0] = 0.0, 1.0  # clipped to 0.001 and 0.999
    model = models.build(dict(kind="mlp", latent_dim=2, hidden_sizes=(8,), output_bias="mean_logit"),
                         (4, 4, 1), mean_image=mean_image)
    params = model.init(jax.random.key(0))
    p = np.clip(mean_image.reshape(-1).astype(np.float64), 0.001, 0.999)
    np.testing.assert_allclose(params["decoder"]["Dense_1"]["bias"], np.log(p) - np.log1p(-p), rtol=1e-5, atol=1e-5)
    assert float(params["decoder"]["Dense_1"]["bias"][0]) == pytest.approx(np.log(0.001 / 0.999), rel=1e-5)
    zeros = models.build(dict(kind="mlp", latent_dim=2, hidden_sizes=(8,)), (4, 4, 1),
                         mean_image=mean_image).init(jax.random.key(0))
    assert not np.any(zeros["decoder"]["Dense_1"]["bias"])  # the default stays Flax's zeros


def test_output_bias_errors_say_what_to_do():
    fields = dict(kind="mlp", latent_dim=2, hidden_sizes=(8,))
    with pytest.raises(ValueError, match="needs the mean training image"):
        models.build({**fields, "output_bias": "mean_logit"}, (4, 4, 1))
    with pytest.raises(ValueError, match="sets Bernoulli logits; with model.likelihood='gaussian'"):
        models.build({**fields, "output_bias": "mean_logit", "likelihood": "gaussian"}, (4, 4, 1),
                     mean_image=np.full((4, 4, 1), 0.5))
    with pytest.raises(ValueError, match="Unknown model.output_bias 'mean'"):
        models.build({**fields, "output_bias": "mean"}, (4, 4, 1))
