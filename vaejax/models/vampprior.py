"""The VampPrior VAE (`model.kind = "vampprior"`): Tomczak & Welling (2018), "VAE with a VampPrior".

The prior is the encoder's own posterior, averaged over K learned pseudo-inputs u_1..u_K:

    p(z) = (1/K) sum_k q(z | u_k)          (a `DiagGaussianMixture` with uniform weights)
    q(z|x) = N(z; MLPEncoder(x))           p(x|z) = Bernoulli or Gaussian of MLPDecoder(z)

(the encoder and decoder of `model.kind = "mlp"`, built by `mlp_vae`).

The pseudo-inputs are parameters, `params["pseudo_inputs"]` of shape (K,) + data_shape, stored
raw and read through hardtanh(0, 1) = clip(u, 0, 1), as the reference code does (there a
bias-free linear layer maps the K x K identity to the K raw pseudo-inputs, which is the
same thing as a (K, D) parameter). The clip has zero gradient outside [0, 1], as hardtanh.

The prior has no closed-form KL against q, so the ELBO estimates it by Monte Carlo over its
own draws; IWAE needs only log-densities. `learned_images(params)` gives the pseudo-inputs
for vaejax's figures (`pseudo_inputs.png`).

The paper's one-layer VAE (github.com/jmtomczak/vae_vampprior, models/VAE.py) differs from
this one where vaejax's MLP is used instead:
  - hidden layers are gated, h = Linear(x) * sigmoid(Linear'(x)), 300-300, He-initialised;
    here plain `nn.Dense` layers with `activation` (default "silu", x * sigmoid(x), the
    self-gated unit nearest to theirs) and Flax's default initialisation;
  - the encoder's logvar passes through hardtanh(-6, 2); here it is unconstrained;
  - the Bernoulli decoder outputs probabilities through a sigmoid; here logits (the same
    model, computed stably).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from vaejax import distributions
from vaejax.models.base import MODELS, EncoderDecoderVAE, check_sizes
from vaejax.models.mlp import mlp_vae

# pseudo_input_init -> the raw pseudo-inputs (K,) + data_shape, from a key and (mean, std)
PSEUDO_INPUT_INITS = {
    # the paper's and reference code's: N(mean, std^2) per pixel (0.05, 0.01 on MNIST)
    "random": lambda key, shape, mean, std: mean + std * jax.random.normal(key, shape),
    # U(0, 1) per pixel, ignoring mean and std: gray noise images
    "uniform": lambda key, shape, mean, std: jax.random.uniform(key, shape),
}


@dataclasses.dataclass(frozen=True)
class VampPriorVAE:
    """An `EncoderDecoderVAE` whose prior is the VampPrior (see the module docstring).

    `params` is `{"encoder": ..., "decoder": ..., "pseudo_inputs": (K,) + data_shape}`; the
    posterior and likelihood are `vae`'s, the prior is the mixture of `vae.posterior` at the
    K clipped pseudo-inputs.
    """

    vae: EncoderDecoderVAE
    num_pseudo_inputs: int = 500
    pseudo_input_init: str = "random"  # a key of PSEUDO_INPUT_INITS
    pseudo_input_mean: float = 0.05
    pseudo_input_std: float = 0.01

    @property
    def data_shape(self) -> tuple[int, ...]:
        return self.vae.data_shape

    @property
    def latent_dim(self) -> int:
        return self.vae.latent_dim

    def init(self, key: jax.Array) -> dict[str, Any]:
        vae_key, pseudo_key = jax.random.split(key)
        init = PSEUDO_INPUT_INITS[self.pseudo_input_init]
        shape = (self.num_pseudo_inputs,) + self.data_shape
        return self.vae.init(vae_key) | {
            "pseudo_inputs": init(pseudo_key, shape, self.pseudo_input_mean, self.pseudo_input_std)}

    def pseudo_inputs(self, params) -> jax.Array:
        """The pseudo-inputs u_k = hardtanh(raw, 0, 1): (K,) + data_shape, in [0, 1]."""
        return jnp.clip(params["pseudo_inputs"], 0.0, 1.0)

    def posterior(self, params, x) -> distributions.DiagGaussian:
        """x: `data_shape` -> q(z|x), a diagonal Gaussian over (Z,)."""
        return self.vae.posterior(params, x)

    def prior(self, params) -> distributions.DiagGaussianMixture:
        """p(z) = (1/K) sum_k q(z | u_k): uniform logits (K,), loc and logvar (K, Z)."""
        q_K = jax.vmap(lambda u: self.vae.posterior(params, u))(self.pseudo_inputs(params))
        return distributions.DiagGaussianMixture(
                jnp.zeros((self.num_pseudo_inputs,), q_K.loc.dtype), q_K.loc, q_K.logvar)

    def likelihood(self, params, z):
        """z: (Z,) -> p(x|z): Bernoulli(logits) or DiagGaussian(mean, logvar) over x."""
        return self.vae.likelihood(params, z)

    def learned_images(self, params) -> dict[str, jax.Array]:
        """{"pseudo_inputs": (K,) + data_shape in [0, 1]}: vaejax draws each as `<key>.png`."""
        return {"pseudo_inputs": self.pseudo_inputs(params)}


@MODELS.register("vampprior")
def vampprior_vae(*, image_shape: Sequence[int], latent_dim: int = 40,
                  hidden_sizes: Sequence[int] = (300, 300), activation: str = "silu",
                  num_pseudo_inputs: int = 500, pseudo_input_init: str = "random",
                  pseudo_input_mean: float = 0.05, pseudo_input_std: float = 0.01,
                  likelihood: str = "bernoulli", gaussian_logvar: str | float = "learned",
                  ) -> VampPriorVAE:
    """The MLP VAE of `mlp_vae` (flat (H*W*C,) inputs, decoder mirroring `hidden_sizes`) with
    a VampPrior of `num_pseudo_inputs` pseudo-inputs. The defaults are the paper's one-layer
    MNIST model (latent 40, 300-300, K = 500, pseudo-inputs initialised N(0.05, 0.01^2)).

    `pseudo_input_init`: "random" draws the raw pseudo-inputs from
    N(pseudo_input_mean, pseudo_input_std^2) per pixel (the paper's); "uniform" from U(0, 1).
    The paper's other option, training images plus N(0, 0.01^2) noise, needs data that
    `init(key)` does not see: set `params["pseudo_inputs"]` (raw, (K,) + data_shape) after
    `init` to do it.
    """
    if pseudo_input_init not in PSEUDO_INPUT_INITS:
        raise ValueError(f"Unknown pseudo_input_init {pseudo_input_init!r}; choose one of "
                         f"{sorted(PSEUDO_INPUT_INITS)}.")
    check_sizes(num_pseudo_inputs=num_pseudo_inputs)
    vae = mlp_vae(image_shape=image_shape, latent_dim=latent_dim, hidden_sizes=hidden_sizes,
                  activation=activation, likelihood=likelihood, gaussian_logvar=gaussian_logvar)
    return VampPriorVAE(vae, int(num_pseudo_inputs), pseudo_input_init,
                        float(pseudo_input_mean), float(pseudo_input_std))
