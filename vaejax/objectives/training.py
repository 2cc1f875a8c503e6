"""Training objectives: batch-level plug-ins that `config.objective.kind` names.

An objective is built once from the `config.objective` fields its signature names (ints and
flags that fix shapes and code paths are static) and called inside the jitted step:

    objective = OBJECTIVES.get(kind)(**static_fields)
    loss, metrics = objective(key, x_BxD, model, params, **scalars)

- `x_BxD`: the preprocessed batch, each example of shape `model.data_shape`.
- `model`, `params`: a model with `posterior / prior / likelihood` (see `vaejax.models`).
- `condition`: for a model conditioned on each example's label (`model.conditioning`), the
  labels (B,), passed only then; an objective that takes `condition=` binds each example's
  into the model's functions (`model_functions`, `mean_over_examples`).
- `scalars`: the fields named in the objective's `scalars` class attribute (e.g. `beta`),
  as traced float32 scalars, so a sweep vmaps over them instead of recompiling. A scalar
  named `beta` follows `config.objective.beta_schedule`.
- Returns the scalar loss to minimise and a dict of scalar metrics in nats per example;
  "rate" and "distortion" are the conventional names (rate + distortion = -ELBO).

A batch-level objective (one that needs the whole batch, like beta-TCVAE's minibatch
estimators) receives the batch as it is; per-example ones vmap with `batch_elbo` & co. A
factory whose signature names `dataset_size` is given the training-set size N.
An objective whose weights follow the training step names `step` in its call and is given the
optimizer step (int32, traced).
Registered: elbo, iwae, miwae, ciwae, piwae (with `gradient_estimator`), rws, tcvae, dip_vae,
annealed_vae.
Your own: `config.objective.kind = "my_module:MyObjective"`.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp

from vaejax import registry
from vaejax.objectives import bounds, disentangling, tcvae, wake_sleep
from vaejax.objectives.common import mean_over_examples, model_functions, over_examples

OBJECTIVES = registry.Registry(
    "objective", "objective.kind",
    # What a config that is not about a setting holds, so an objective that does not read it
    # loses nothing; any other value of a setting the objective does not read is refused.
    neutral=dict(num_samples=1, num_groups=1, gradient_estimator="reparam", analytic_kl=True,
                 free_bits=0.0, beta=1.0, alpha=1.0, gamma=1.0, sampling="mws",
                 beta_schedule="constant", dip_type="i", lambda_od=1.0, lambda_d_factor=10.0,
                 capacity_max=25.0, capacity_weight=1000.0, capacity_steps=100_000,
                 kl_balance=False),
    supplied=("dataset_size",),
    implied={"beta": ("beta_schedule",)})


def _functions(model, params):
    """condition -> (encode, decode, prior) of one example: `model_functions` at `params`."""
    return functools.partial(model_functions, model, params)


class _WithGradientEstimator:
    """An objective with a `gradient_estimator` field, checked when the program is built."""

    def __post_init__(self):
        if self.gradient_estimator not in bounds.GRADIENT_ESTIMATORS:
            raise ValueError(f"objective.gradient_estimator={self.gradient_estimator!r}: choose one of "
                             f"{', '.join(map(repr, bounds.GRADIENT_ESTIMATORS))}")


@OBJECTIVES.register("elbo")
@dataclasses.dataclass(frozen=True)
class ELBO(_WithGradientEstimator):
    """Minus the beta-weighted ELBO (`bounds.elbo`), averaged over the batch.

    `kl_balance` (hierarchical models): while beta < 1, each layer's KL is weighed by NVAE's
    coefficient (`bounds.kl_balance_coefficients`, from the batch); from beta = 1 on, the
    plain ELBO. The reported rate is never reweighed."""

    scalars = ("beta",)
    num_samples: int = 1
    analytic_kl: bool = True
    free_bits: float = 0.0
    gradient_estimator: str = "reparam"
    kl_balance: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.kl_balance and self.free_bits != 0.0:
            raise ValueError("objective.kl_balance and objective.free_bits both reweigh each layer's "
                             "KL term: use one of them (NVAE balances, VDVAE floors).")

    def __call__(self, key, x_BxD, model, params, *, condition=None, beta):
        functions = _functions(model, params)
        kw = dict(beta=beta, num_samples=self.num_samples, analytic_kl=self.analytic_kl,
                  free_bits=self.free_bits, gradient_estimator=self.gradient_estimator)
        if not self.kl_balance:
            value, aux = mean_over_examples(bounds.elbo, key, x_BxD, functions, condition, **kw)
            return -value, {"rate": aux["kl"], "distortion": -aux["reconstruction"]}
        values_B, aux_B = over_examples(bounds.elbo, key, x_BxD, functions, condition, **kw)
        if "kl_by_variable" not in aux_B:
            raise ValueError("objective.kl_balance balances the KL of each stochastic layer: it needs "
                             "a hierarchical model (model.kind=hierarchical, ladder, two_layer).")
        encode = functions(None if condition is None else condition[0])[0]
        means = jax.eval_shape(lambda x: encode(x).mean(), x_BxD[0])  # shapes only: no work
        sizes = {name: math.prod(mean.shape) for name, mean in means.items()}
        kl_B = aux_B["kl_by_variable"]
        coefficients = bounds.kl_balance_coefficients(kl_B, sizes)
        balanced = sum(coefficients[name] * jnp.mean(kl_B[name]) for name in kl_B)
        reconstruction = jnp.mean(aux_B["reconstruction"])
        value = jnp.where(beta < 1.0, reconstruction - beta * balanced, jnp.mean(values_B))
        return -value, {"rate": jnp.mean(aux_B["kl"]), "distortion": -reconstruction}


def _weight_metrics(aux):
    """Rate and distortion as the unweighted Monte Carlo averages over the draws, and the ESS."""
    return {"rate": aux["kl"], "distortion": -aux["reconstruction"], "ess": aux["ess"]}


@OBJECTIVES.register("iwae")
@dataclasses.dataclass(frozen=True)
class IWAE(_WithGradientEstimator):
    """Minus the K-sample importance-weighted bound (`bounds.iwae_bound`), K = num_samples.

    Metrics: rate and distortion are the unweighted Monte Carlo averages over the K draws.
    """

    scalars = ()
    num_samples: int = 1
    gradient_estimator: str = "reparam"

    def __call__(self, key, x_BxD, model, params, *, condition=None):
        value, aux = mean_over_examples(bounds.iwae_bound, key, x_BxD, _functions(model, params),
                                        condition, num_samples=self.num_samples,
                                        gradient_estimator=self.gradient_estimator)
        return -value, {"rate": aux["kl"], "distortion": -aux["reconstruction"]}


@OBJECTIVES.register("miwae")
@dataclasses.dataclass(frozen=True)
class MIWAE(_WithGradientEstimator):
    """Minus MIWAE(M, K) (`bounds.miwae_bound`): M = num_groups bounds of K = num_samples."""

    scalars = ()
    num_groups: int = 8
    num_samples: int = 8
    gradient_estimator: str = "reparam"

    def __call__(self, key, x_BxD, model, params, *, condition=None):
        value, aux = mean_over_examples(bounds.miwae_bound, key, x_BxD, _functions(model, params),
                                        condition, num_groups=self.num_groups,
                                        num_samples=self.num_samples,
                                        gradient_estimator=self.gradient_estimator)
        return -value, _weight_metrics(aux)


@OBJECTIVES.register("ciwae")
@dataclasses.dataclass(frozen=True)
class CIWAE(_WithGradientEstimator):
    """Minus CIWAE(beta) (`bounds.ciwae_bound`) with K = num_samples: beta (traced, so a sweep
    vmaps over it; it follows objective.beta_schedule) weighs the ELBO, 1 - beta the IWAE."""

    scalars = ("beta",)
    num_samples: int = 64
    gradient_estimator: str = "reparam"

    def __call__(self, key, x_BxD, model, params, *, condition=None, beta):
        value, aux = mean_over_examples(bounds.ciwae_bound, key, x_BxD, _functions(model, params),
                                        condition, beta=beta, num_samples=self.num_samples,
                                        gradient_estimator=self.gradient_estimator)
        return -value, {**_weight_metrics(aux), "iwae": aux["iwae"]}


@OBJECTIVES.register("piwae")
@dataclasses.dataclass(frozen=True)
class PIWAE(_WithGradientEstimator):
    """Partially importance-weighted (Rainforth et al. 2018): in one optimizer step the decoder
    and prior (theta) ascend IWAE with M*K samples and the encoder (phi) ascends MIWAE(M, K).

    Generic over models: the two terms are evaluated on the same draws, one with the
    parameters of p stopped and one with those of q stopped (`jax.lax.stop_gradient` on the
    whole parameter tree), so each parameter gets the gradient of its own objective; a
    parameter shared by q and p gets both. Costs about two IWAE(M*K) steps. The loss reported
    is minus the IWAE(M*K) bound; metrics add "miwae".
    """

    scalars = ()
    num_groups: int = 8
    num_samples: int = 8
    gradient_estimator: str = "reparam"  # for the encoder's MIWAE gradient

    def __call__(self, key, x_BxD, model, params, *, condition=None):
        free, fixed = _functions(model, params), _functions(model, jax.lax.stop_gradient(params))

        def encoder_learns(c):  # q's parameters free, p's stopped
            return (free(c)[0], *fixed(c)[1:])

        def decoder_learns(c):  # p's parameters free, q's stopped
            return (fixed(c)[0], *free(c)[1:])

        miwae, _ = mean_over_examples(bounds.miwae_bound, key, x_BxD, encoder_learns, condition,
                                      num_groups=self.num_groups, num_samples=self.num_samples,
                                      gradient_estimator=self.gradient_estimator)
        iwae, aux = mean_over_examples(bounds.iwae_bound, key, x_BxD, decoder_learns, condition,
                                       num_samples=self.num_groups * self.num_samples)
        value = bounds.with_gradient_of(iwae, miwae + iwae)
        return -value, {**_weight_metrics(aux), "miwae": jax.lax.stop_gradient(miwae)}


@OBJECTIVES.register("rws")
@dataclasses.dataclass(frozen=True)
class RWS:
    """Reweighted wake-sleep (Bornschein & Bengio 2015) with K = num_samples
    (`wake_sleep.reweighted_wake_sleep`): wake-theta for p, wake-phi for q; no gradient
    through the draws, so q may be discrete. The loss reported is minus the IWAE(K) bound."""

    scalars = ()
    num_samples: int = 5

    def __call__(self, key, x_BxD, model, params, *, condition=None):
        value, aux = mean_over_examples(wake_sleep.reweighted_wake_sleep, key, x_BxD,
                                        _functions(model, params), condition,
                                        num_samples=self.num_samples)
        return -value, _weight_metrics(aux)


OBJECTIVES.register("tcvae")(tcvae.TCVAE)  # beta-TCVAE, batch-level: see vaejax/objectives/tcvae.py
# DIP-VAE-I/II and AnnealedVAE, as disentanglement_lib defines them: vaejax/objectives/disentangling.py
OBJECTIVES.register("dip_vae")(disentangling.DIPVAE)
OBJECTIVES.register("annealed_vae")(disentangling.AnnealedVAE)
OBJECTIVES.register("factor_vae")(disentangling.FactorVAE)
