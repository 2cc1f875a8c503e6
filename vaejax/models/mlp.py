"""The MLP VAE (`model.kind = "mlp"`): dense encoder and mirrored decoder on flat vectors."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vaejax.models.base import MODELS, EncoderDecoderVAE, activation_fn, check_sizes, output_bias_init
from vaejax.models.weight_norm import hidden_dense


class MLPEncoder(nn.Module):
    """x (any shape) -> flatten -> Dense(h) for h in hidden_sizes -> Dense(2Z) -> (mean, logvar)."""

    hidden_sizes: Sequence[int]
    latent_dim: int
    activation: str = "relu"

    @nn.compact
    def __call__(self, x):
        h = x.reshape(-1)
        for size in self.hidden_sizes:
            h = activation_fn(self.activation)(nn.Dense(size)(h))
        mean, logvar = jnp.split(nn.Dense(2 * self.latent_dim)(h), 2)
        return mean, logvar


class MLPDecoder(nn.Module):
    """z (Z,) -> Dense(h) for h in hidden_sizes -> Dense(prod(output_shape)) -> reshape.

    `output_bias_init` initializes the last layer's bias (zeros; see `base.output_bias_init`).
    """

    hidden_sizes: Sequence[int]
    output_shape: tuple[int, ...]
    activation: str = "relu"
    output_bias_init: Callable = nn.initializers.zeros_init()
    normalization: str = "none"  # of the hidden layers (`weight_norm.NORMALIZATIONS`)

    @nn.compact
    def __call__(self, z):
        """z (..., Z) -> (..., *output_shape): leading axes are kept."""
        h = z
        for size in self.hidden_sizes:
            h = activation_fn(self.activation)(hidden_dense(self.normalization, size)(h))
        out = nn.Dense(math.prod(self.output_shape), bias_init=self.output_bias_init)(h)
        return out.reshape(out.shape[:-1] + tuple(self.output_shape))


@MODELS.register("mlp")
def mlp_vae(*, image_shape: Sequence[int], latent_dim: int, hidden_sizes: Sequence[int] = (400,),
            activation: str = "relu", likelihood: str = "bernoulli",
            gaussian_logvar: str | float = "learned", output_bias: str = "zeros",
            mean_image=None) -> EncoderDecoderVAE:
    """Encoder `hidden_sizes`, decoder the same reversed, reading flat (H*W*C,) vectors: the
    model's `data_shape` is (H*W*C,) for images of `image_shape` (H, W, C).

    `output_bias` is where the decoder's last bias starts (`base.output_bias_init`: "zeros",
    or "mean_logit" from `mean_image`, which the program passes).

    Flat, because an MLP on (28, 28, 1) images runs ~30% slower on CPU: XLA's CPU layouts
    for the trailing size-1 axis cost a copy per step. The data stay images elsewhere.
    """
    activation_fn(activation)  # validate early
    check_sizes(latent_dim=latent_dim, hidden_sizes=hidden_sizes)
    flat = (math.prod(int(d) for d in image_shape),)
    return EncoderDecoderVAE.make(
        MLPEncoder(tuple(hidden_sizes), latent_dim, activation),
        MLPDecoder(tuple(reversed(tuple(hidden_sizes))), flat, activation,
                   output_bias_init(output_bias, likelihood, mean_image, flat)),
        data_shape=flat, latent_dim=latent_dim, likelihood=likelihood,
        gaussian_logvar=gaussian_logvar)
