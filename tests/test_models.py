"""Models: shapes, pure encode/decode, and a few optax steps that lower the loss."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
import pytest

import vaejax
from vaejax import models


@pytest.mark.parametrize("kind,data_shape", [("mlp", (28, 28, 1)), ("conv", (28, 28, 1)),
                                             ("mlp", (32, 32, 3)), ("conv", (32, 32, 3))])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_shapes(kind, data_shape, likelihood):
    vae = models.make_vae(kind, data_shape=data_shape, latent_dim=5, hidden_sizes=(32, 16),
                          likelihood=likelihood)
    params = vae.init(jax.random.key(0))
    x = jnp.zeros(data_shape)
    mean, logvar = vae.encode(params, x)
    chex.assert_shape([mean, logvar], (5,))
    out = vae.decode(params, mean)
    if likelihood == "bernoulli":
        chex.assert_shape(out, data_shape)
    else:
        chex.assert_shape(list(out), data_shape)
    batched = jax.vmap(lambda x: vae.encode(params, x))(jnp.zeros((4,) + data_shape))
    chex.assert_shape(list(batched), (4, 5))


def test_seed_conv_architecture_layers():
    vae = models.make_vae("conv", data_shape=(28, 28, 1), latent_dim=2)
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


@pytest.mark.parametrize("data_shape", [(28, 28, 1), (32, 32, 3)])
def test_conv_vae_equals_the_same_model_built_from_flax_convs(data_shape, monkeypatch):
    """vaejax.layers are drop-in: the param tree (so checkpoints) and the function are flax's."""
    vae = models.make_vae("conv", data_shape=data_shape, latent_dim=2)
    with monkeypatch.context() as m:
        m.setattr(models, "Conv", nn.Conv)
        m.setattr(models, "ConvTranspose", nn.ConvTranspose)
        reference = models.make_vae("conv", data_shape=data_shape, latent_dim=2)
        reference_params = reference.init(jax.random.key(0))
        x = jax.random.uniform(jax.random.key(1), data_shape)
        expected = reference.encode(reference_params, x), reference.decode(reference_params, jnp.ones(2))
    params = vae.init(jax.random.key(0))
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, reference_params)
    chex.assert_trees_all_equal(params, reference_params)
    actual = vae.encode(params, x), vae.decode(params, jnp.ones(2))
    chex.assert_trees_all_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_mlp_mirrors_hidden_sizes():
    vae = models.make_vae("mlp", data_shape=(28, 28, 1), latent_dim=20, hidden_sizes=(400,))
    params = vae.init(jax.random.key(0))
    assert params["encoder"]["Dense_0"]["kernel"].shape == (784, 400)
    assert params["encoder"]["Dense_1"]["kernel"].shape == (400, 40)
    assert params["decoder"]["Dense_0"]["kernel"].shape == (20, 400)
    assert params["decoder"]["Dense_1"]["kernel"].shape == (400, 784)
    assert models.num_params(params) == 784 * 400 + 400 + 400 * 40 + 40 + 20 * 400 + 400 + 400 * 784 + 784


def test_bad_inputs_raise_readable_errors():
    vae = models.make_vae("mlp", data_shape=(28, 28, 1), latent_dim=3)
    params = vae.init(jax.random.key(0))
    with pytest.raises(ValueError, match="one example"):
        vae.encode(params, jnp.zeros((8, 28, 28, 1)))
    with pytest.raises(ValueError, match="one z"):
        vae.decode(params, jnp.zeros((8, 3)))
    with pytest.raises(ValueError, match="divisible by 4"):
        models.make_vae("conv", data_shape=(30, 30, 1), latent_dim=2)
    with pytest.raises(ValueError, match="Unknown model kind"):
        models.make_vae("rnn", data_shape=(28, 28, 1), latent_dim=2)
    with pytest.raises(ValueError, match="Unknown activation"):
        models.make_vae("mlp", data_shape=(28, 28, 1), latent_dim=2, activation="swishy")


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_optax_steps_lower_the_loss_on_a_fixed_batch(kind):
    vae = models.make_vae(kind, data_shape=(28, 28, 1), latent_dim=4, hidden_sizes=(64,))
    params = vae.init(jax.random.key(0))
    x = (jax.random.uniform(jax.random.key(1), (16, 28, 28, 1)) < 0.3).astype(jnp.float32)
    tx = optax.adam(1e-3)
    opt_state = tx.init(params)

    def loss_fn(params, key):
        value, _ = vaejax.batch_elbo(key, x, lambda xi: vae.encode(params, xi),
                                     lambda z: vae.decode(params, z))
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
