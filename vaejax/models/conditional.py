"""The conditional VAE (`model.kind = "conditional"`, Sohn et al. 2015), conditioned on the label.

    q(z|x, y) = N(z; MLP_q([x, onehot(y)]))        p(x|z, y) = Bernoulli(MLP_p([z, onehot(y)]))
    p(z|y)    = N(0, I)                              (prior="standard"), or
              = N(mu_y, diag(exp(logvar_y)))         (prior="learned": one Gaussian per class)

The bound is on the conditional likelihood log p(x|y) (Sohn et al.'s CVAE objective, with the
label as the condition and the image as the output). The model declares
`conditioning = "label"`, so vaejax's data layer hands each example's label to `posterior`,
`prior` and `likelihood` as their last argument, in training, evaluation (conditional NLL),
figures (a grid of samples per class) and sweeps alike.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from vaejax import distributions
from vaejax.models.base import (MODELS, activation_fn, check_sizes, likelihood_distribution,
                                likelihood_head)
from vaejax.models.mlp import MLPDecoder, MLPEncoder

PRIORS = ("standard", "learned")


@dataclasses.dataclass(frozen=True)
class ConditionalVAE:
    """An MLP VAE whose encoder, decoder (and optionally prior) read the one-hot label.

    `params` is {"encoder", "decoder"} (+ "prior": {"loc", "logvar"} each (num_classes, Z)
    for prior="learned"). The condition is one label: an int32 scalar in [0, num_classes).
    """

    encoder: MLPEncoder
    decoder: Any  # MLPDecoder, or wrapped in a Gaussian head
    data_shape: tuple[int, ...]
    latent_dim: int
    num_classes: int
    prior_kind: str = "standard"
    likelihood_kind: str = "bernoulli"  # model.likelihood
    conditioning = "label"  # what vaejax hands the model (a class attribute, not a field)

    def _onehot(self, y):
        if jnp.ndim(y) != 0:
            raise ValueError(f"the condition is one label (a scalar), got shape {jnp.shape(y)}; "
                             "vmap over a batch (the objectives do).")
        return jax.nn.one_hot(y, self.num_classes)

    def init(self, key: jax.Array) -> dict[str, Any]:
        enc_key, dec_key = jax.random.split(key)
        params = {
            "encoder": self.encoder.init(enc_key, jnp.zeros((self.data_shape[0] + self.num_classes,)))["params"],
            "decoder": self.decoder.init(dec_key, jnp.zeros((self.latent_dim + self.num_classes,)))["params"],
        }
        if self.prior_kind == "learned":
            zeros = jnp.zeros((self.num_classes, self.latent_dim))
            params["prior"] = {"loc": zeros, "logvar": zeros}
        return params

    def posterior(self, params, x, y) -> distributions.DiagGaussian:
        """x: `data_shape` (flat), y: label -> q(z|x, y), a diagonal Gaussian over (Z,)."""
        if x.shape != self.data_shape:
            raise ValueError(f"posterior takes one example of shape {self.data_shape}, got {x.shape}; "
                             "vmap over a batch.")
        inputs = jnp.concatenate([x, self._onehot(y).astype(x.dtype)])
        return distributions.DiagGaussian(*self.encoder.apply({"params": params["encoder"]}, inputs))

    def prior(self, params, y):
        """p(z|y): N(0, I), or the label's learned diagonal Gaussian."""
        if self.prior_kind == "standard":
            return distributions.StandardNormal((self.latent_dim,))
        onehot = self._onehot(y)
        return distributions.DiagGaussian(onehot @ params["prior"]["loc"], onehot @ params["prior"]["logvar"])

    def likelihood(self, params, z, y):
        """z: (Z,), y: label -> p(x|z, y) over `data_shape`."""
        if z.shape != (self.latent_dim,):
            raise ValueError(f"likelihood takes one z of shape ({self.latent_dim},), got {z.shape}.")
        inputs = jnp.concatenate([z, self._onehot(y).astype(z.dtype)])
        return likelihood_distribution(self.likelihood_kind,
                                       self.decoder.apply({"params": params["decoder"]}, inputs))


@MODELS.register("conditional")
def conditional_vae(*, image_shape: Sequence[int], latent_dim: int, num_classes: int = 10,
                    hidden_sizes: Sequence[int] = (500, 500), activation: str = "relu",
                    prior: str = "standard", likelihood: str = "bernoulli",
                    gaussian_logvar: str | float = "learned") -> ConditionalVAE:
    """Encoder `hidden_sizes` on [flat x, onehot(y)], decoder the same reversed on [z, onehot(y)]."""
    activation_fn(activation)
    if prior not in PRIORS:
        raise ValueError(f"Unknown model.prior {prior!r} for the conditional VAE; choose one of {PRIORS}.")
    check_sizes(latent_dim=latent_dim, num_classes=num_classes, hidden_sizes=hidden_sizes)
    flat = (math.prod(int(d) for d in image_shape),)
    decoder = likelihood_head(likelihood, MLPDecoder(tuple(reversed(tuple(hidden_sizes))), flat,
                                                     activation), flat, gaussian_logvar)
    return ConditionalVAE(MLPEncoder(tuple(hidden_sizes), latent_dim, activation), decoder, flat,
                          latent_dim, num_classes, prior, likelihood)
