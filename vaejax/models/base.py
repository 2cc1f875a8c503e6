"""Flax encoders and decoders, and a `VAE` whose encode/decode are pure functions.

Every module here works on ONE example (no batch axis): `encode(params, x)` maps an
image `x` of shape `data_shape` to the mean and log-variance of q(z|x), each `(Z,)`;
`decode(params, z)` maps `z` of shape `(Z,)` to the decoder output. Batch them with
`jax.vmap` (the objectives in `vaejax.objectives` do). XLA turns the vmapped
matrix-vector products into matrix-matrix products, so nothing is lost in speed.

Decoder outputs: Bernoulli logits shaped like `x`, or, for a Gaussian likelihood, the
pair `(mean, logvar)` with `logvar` a learned per-pixel vector independent of `z`
(or a fixed scalar when `gaussian_logvar` is a number).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vaejax.layers import Conv, ConvTranspose

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "gelu": nn.gelu,
    "elu": nn.elu,
    "softplus": nn.softplus,
    "silu": nn.silu,
}


def activation_fn(name: str) -> Callable[[jax.Array], jax.Array]:
    if name not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}.")
    return ACTIVATIONS[name]


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
    """z (Z,) -> Dense(h) for h in hidden_sizes -> Dense(prod(output_shape)) -> reshape."""

    hidden_sizes: Sequence[int]
    output_shape: tuple[int, ...]
    activation: str = "relu"

    @nn.compact
    def __call__(self, z):
        h = z
        for size in self.hidden_sizes:
            h = activation_fn(self.activation)(nn.Dense(size)(h))
        size = 1
        for d in self.output_shape:
            size *= d
        return nn.Dense(size)(h).reshape(self.output_shape)


class ConvEncoder(nn.Module):
    """The seed's encoder: Conv(32, 3, s2) -> Conv(64, 3, s2) -> Flatten -> Dense(2Z).

    Input (H, W, C) with H and W divisible by 4 (28x28x1 or 32x32x3). The convolutions are
    `vaejax.layers.Conv`: flax's parameters and function, computed as matmuls (fast on CPU).
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
    """The seed's decoder: Dense(H/4*W/4*32) -> reshape -> ConvT(64, s2) -> ConvT(32, s2) -> ConvT(C, s1).

    Output: logits (or means) of shape `output_shape` = (H, W, C). The transposed convolutions
    are `vaejax.layers.ConvTranspose`: flax's parameters and function, computed as matmuls.
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


class GaussianHead(nn.Module):
    """Wraps a decoder: z -> (mean, logvar), logvar a learned vector shaped like x, or fixed."""

    decoder: nn.Module
    output_shape: tuple[int, ...]
    fixed_logvar: float | None = None

    @nn.compact
    def __call__(self, z):
        mean = self.decoder(z)
        if self.fixed_logvar is not None:
            return mean, jnp.full(self.output_shape, self.fixed_logvar, mean.dtype)
        logvar = self.param("logvar", nn.initializers.zeros, self.output_shape)
        return mean, logvar


@dataclasses.dataclass(frozen=True)
class VAE:
    """An encoder and a decoder as pure functions of `(params, input)`, for one example.

    `params` is `{"encoder": ..., "decoder": ...}`. Close over params and pass
    `lambda x: vae.encode(params, x)` and `lambda z: vae.decode(params, z)` to
    `vaejax.elbo`.
    """

    encoder: nn.Module
    decoder: nn.Module
    data_shape: tuple[int, ...]
    latent_dim: int

    def init(self, key: jax.Array) -> dict[str, Any]:
        enc_key, dec_key = jax.random.split(key)
        return {
            "encoder": self.encoder.init(enc_key, jnp.zeros(self.data_shape))["params"],
            "decoder": self.decoder.init(dec_key, jnp.zeros((self.latent_dim,)))["params"],
        }

    def encode(self, params, x):
        """x: `data_shape` -> (mean (Z,), logvar (Z,)) of q(z|x)."""
        if x.shape != self.data_shape:
            raise ValueError(
                f"encode takes one example of shape {self.data_shape}, got {x.shape}; "
                "vmap over a batch (vaejax.batch_elbo does)."
            )
        return self.encoder.apply({"params": params["encoder"]}, x)

    def decode(self, params, z):
        """z: (Z,) -> logits shaped like x, or (mean, logvar) for a Gaussian likelihood."""
        if z.shape != (self.latent_dim,):
            raise ValueError(f"decode takes one z of shape ({self.latent_dim},), got {z.shape}.")
        return self.decoder.apply({"params": params["decoder"]}, z)


MODEL_KINDS = ("mlp", "conv")


def make_vae(
    kind: str,
    *,
    data_shape: Sequence[int],
    latent_dim: int,
    hidden_sizes: Sequence[int] = (400,),
    activation: str = "relu",
    likelihood: str = "bernoulli",
    gaussian_logvar: str | float = "learned",
) -> VAE:
    """Builds a VAE. `kind` is "mlp" (decoder hidden sizes are the encoder's reversed) or "conv"."""
    data_shape = tuple(int(d) for d in data_shape)
    activation_fn(activation)  # validate early
    if kind == "mlp":
        encoder = MLPEncoder(tuple(hidden_sizes), latent_dim, activation)
        decoder = MLPDecoder(tuple(reversed(hidden_sizes)), data_shape, activation)
    elif kind == "conv":
        if len(data_shape) != 3 or data_shape[0] % 4 or data_shape[1] % 4:
            raise ValueError(
                f"The conv VAE needs (H, W, C) images with H and W divisible by 4; got {data_shape}."
            )
        encoder = ConvEncoder(latent_dim, activation=activation)
        decoder = ConvDecoder(data_shape, activation=activation)
    else:
        raise ValueError(f"Unknown model kind {kind!r}; choose one of {MODEL_KINDS}.")
    if likelihood == "gaussian":
        fixed = None if gaussian_logvar == "learned" else float(gaussian_logvar)
        decoder = GaussianHead(decoder, data_shape, fixed)
    elif likelihood != "bernoulli":
        raise ValueError(f"Unknown likelihood {likelihood!r}; choose 'bernoulli' or 'gaussian'.")
    return VAE(encoder, decoder, data_shape, latent_dim)


def num_params(params) -> int:
    return sum(x.size for x in jax.tree.leaves(params))
