"""Burda et al. (2015)'s VAE with two stochastic layers (`model.kind = "two_layer"`).

Section 5 of "Importance Weighted Autoencoders", on flat (H*W*C,) vectors, z = {"z1", "z2"}:

    q(z1, z2 | x) = q(z1 | x) q(z2 | z1)     x -200-200-> z1 (100)   z1 -100-100-> z2 (50)
    p(z1, z2)     = p(z2) p(z1 | z2)         p(z2) = N(0, I)         z2 -100-100-> z1
    p(x | z1, z2) = p(x | z1)                z1 -200-200-> x: Bernoulli logits

every conditional a diagonal Gaussian N(mean, diag(exp(logvar))) from a tanh MLP. Both the
posterior and the prior are a `GaussianChain`: a Gaussian over one variable, then a
conditional Gaussian of the next given it. The bounds (`vaejax.elbo`, `vaejax.iwae_bound`)
need nothing else: the chains have no closed-form KL, so the ELBO's KL is the Monte Carlo
log q(z|x) - log p(z) over its own draws, and evaluation and figures flatten z.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vaejax import distributions
from vaejax.models.base import (MODELS, activation_fn, check_sizes, likelihood_distribution,
                                likelihood_head, output_bias_init)
from vaejax.models.mlp import MLPDecoder, MLPEncoder


class ConditionalGaussian(nn.Module):
    """a (..., A) -> Dense(h) for h in hidden_sizes -> Dense(2B) -> (mean, logvar), each (..., B).

    Unlike `MLPEncoder`, it keeps leading axes (the sample axes of a chain's draws).
    """

    hidden_sizes: Sequence[int]
    output_dim: int
    activation: str = "tanh"

    @nn.compact
    def __call__(self, a):
        h = a
        for size in self.hidden_sizes:
            h = activation_fn(self.activation)(nn.Dense(size)(h))
        mean, logvar = jnp.split(nn.Dense(2 * self.output_dim)(h), 2, axis=-1)
        return mean, logvar


@functools.partial(jax.tree_util.register_dataclass, data_fields=["first", "params"],
                   meta_fields=["conditional", "names"])
@dataclasses.dataclass(frozen=True)
class GaussianChain:
    """p(a, b) = p(a) N(b; mean(a), diag(exp(logvar(a)))) over z = {names[0]: a, names[1]: b}.

    `first` is the distribution of a (`DiagGaussian`, `StandardNormal`, or anything with
    distrax's interface over a vector (A,)); `conditional` is a Flax module with
    `conditional.apply({"params": params}, a_...xA) -> (mean_...xB, logvar_...xB)` keeping
    leading axes (`ConditionalGaussian`). A pytree: `first` and `params` are its data, so
    `jax.tree.map(jax.lax.stop_gradient, chain)` has the same density with no gradient to
    the parameters, and chains pass through jit and vmap. Log-densities in nats.

    Draws are ancestral and reparameterized: `seed` splits into (key_a, key_b); a is
    `first.sample(seed=key_a, sample_shape=S)`, and b = mean(a) + exp(logvar(a) / 2) * eps
    with eps = jax.random.normal(key_b, S + (B,)).
    """

    first: Any
    params: Any
    conditional: nn.Module
    names: tuple[str, str]

    def _conditional(self, a):
        return self.conditional.apply({"params": self.params}, a)

    @property
    def event_shape(self) -> dict[str, tuple[int, ...]]:
        """{names[0]: (A,), names[1]: (B,)}."""
        first_shape = tuple(self.first.event_shape)
        a = jax.ShapeDtypeStruct(first_shape, jnp.float32)
        mean, _ = jax.eval_shape(self.conditional.apply, {"params": self.params}, a)
        return {self.names[0]: first_shape, self.names[1]: tuple(mean.shape)}

    def mean(self) -> dict[str, jax.Array]:
        """Ancestral through the means: a* = E[a], then b* = mean(a*), the conditional mean at a*.

        a* is the mean of the first layer, but b* is NOT the marginal mean E[b] = E[mean(a)]
        unless mean(.) is linear in a (Jensen): it is a point for figures and active units.
        """
        a = self.first.mean()
        mean_b, _ = self._conditional(a)
        return {self.names[0]: a, self.names[1]: mean_b}

    def sample_and_log_prob(self, *, seed, sample_shape=()):
        """z as a dict of `S + (A,)` and `S + (B,)` arrays, and log p(z) of shape S (nats)."""
        key_a, key_b = jax.random.split(seed)
        a, log_p_a = distributions.sample_and_log_prob(self.first, key_a, sample_shape)
        mean_b, logvar_b = self._conditional(a)
        b = distributions.diag_gaussian_sample(key_b, mean_b, logvar_b)
        log_p_b = distributions.diag_gaussian_log_prob(b, mean_b, logvar_b)
        return {self.names[0]: a, self.names[1]: b}, log_p_a + log_p_b

    def sample(self, *, seed, sample_shape=()):
        """`sample_and_log_prob`'s z (the same draws for the same seed)."""
        return self.sample_and_log_prob(seed=seed, sample_shape=sample_shape)[0]

    def log_prob(self, value: Mapping[str, jax.Array]):
        """log p(a) + log N(b; mean(a), diag(exp(logvar(a)))): dict of `S + (A,)`, `S + (B,)` -> S."""
        a, b = value[self.names[0]], value[self.names[1]]
        mean_b, logvar_b = self._conditional(a)
        return self.first.log_prob(a) + distributions.diag_gaussian_log_prob(b, mean_b, logvar_b)


@dataclasses.dataclass(frozen=True)
class TwoLayerVAE:
    """Two stochastic layers, z = {"z1": (Z1,), "z2": (Z2,)} (see the module docstring).

    `params` is `{"q_z1": x -> z1, "q_z2": z1 -> z2, "p_z1": z2 -> z1, "p_x": z1 -> x}`,
    each the parameters of one Flax module.
    """

    q_z1: nn.Module  # x -> (mean, logvar) of q(z1|x)
    q_z2: nn.Module  # z1 -> (mean, logvar) of q(z2|z1)
    p_z1: nn.Module  # z2 -> (mean, logvar) of p(z1|z2)
    p_x: nn.Module  # z1 -> the output `likelihood_head(likelihood_kind, ...)` gives
    data_shape: tuple[int, ...]
    latent_dims: tuple[int, int]
    likelihood_kind: str = "bernoulli"  # model.likelihood

    def init(self, key: jax.Array) -> dict[str, Any]:
        z1_dim, z2_dim = self.latent_dims
        keys = jax.random.split(key, 4)
        return {
            "q_z1": self.q_z1.init(keys[0], jnp.zeros(self.data_shape))["params"],
            "q_z2": self.q_z2.init(keys[1], jnp.zeros((z1_dim,)))["params"],
            "p_z1": self.p_z1.init(keys[2], jnp.zeros((z2_dim,)))["params"],
            "p_x": self.p_x.init(keys[3], jnp.zeros((z1_dim,)))["params"],
        }

    def posterior(self, params, x) -> GaussianChain:
        """x: `data_shape` -> q(z1|x) q(z2|z1), a chain over {"z1": (Z1,), "z2": (Z2,)}."""
        if x.shape != self.data_shape:
            raise ValueError(
                f"posterior takes one example of shape {self.data_shape}, got {x.shape}; "
                "vmap over a batch (vaejax.batch_elbo does).")
        mean, logvar = self.q_z1.apply({"params": params["q_z1"]}, x)
        return GaussianChain(distributions.DiagGaussian(mean, logvar), params["q_z2"], self.q_z2,
                             ("z1", "z2"))

    def prior(self, params) -> GaussianChain:
        """p(z2) p(z1|z2) with p(z2) = N(0, I), a chain over {"z2": (Z2,), "z1": (Z1,)}."""
        return GaussianChain(distributions.StandardNormal((self.latent_dims[1],)), params["p_z1"],
                             self.p_z1, ("z2", "z1"))

    def likelihood(self, params, z):
        """z: {"z1": (Z1,), "z2": ...} -> p(x|z1): Bernoulli(logits) or DiagGaussian over x."""
        z1_shape = (self.latent_dims[0],)
        if not isinstance(z, Mapping) or "z1" not in z or jnp.shape(z["z1"]) != z1_shape:
            got = ({k: jnp.shape(v) for k, v in z.items()} if isinstance(z, Mapping)
                   else f"{type(z).__name__} of shape {jnp.shape(z)}")
            raise ValueError(f"likelihood takes one z, a dict with 'z1' of shape {z1_shape} "
                             f"(and 'z2'), got {got}.")
        return likelihood_distribution(self.likelihood_kind,
                                       self.p_x.apply({"params": params["p_x"]}, z["z1"]))


@MODELS.register("two_layer")
def two_layer_vae(*, image_shape: Sequence[int], latent_dims: Sequence[int] = (100, 50),
                  hidden_sizes: Sequence[Sequence[int]] = ((200, 200), (100, 100)),
                  activation: str = "tanh", likelihood: str = "bernoulli",
                  gaussian_logvar: str | float = "learned", output_bias: str = "zeros",
                  mean_image=None) -> TwoLayerVAE:
    """Burda et al.'s two-stochastic-layer VAE on flat (H*W*C,) vectors; the defaults are
    their widths (yburda/iwae, experiments.py: 521,084 parameters on MNIST).

    `hidden_sizes[0]` are the layers between x and z1 (the decoder p(x|z1) mirrors them),
    `hidden_sizes[1]` those between z1 and z2, both ways; () is a linear map.
    `likelihood`, `gaussian_logvar` and `output_bias` as for the MLP VAE.
    """
    activation_fn(activation)  # validate early
    check_sizes(latent_dims=latent_dims, hidden_sizes=hidden_sizes)
    latent_dims = tuple(int(d) for d in latent_dims)
    hidden_sizes = tuple(tuple(int(h) for h in layer) for layer in hidden_sizes)
    if len(latent_dims) != 2 or len(hidden_sizes) != 2:
        raise ValueError(f"two_layer: latent_dims and hidden_sizes need one entry per stochastic "
                         f"layer (2), got {latent_dims} and {hidden_sizes}.")
    z1_dim, z2_dim = latent_dims
    (x_hidden, z_hidden) = hidden_sizes
    flat = (math.prod(int(d) for d in image_shape),)
    return TwoLayerVAE(
        q_z1=MLPEncoder(x_hidden, z1_dim, activation),
        q_z2=ConditionalGaussian(z_hidden, z2_dim, activation),
        p_z1=ConditionalGaussian(tuple(reversed(z_hidden)), z1_dim, activation),
        p_x=likelihood_head(likelihood, MLPDecoder(tuple(reversed(x_hidden)), flat, activation,
                            output_bias_init(output_bias, likelihood, mean_image, flat)),
                            flat, gaussian_logvar),
        data_shape=flat, latent_dims=latent_dims, likelihood_kind=likelihood)
