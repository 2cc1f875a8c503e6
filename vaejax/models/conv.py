"""The convolutional VAE of TensorFlow's CVAE tutorial (`model.kind = "conv"`).

Encoder Conv(32, 3, s2) -> Conv(64, 3, s2) -> Dense(2Z); decoder Dense(H/4*W/4*32) ->
ConvT(64, s2) -> ConvT(32, s2) -> ConvT(C, s1). The (transposed) convolutions are
`vaejax.layers`: flax's parameters and function, computed as matmuls (fast on CPU).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from vaejax.layers import Conv, ConvTranspose
from vaejax.models.base import MODELS, EncoderDecoderVAE, activation_fn


class ConvEncoder(nn.Module):
    """Conv(32, 3, s2) -> Conv(64, 3, s2) -> Flatten -> Dense(2Z) -> (mean, logvar).

    Input (H, W, C) with H and W divisible by 4 (28x28x1 or 32x32x3).
    """

    latent_dim: int
    channels: Sequence[int] = (32, 64)
    activation: str = "relu"

    @nn.compact
    def __call__(self, x):
        h = x
        for c in self.channels:
            h = activation_fn(self.activation)(Conv(c, (3, 3), strides=(2, 2), padding="SAME")(h))
        mean, logvar = jnp.split(nn.Dense(2 * self.latent_dim)(h.reshape(-1)), 2)
        return mean, logvar


class ConvDecoder(nn.Module):
    """Dense(H/4*W/4*32) -> reshape -> ConvT(64, s2) -> ConvT(32, s2) -> ConvT(C, s1).

    Output: logits (or means) of shape `output_shape` = (H, W, C).
    """

    output_shape: tuple[int, int, int]
    channels: Sequence[int] = (64, 32)
    base_channels: int = 32
    activation: str = "relu"

    @nn.compact
    def __call__(self, z):
        height, width, out_channels = self.output_shape
        act = activation_fn(self.activation)
        h = act(nn.Dense((height // 4) * (width // 4) * self.base_channels)(z))
        h = h.reshape(height // 4, width // 4, self.base_channels)
        for c in self.channels:
            h = act(ConvTranspose(c, (3, 3), strides=(2, 2), padding="SAME")(h))
        return ConvTranspose(out_channels, (3, 3), strides=(1, 1), padding="SAME")(h)


@MODELS.register("conv")
def conv_vae(*, image_shape: Sequence[int], latent_dim: int, activation: str = "relu",
             likelihood: str = "bernoulli", gaussian_logvar: str | float = "learned"
             ) -> EncoderDecoderVAE:
    """The CVAE tutorial's architecture on (H, W, C) images, H and W divisible by 4: the
    model reads the images as they are (its `data_shape` is `image_shape`)."""
    image_shape = tuple(int(d) for d in image_shape)
    activation_fn(activation)
    if len(image_shape) != 3 or image_shape[0] % 4 or image_shape[1] % 4:
        raise ValueError(
            f"The conv VAE needs (H, W, C) images with H and W divisible by 4; got {image_shape}."
        )
    return EncoderDecoderVAE.make(
        ConvEncoder(latent_dim, activation=activation),
        ConvDecoder(image_shape, activation=activation),
        data_shape=image_shape, latent_dim=latent_dim, likelihood=likelihood,
        gaussian_logvar=gaussian_logvar)
