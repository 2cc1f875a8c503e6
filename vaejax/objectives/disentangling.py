"""Objectives of the disentanglement literature beside beta-VAE and beta-TCVAE, as
disentanglement_lib defines them (`methods/unsupervised/vae.py`), in nats per example:

- DIP-VAE (Kumar et al. 2018, "Variational inference of disentangled latent concepts from
  unlabeled observations"): the negative ELBO plus a penalty that pushes a covariance of the
  codes towards the identity,

      loss = -ELBO + lambda_od * sum_{i != j} Cov_ij^2 + lambda_d * sum_i (Cov_ii - 1)^2,
      lambda_d = lambda_d_factor * lambda_od,

  where Cov is the covariance over the batch of the encoder means mu(x) (DIP-VAE-I, their
  eq. 6) or that plus the batch mean of the encoder's diagonal covariance, E_x[diag
  sigma^2(x)] + Cov_x[mu(x)], the covariance of the aggregate posterior (DIP-VAE-II, eq. 7).
  Cov_x[mu] = E[mu mu^T] - E[mu] E[mu]^T over the B examples (divided by B, not B - 1).
- AnnealedVAE (Burgess et al. 2018, "Understanding disentangling in beta-VAE", eq. 8): the
  KL is held at a capacity C that grows linearly from 0 to C_max over `capacity_steps`
  training steps,

      loss = reconstruction loss + capacity_weight * |KL - C(step)|,
      C(step) = capacity_max * min(step / capacity_steps, 1).

- FactorVAE (Kim & Mnih 2018, "Disentangling by factorising", eq. 2): the negative ELBO plus
  gamma times the total correlation of the codes, estimated by a discriminator that tells
  codes z ~ q(z|x) from codes whose dimensions were shuffled across the batch; the
  discriminator is a second model with its own optimizer (`FactorVAE`).

The KL is the closed form of q(z|x) against p(z) where it exists (a diagonal Gaussian against
N(0, I), as in disentanglement_lib), the Monte Carlo estimate otherwise (`bounds.elbo`).
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from vaejax.objectives import bounds
from vaejax.objectives.common import model_functions

DIP_TYPES = ("i", "ii")


def dip_covariance(mean_BxZ, variance_BxZ=None):
    """The covariance DIP-VAE regularises, (Z, Z): Cov over the batch of the encoder means
    (DIP-VAE-I), plus the batch mean of the encoder variances on the diagonal when
    `variance_BxZ` is given (DIP-VAE-II)."""
    centred_BxZ = mean_BxZ - jnp.mean(mean_BxZ, axis=0, keepdims=True)
    covariance_ZxZ = centred_BxZ.T @ centred_BxZ / mean_BxZ.shape[0]
    if variance_BxZ is not None:
        covariance_ZxZ = covariance_ZxZ + jnp.diag(jnp.mean(variance_BxZ, axis=0))
    return covariance_ZxZ


def dip_penalty(covariance_ZxZ, *, lambda_od, lambda_d):
    """lambda_od * (sum of the squared off-diagonal entries) + lambda_d * (sum of the squared
    deviations of the diagonal from 1): 0 exactly when the covariance is the identity."""
    diagonal_Z = jnp.diagonal(covariance_ZxZ)
    off_diagonal = covariance_ZxZ - jnp.diag(diagonal_Z)
    return lambda_od * jnp.sum(off_diagonal ** 2) + lambda_d * jnp.sum((diagonal_Z - 1.0) ** 2)


def annealed_capacity(step, *, capacity_max, capacity_steps):
    """C(step) = capacity_max * min(step / capacity_steps, 1), in nats (AnnealedVAE)."""
    fraction = jnp.minimum(jnp.asarray(step, jnp.float32) / capacity_steps, 1.0)
    return capacity_max * fraction


def _elbo_terms(key, x_BxD, model, params, condition):
    """The batch's mean reconstruction and mean KL (one reparameterized draw per example, the
    keys of `mean_over_examples`), q(z|x) of every example: (mean (B, Z), variance (B, Z)),
    and the ELBO's draw z of every example (B, Z). The encoder runs once per example; what a
    caller leaves unused, jit drops."""
    def one(k, x, c):
        encode, decode, prior = model_functions(model, params, c)
        q = encode(x)
        _, aux = bounds.elbo(k, x, lambda _: q, decode, prior=prior)
        z = q.sample(seed=k, sample_shape=(1,))[0]  # the draw `bounds.elbo` took from k
        return aux["reconstruction"], aux["kl"], q.mean(), q.variance(), z

    keys = jax.random.split(key, x_BxD.shape[0])
    reconstruction_B, kl_B, mean_BxZ, variance_BxZ, z_BxZ = jax.vmap(one)(keys, x_BxD, condition)
    return jnp.mean(reconstruction_B), jnp.mean(kl_B), mean_BxZ, variance_BxZ, z_BxZ


@dataclasses.dataclass(frozen=True)
class DIPVAE:
    """Minus the ELBO plus DIP-VAE's covariance penalty (see the module docstring), averaged
    over the batch. `dip_type` "i" or "ii" (static); `lambda_od` and `lambda_d_factor` are
    traced, so a sweep vmaps over them. The encoder must give a diagonal Gaussian (it has
    `mean()` and `variance()`). Metrics: rate (the KL), distortion, dip (the penalty)."""

    scalars = ("lambda_od", "lambda_d_factor")
    dip_type: str = "i"

    def __post_init__(self):
        if self.dip_type not in DIP_TYPES:
            raise ValueError(f"objective.dip_type={self.dip_type!r}: choose 'i' (the covariance "
                             "of the encoder means) or 'ii' (of the aggregate posterior)")

    def __call__(self, key, x_BxD, model, params, *, condition=None, lambda_od, lambda_d_factor):
        reconstruction, kl, mean, variance, _ = _elbo_terms(key, x_BxD, model, params, condition)
        covariance = dip_covariance(mean, variance if self.dip_type == "ii" else None)
        penalty = dip_penalty(covariance, lambda_od=lambda_od, lambda_d=lambda_d_factor * lambda_od)
        return kl - reconstruction + penalty, {"rate": kl, "distortion": -reconstruction,
                                               "dip": penalty}


@dataclasses.dataclass(frozen=True)
class AnnealedVAE:
    """The reconstruction loss plus capacity_weight * |KL - C(step)| (see the module
    docstring), averaged over the batch. `capacity_max` (nats) and `capacity_weight` are
    traced, so a sweep vmaps over them; `capacity_steps` is the ramp's length in training
    steps. Metrics: rate (the KL), distortion, capacity (C at this step)."""

    scalars = ("capacity_max", "capacity_weight")
    capacity_steps: int = 100_000

    def __post_init__(self):
        if not isinstance(self.capacity_steps, int) or self.capacity_steps < 1:
            raise ValueError(f"objective.capacity_steps must be a positive int (training steps "
                             f"over which the capacity grows to capacity_max), got "
                             f"{self.capacity_steps!r}")

    def __call__(self, key, x_BxD, model, params, *, condition=None, step, capacity_max,
                 capacity_weight):
        reconstruction, kl, _, _, _ = _elbo_terms(key, x_BxD, model, params, condition)
        capacity = annealed_capacity(step, capacity_max=capacity_max,
                                     capacity_steps=self.capacity_steps)
        loss = -reconstruction + capacity_weight * jnp.abs(kl - capacity)
        return loss, {"rate": kl, "distortion": -reconstruction, "capacity": capacity}


class Discriminator(nn.Module):
    """FactorVAE's discriminator (Kim & Mnih 2018, appendix A; disentanglement_lib's
    `fc_discriminator`): z (..., Z) -> 6 x Dense(1000) with leaky ReLU (slope 0.2, TensorFlow's
    default) -> 2 logits, [real, permuted]."""

    hidden_sizes: tuple[int, ...] = (1000,) * 6

    @nn.compact
    def __call__(self, z):
        h = z
        for size in self.hidden_sizes:
            h = nn.leaky_relu(nn.Dense(size)(h), negative_slope=0.2)
        return nn.Dense(2)(h)


def permute_dims(key, z_BxZ):
    """Each column of the codes shuffled across the batch by its own permutation: a sample of
    the product of the marginals prod_j q(z_j) (Kim & Mnih 2018, algorithm 1)."""
    keys = jax.random.split(key, z_BxZ.shape[1])
    return jax.vmap(lambda k, column: jax.random.permutation(k, column), in_axes=(0, 1),
                    out_axes=1)(keys, z_BxZ)


PROBABILITY_CLIP = 1e-6  # disentanglement_lib clips the discriminator's probabilities
PERMUTATION_STREAM = 1_000_037  # fold_in tag of the permutation's key: apart from the draws'



@dataclasses.dataclass(frozen=True)
class FactorVAE:
    """FactorVAE (Kim & Mnih 2018, eq. 2), as disentanglement_lib trains it: minus the ELBO
    plus gamma times the total correlation estimated by a discriminator D on the codes,

        loss  = -ELBO + gamma * mean_x [logit_real(z) - logit_permuted(z)],  z ~ q(z|x),
        D's loss = -(mean log D_real(z) + mean log D_permuted(permute_dims(z))) / 2,

    both from the same batch and draws, averaged over the batch. D has its own parameters and
    optimizer (Adam, 1e-4, b1 0.5, b2 0.9, as disentanglement_lib's `shared.gin`); vaejax
    trains them beside the model through `init_auxiliary`, `auxiliary_optimizer` and
    `auxiliary_loss` (see `vaejax.program`), so the loop has no FactorVAE case. `gamma` is
    traced, so a sweep vmaps over it. The encoder must give a diagonal Gaussian over a vector.
    Metrics: rate, distortion, tc (D's estimate), discriminator_loss, discriminator_accuracy.
    """

    scalars = ("gamma",)

    @property
    def auxiliary_optimizer(self):
        return optax.adam(1e-4, b1=0.5, b2=0.9, eps=1e-8)

    def init_auxiliary(self, key, model, params, data_shape):
        """D's parameters for the model's codes (their size read from q of a zero example)."""
        latent = jax.eval_shape(lambda: model.posterior(params, jnp.zeros(data_shape)).mean())
        return Discriminator().init(key, jnp.zeros(latent.shape))["params"]

    def __call__(self, key, x_BxD, model, params, *, condition=None, gamma, auxiliary):
        reconstruction, kl, _, _, z_BxZ = _elbo_terms(key, x_BxD, model, params, condition)
        logits = Discriminator().apply({"params": jax.lax.stop_gradient(auxiliary)}, z_BxZ)
        tc = jnp.mean(logits[:, 0] - logits[:, 1])
        return kl - reconstruction + gamma * tc, {"rate": kl, "distortion": -reconstruction, "tc": tc}

    def auxiliary_loss(self, key, x_BxD, model, params, auxiliary, *, condition=None):
        """D's loss on the codes of the same batch and draws as the model's loss (the model's
        parameters held fixed): (loss, metrics)."""
        *_, z_BxZ = _elbo_terms(key, x_BxD, model, jax.lax.stop_gradient(params), condition)
        permute_key = jax.random.fold_in(key, PERMUTATION_STREAM)
        z_BxZ = jax.lax.stop_gradient(z_BxZ)
        apply = lambda z: Discriminator().apply({"params": auxiliary}, z)  # noqa: E731
        log_p_real = jax.nn.log_softmax(apply(z_BxZ))[:, 0]
        log_p_permuted = jax.nn.log_softmax(apply(permute_dims(permute_key, z_BxZ)))[:, 1]
        clip = lambda log_p: jnp.clip(log_p, jnp.log(PROBABILITY_CLIP), jnp.log1p(-PROBABILITY_CLIP))  # noqa: E731
        loss = -0.5 * (jnp.mean(clip(log_p_real)) + jnp.mean(clip(log_p_permuted)))
        accuracy = 0.5 * (jnp.mean(log_p_real > jnp.log(0.5)) + jnp.mean(log_p_permuted > jnp.log(0.5)))
        return loss, {"discriminator_loss": loss, "discriminator_accuracy": accuracy}
