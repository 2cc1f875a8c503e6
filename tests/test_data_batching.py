"""Tests for vaejax.data.batching: epoch and evaluation batch indices, and to_device."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaejax import data


def test_epoch_indices_is_a_permutation_that_drops_the_remainder():
    order = data.epoch_indices(jax.random.key(0), 103, 10)
    chex.assert_shape(order, (10, 10))
    assert order.dtype == jnp.int32
    flat = np.asarray(order).ravel()
    assert len(set(flat.tolist())) == 100 and flat.min() >= 0 and flat.max() < 103
    np.testing.assert_array_equal(data.epoch_indices(jax.random.key(0), 103, 10), order)
    assert np.any(np.asarray(data.epoch_indices(jax.random.key(1), 103, 10)) != np.asarray(order))
    jitted = jax.jit(data.epoch_indices, static_argnums=(1, 2))(jax.random.key(0), 103, 10)
    np.testing.assert_array_equal(jitted, order)
    with pytest.raises(ValueError, match="no full batch"):
        data.epoch_indices(jax.random.key(0), 9, 10)


@pytest.mark.parametrize("num_examples,batch_size", [(103, 10), (100, 10), (3, 8)])
def test_padded_batch_indices_cover_each_example_once(num_examples, batch_size):
    indices, mask = data.padded_batch_indices(num_examples, batch_size)
    num_batches = -(-num_examples // batch_size)
    assert indices.shape == mask.shape == (num_batches, batch_size)
    assert indices.dtype == np.int32 and mask.dtype == np.bool_
    assert sorted(indices[mask].tolist()) == list(range(num_examples))
    assert np.all(indices[~mask] == 0) and mask.sum() == num_examples


def test_to_device_keeps_uint8():
    images = np.arange(24, dtype=np.uint8).reshape(2, 3, 4, 1)
    on_device = data.to_device(images)
    assert isinstance(on_device, jax.Array) and on_device.dtype == jnp.uint8
    np.testing.assert_array_equal(on_device, images)
