"""Weight normalisation with data-dependent initialisation (Salimans & Kingma 2016), the
normalisation of vaejax's deep hierarchies (`model.normalization = "weight_norm"`).

    y = g * (x @ v) / ||v|| + b        one g and b per output unit, ||v|| over its input weights

Initialised on a batch (an input with leading axes, (N, D)), `g` and `b` are set so that each
unit's pre-activation has mean 0 and variance 1 over that batch, as the paper's
data-dependent initialisation does; initialised on one example, g = 1 and b = 0. After the
initialisation it is a function of one example, like every layer of a vaejax model.

Why this and not batch normalisation (which the LVAE paper trains with): a vaejax model is a
set of functions of ONE example (`vaejax.models.base`), which is what lets every bound take
any number of samples per example, evaluation score each example alone, and a sweep vmap
over seeds. Batch normalisation makes an example's posterior depend on the other examples
of its batch and needs running statistics threaded through training and evaluation;
weight normalisation keeps each function per example, and its data-dependent initialisation
gives the same start batch normalisation gives (unit pre-activations on the data).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

NORMALIZATIONS = ("none", "weight_norm")
_VARIANCE_FLOOR = 1e-10  # the paper's code: g = 1 / sqrt(var + 1e-10)


class WNDense(nn.Module):
    """A weight-normalised Dense layer: x (..., D) -> (..., features). Parameters "kernel" v
    (D, features) ~ N(0, 0.05^2) as in the paper's code, "scale" g and "bias" b (features,)."""

    features: int

    @nn.compact
    def __call__(self, x):
        v = self.param("kernel", nn.initializers.normal(0.05), (x.shape[-1], self.features))
        t = x @ (v / jnp.linalg.norm(v, axis=0, keepdims=True))
        g0, b0 = jnp.ones((self.features,)), jnp.zeros((self.features,))
        if self.is_initializing() and math.prod(x.shape[:-1]) > 1:  # a batch: from the data
            flat = t.reshape(-1, self.features)
            g0 = 1.0 / jnp.sqrt(flat.var(axis=0) + _VARIANCE_FLOOR)
            b0 = -flat.mean(axis=0) * g0
        g = self.param("scale", lambda key, shape: g0, (self.features,))
        b = self.param("bias", lambda key, shape: b0, (self.features,))
        units = (1,) * (t.ndim - 1) + (self.features,)  # as nn.Dense adds its bias
        return t * g.reshape(units) + b.reshape(units)


def check(normalization: str) -> None:
    """Refuses a `model.normalization` that is not one of `NORMALIZATIONS`, when the model is
    built."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"Unknown model.normalization {normalization!r}; choose one of {NORMALIZATIONS}.")


def hidden_dense(normalization: str, features: int) -> nn.Module:
    """The hidden layer `normalization` (checked by `check`) asks for: `nn.Dense` ("none") or
    `WNDense`. Call inside a compact module."""
    return WNDense(features) if normalization == "weight_norm" else nn.Dense(features)


class InitImages:
    """Images a model keeps for its data-dependent initialisation, `array` (N, D) float32.
    Compared and hashed by identity, so the model holding it stays a hashable static argument
    of jit."""

    __slots__ = ("array",)

    def __init__(self, array):
        self.array = np.asarray(array, np.float32)

    def __repr__(self) -> str:
        return f"InitImages(shape={self.array.shape})"
