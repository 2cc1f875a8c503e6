"""A VAE with a learned mixture-of-Gaussians prior, written as a user would: one file, with
distrax distributions, plugged into vaejax by
`config.model.kind = "my_models.mixture_prior:MixturePriorVAE"` (experiments/mixture_prior_mnist.py).

    p(z) = sum_k softmax(logits)_k N(z; mu_k, diag(sigma_k^2))     (learned: logits, mu, log sigma)
    q(z|x) = N(z; MLP(x))                                           (diagonal Gaussian)
    p(x|z) = prod_i Bernoulli(x_i; sigmoid(MLP(z)_i))

The mixture prior has no closed-form KL against q, so vaejax's ELBO estimates it by Monte
Carlo over the same draws (and says so); IWAE needs only log-densities. Nothing in vaejax
knows this file: training, evaluation, figures, `reproduce` and sweeps use `init`,
`posterior`, `prior` and `likelihood` only.
"""

from __future__ import annotations

import dataclasses
import math

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
    sizes: tuple[int, ...]

    @nn.compact
    def __call__(self, h):
        for size in self.sizes[:-1]:
            h = nn.relu(nn.Dense(size)(h))
        return nn.Dense(self.sizes[-1])(h)


@dataclasses.dataclass(frozen=True)
class MixturePriorVAE:
    """Called by vaejax with `image_shape=` (H, W, C) and the other `config.model` fields."""

    image_shape: tuple[int, ...]
    latent_dim: int = 10
    num_components: int = 10
    hidden_size: int = 256

    @property
    def data_shape(self) -> tuple[int, ...]:
        """The shape of the x it reads: the image as it is (also vaejax's default if absent)."""
        return self.image_shape

    def _encoder(self):
        return MLP((self.hidden_size, 2 * self.latent_dim))

    def _decoder(self):
        return MLP((self.hidden_size, math.prod(self.image_shape)))

    def init(self, key):
        enc_key, dec_key, mu_key = jax.random.split(key, 3)
        return {
            "encoder": self._encoder().init(enc_key, jnp.zeros(math.prod(self.image_shape)))["params"],
            "decoder": self._decoder().init(dec_key, jnp.zeros(self.latent_dim))["params"],
            "prior": {"logits": jnp.zeros(self.num_components),
                      "mu": jax.random.normal(mu_key, (self.num_components, self.latent_dim)),
                      "log_sigma": jnp.zeros((self.num_components, self.latent_dim))},
        }

    def posterior(self, params, x):
        mean, log_std = jnp.split(self._encoder().apply({"params": params["encoder"]}, x.reshape(-1)), 2)
        return distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))

    def prior(self, params):
        p = params["prior"]
        return distrax.MixtureSameFamily(
            distrax.Categorical(logits=p["logits"]),
            distrax.MultivariateNormalDiag(p["mu"], jnp.exp(p["log_sigma"])))

    def likelihood(self, params, z):
        logits = self._decoder().apply({"params": params["decoder"]}, z).reshape(self.image_shape)
        return distrax.Independent(distrax.Bernoulli(logits=logits), len(self.image_shape))
