"""Layers: `vaejax.layers.Conv` / `ConvTranspose` against `flax.linen.Conv` / `ConvTranspose`."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaejax import layers

PAIRS = {"conv": (layers.Conv, nn.Conv), "conv_transpose": (layers.ConvTranspose, nn.ConvTranspose)}

# (kind, kernel, stride, (H, W), Cin, Cout): the conv VAE's first and last layers, odd, even and
# unequal sizes, kernels 1-5, strides 1-3 (kernel 1 stride 2: phases with no taps), stride 1
# with Cout < Cin (scatter) and Cout >= Cin (gather).
CASES = [
    ("conv", 3, 2, (28, 28), 1, 32),
    ("conv", 3, 2, (7, 9), 3, 2),
    ("conv", 3, 1, (7, 7), 3, 5),
    ("conv", 4, 1, (6, 6), 5, 2),
    ("conv", 2, 2, (7, 7), 3, 4),
    ("conv", 5, 2, (9, 8), 2, 3),
    ("conv_transpose", 3, 2, (7, 7), 4, 6),
    ("conv_transpose", 3, 2, (14, 14), 6, 3),
    ("conv_transpose", 3, 1, (28, 28), 8, 1),
    ("conv_transpose", 4, 2, (6, 9), 3, 2),
    ("conv_transpose", 5, 2, (7, 7), 2, 3),
    ("conv_transpose", 2, 3, (5, 5), 2, 2),
    ("conv_transpose", 1, 2, (5, 5), 2, 3),
]


def _modules(kind, k, s, cout):
    ours, theirs = PAIRS[kind]
    return (ours(cout, (k, k), strides=(s, s), padding="SAME"),
            theirs(cout, (k, k), strides=(s, s), padding="SAME"))


def _assert_close(actual, expected, rtol=1e-5):
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        assert a.shape == e.shape
        np.testing.assert_allclose(a, e, rtol=rtol, atol=rtol * float(jnp.max(jnp.abs(e))))


@pytest.mark.parametrize("kind,k,s,hw,cin,cout", CASES)
def test_matches_flax_values_and_gradients(kind, k, s, hw, cin, cout):
    ours, theirs = _modules(kind, k, s, cout)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(*hw, cin)), jnp.float32)
    params = {"params": {"kernel": jnp.asarray(rng.normal(size=(k, k, cin, cout)), jnp.float32),
                         "bias": jnp.asarray(rng.normal(size=(cout,)), jnp.float32)}}
    expected_shapes = jax.eval_shape(theirs.init, jax.random.key(0), x)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, expected_shapes)
    r = jnp.asarray(rng.normal(size=jax.eval_shape(theirs.apply, params, x).shape), jnp.float32)

    @jax.jit
    def value_and_grads(p, x):
        out = {}
        for name, module in (("ours", ours), ("theirs", theirs)):
            y, vjp = jax.vjp(module.apply, p, x)
            out[name] = (y, vjp(r))  # grads of the linear functional sum(r * y)
        return out

    out = value_and_grads(params, x)
    _assert_close(out["ours"], out["theirs"])


def test_same_parameters_and_initial_values_as_flax():
    x = jnp.zeros((7, 7, 3))
    for kind in PAIRS:
        ours, theirs = _modules(kind, 3, 2, 5)
        mine, reference = ours.init(jax.random.key(1), x), theirs.init(jax.random.key(1), x)
        assert jax.tree.map(jnp.shape, mine) == {"params": {"kernel": (3, 3, 3, 5), "bias": (5,)}}
        assert jax.tree.map(jnp.shape, mine) == jax.tree.map(jnp.shape, reference)
        _assert_close(mine, reference, rtol=0)


@pytest.mark.parametrize("kind,s", [("conv", 2), ("conv_transpose", 2), ("conv_transpose", 1)])
def test_batch_axes_and_vmap_agree_with_one_example(kind, s):
    ours, _ = _modules(kind, 3, s, 2)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(2, 3, 6, 6, 4)), jnp.float32)
    params = {"params": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 4, 2)), jnp.float32),
                         "bias": jnp.asarray(rng.normal(size=(2,)), jnp.float32)}}
    apply = jax.jit(ours.apply)
    one = jnp.stack([jnp.stack([apply(params, xi) for xi in row]) for row in x])
    _assert_close(apply(params, x), one)
    _assert_close(jax.jit(jax.vmap(jax.vmap(apply, (None, 0)), (None, 0)))(params, x), one)


def test_only_same_padding():
    with pytest.raises(NotImplementedError, match="SAME"):
        layers.Conv(2, (3, 3), padding="VALID").init(jax.random.key(0), jnp.zeros((4, 4, 1)))
