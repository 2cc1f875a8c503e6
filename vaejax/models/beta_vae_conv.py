"""The convolutional VAE of the disentanglement literature (`model.kind = "beta_vae_conv"`):
Higgins et al. (2017, "beta-VAE", table 1, row 3) as google-research/disentanglement_lib
writes it (`methods/shared/architectures.py`, `conv_encoder` and `deconv_decoder`), the
architecture of Locatello et al. (2019)'s study, for 64 x 64 images:

    encoder  Conv(32, 4, s2) -> Conv(32, 4, s2) -> Conv(64, 2, s2) -> Conv(64, 2, s2)
             -> Dense(256) -> Dense(2Z): the means and log-variances of q(z|x)
    decoder  Dense(256) -> Dense(1024) -> reshape (4, 4, 64) -> ConvT(64, 4, s2)
             -> ConvT(32, 4, s2) -> ConvT(32, 4, s2) -> ConvT(C, 4, s2): the logits of p(x|z)

ReLU after every layer but the last of each; "SAME" padding. Where this differs from that
code: the two Dense heads of the encoder (means, log-variances) are one Dense of 2Z, and the
weights start from flax's initialisers (LeCun normal), not TensorFlow's Glorot uniform.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from vaejax.layers import Conv, ConvTranspose
from vaejax.models.base import MODELS, EncoderDecoderVAE


class BetaVAEConvEncoder(nn.Module):
    """x (64, 64, C) -> (mean, logvar), each (Z,) (see the module docstring)."""

    latent_dim: int

    @nn.compact
    def __call__(self, x):
        h = x
        for features, kernel in ((32, 4), (32, 4), (64, 2), (64, 2)):
            h = nn.relu(Conv(features, (kernel, kernel), strides=(2, 2), padding="SAME")(h))
        h = nn.relu(nn.Dense(256)(h.reshape(-1)))
        mean, logvar = jnp.split(nn.Dense(2 * self.latent_dim)(h), 2)
        return mean, logvar


class BetaVAEConvDecoder(nn.Module):
    """z (Z,) -> logits (64, 64, C) (see the module docstring)."""

    channels: int

    @nn.compact
    def __call__(self, z):
        h = nn.relu(nn.Dense(1024)(nn.relu(nn.Dense(256)(z)))).reshape(4, 4, 64)
        for features in (64, 32, 32):
            h = nn.relu(ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME")(h))
        return ConvTranspose(self.channels, (4, 4), strides=(2, 2), padding="SAME")(h)


@MODELS.register("beta_vae_conv")
def beta_vae_conv(*, image_shape: Sequence[int], latent_dim: int = 10,
                  likelihood: str = "bernoulli", gaussian_logvar: str | float = "learned"
                  ) -> EncoderDecoderVAE:
    """disentanglement_lib's conv encoder and decoder on 64 x 64 x C images; 10 latents as in
    Locatello et al.'s study."""
    image_shape = tuple(int(d) for d in image_shape)
    if len(image_shape) != 3 or image_shape[:2] != (64, 64):
        raise ValueError(f"model.kind='beta_vae_conv' reads 64 x 64 x C images (dSprites); got "
                         f"{image_shape}. Use model.kind='conv' for other sizes.")
    return EncoderDecoderVAE.make(
        BetaVAEConvEncoder(latent_dim), BetaVAEConvDecoder(image_shape[2]), data_shape=image_shape,
        latent_dim=latent_dim, likelihood=likelihood, gaussian_logvar=gaussian_logvar)
