"""Device-resident batching: batch index arrays for a training epoch (a fresh permutation,
jittable, ragged remainder dropped) and for evaluation (every example exactly once, padded and
masked), and `to_device` to put the examples (uint8 images) on the device once so that batches are gathered
there instead of being copied from the host each step.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["epoch_indices", "padded_batch_indices", "to_device"]


def epoch_indices(key, num_examples: int, batch_size: int):
    """(num_batches, batch_size) int32: a permutation of range(num_examples) from `key`.

    num_batches = num_examples // batch_size; the ragged remainder (num_examples % batch_size
    examples, different ones each epoch) is DROPPED so that every step has the same shape.
    Use padded_batch_indices for evaluation, where every example must count exactly once.
    """
    if batch_size <= 0 or num_examples < batch_size:
        raise ValueError(f"batch_size={batch_size} gives no full batch of {num_examples} examples")
    num_batches = num_examples // batch_size
    order = jax.random.permutation(key, num_examples)[:num_batches * batch_size]
    return order.reshape(num_batches, batch_size).astype(jnp.int32)


def padded_batch_indices(num_examples: int, batch_size: int):
    """(indices, mask), both (num_batches, batch_size): every example exactly once, in order.

    num_batches = ceil(num_examples / batch_size); the last batch is padded with index 0 and
    mask False, so sums over `mask` count each example once. NumPy int32 and bool arrays.
    """
    if batch_size <= 0 or num_examples <= 0:
        raise ValueError(
            f"need positive num_examples and batch_size, got {num_examples}, {batch_size}")
    num_batches = -(-num_examples // batch_size)
    flat = np.arange(num_batches * batch_size, dtype=np.int32)
    mask = flat < num_examples
    indices = np.where(mask, flat, 0).astype(np.int32)
    return indices.reshape(num_batches, batch_size), mask.reshape(num_batches, batch_size)


def to_device(images, device=None) -> jax.Array:
    """jax.device_put of the examples as they are: uint8 pixels stay uint8 (4x less memory
    than float32; preprocessing makes the model's floats batch by batch); float data are
    put as float32."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.floating):
            raise TypeError(f"expected uint8 pixels or floats, got {images.dtype}")
        images = images.astype(np.float32)
    return jax.device_put(images, device)
