"""Training objectives: batch-level plug-ins that `config.objective.kind` names.

An objective is built once from the `config.objective` fields its signature names (ints and
flags that fix shapes and code paths are static) and called inside the jitted step:

    objective = OBJECTIVES.get(kind)(**static_fields)
    loss, metrics = objective(key, x_BxD, model, params, **scalars)

- `x_BxD`: the preprocessed batch, each example of shape `model.data_shape`.
- `model`, `params`: a model with `posterior / prior / likelihood` (see `vaejax.models`).
- `scalars`: the fields named in the objective's `scalars` class attribute (e.g. `beta`),
  as traced float32 scalars, so a sweep vmaps over them instead of recompiling. A scalar
  named `beta` follows `config.objective.beta_schedule`.
- Returns the scalar loss to minimise and a dict of scalar metrics in nats per example;
  "rate" and "distortion" are the conventional names (rate + distortion = -ELBO).

A batch-level objective (one that needs the whole batch, like beta-TCVAE's minibatch
estimators) receives the batch as it is; per-example ones vmap with `batch_elbo` & co.
Your own: `config.objective.kind = "my_module:MyObjective"`.
"""

from __future__ import annotations

import dataclasses
import functools

from vaejax import registry
from vaejax.objectives import bounds

OBJECTIVES = registry.Registry("objective", "objective.kind")


def model_functions(model, params):
    """(encode, decode, prior) of `model` at `params`, as the bounds take them."""
    return (functools.partial(model.posterior, params), functools.partial(model.likelihood, params),
            model.prior(params))


@OBJECTIVES.register("elbo")
@dataclasses.dataclass(frozen=True)
class ELBO:
    """Minus the beta-weighted ELBO (`bounds.elbo`), averaged over the batch."""

    scalars = ("beta",)
    num_samples: int = 1
    analytic_kl: bool = True
    free_bits: float = 0.0

    def __call__(self, key, x_BxD, model, params, *, beta):
        encode, decode, prior = model_functions(model, params)
        value, aux = bounds.batch_elbo(key, x_BxD, encode, decode, prior=prior, beta=beta,
                                       num_samples=self.num_samples, analytic_kl=self.analytic_kl,
                                       free_bits=self.free_bits)
        return -value, {"rate": aux["kl"], "distortion": -aux["reconstruction"]}


@OBJECTIVES.register("iwae")
@dataclasses.dataclass(frozen=True)
class IWAE:
    """Minus the K-sample importance-weighted bound (`bounds.iwae_bound`), K = num_samples.

    Metrics: rate and distortion are the unweighted Monte Carlo averages over the K draws.
    """

    scalars = ()
    num_samples: int = 1

    def __call__(self, key, x_BxD, model, params):
        encode, decode, prior = model_functions(model, params)
        value, aux = bounds.batch_iwae_bound(key, x_BxD, encode, decode, prior=prior,
                                             num_samples=self.num_samples)
        return -value, {"rate": aux["kl"], "distortion": -aux["reconstruction"]}
