"""The inference gap and its split (Cremer, Li & Duvenaud 2018, "Inference suboptimality in
variational autoencoders"), for ONE example x, in nats:

    log p(x) − ELBO(q_φ(x)) = [log p(x) − ELBO(q*)]  +  [ELBO(q*) − ELBO(q_φ(x))]
                             =  approximation gap     +   amortization gap

q_φ(x) is the encoder's posterior; q* the best member of the same family for this x alone,
found by `optimize_local_posterior` (gradient ascent on the ELBO over the variational
parameters, started from the encoder's). log p(x) comes from AIS (`vaejax.ais_log_prob`) or
IWAE at large K, both estimates.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from vaejax.distributions import DiagGaussian
from vaejax.objectives.bounds import elbo


def diag_gaussian(params) -> DiagGaussian:
    """The default family: params = (mean, logvar), each (latent_dim,)."""
    mean, logvar = params
    return DiagGaussian(mean, logvar)


def optimize_local_posterior(key, x, decode: Callable, *, prior, init, family: Callable = diag_gaussian,
                             num_steps: int = 1000, learning_rate: float = 5e-2,
                             num_samples: int = 16, eval_samples: int = 1000):
    """q* for ONE example: maximizes the ELBO over q's parameters with Adam, the decoder and
    prior fixed.

    Args:
        key: PRNG key, consumed here.
        x: one example.
        decode: z -> p(x|z), a distribution (or a decoder output `vaejax.elbo` takes).
        prior: p(z), a distribution.
        init: q's starting parameters, a pytree (for the default family, the encoder's
            (mean, logvar) at x).
        family: parameters -> a distribution over z (`log_prob`, `sample`).
        num_steps: Adam steps, each on a fresh `num_samples`-draw ELBO estimate, the rate
            decayed from `learning_rate` to 1% of it by a cosine.
        eval_samples: draws of the returned ELBO(q*) estimate.

    Returns:
        (params of q*, ELBO(q*) in nats, estimated with `eval_samples` draws).
    """
    # a cosine decay to 1% of the rate: the last steps average out the ELBO estimates' noise
    optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, num_steps, alpha=0.01))
    train_key, eval_key = jax.random.split(key)

    def negative_elbo(params, step_key):
        value, _ = elbo(step_key, x, lambda _: family(params), decode, prior=prior,
                        num_samples=num_samples)
        return -value

    def step(carry, step_key):
        params, state = carry
        loss, grads = jax.value_and_grad(negative_elbo)(params, step_key)
        updates, state = optimizer.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), loss

    (params, _), _ = jax.lax.scan(step, (init, optimizer.init(init)),
                                  jax.random.split(train_key, num_steps))
    value, _ = elbo(eval_key, x, lambda _: family(params), decode, prior=prior,
                    num_samples=eval_samples)
    return params, value


def split_gap(log_px, elbo_amortized, elbo_local) -> dict:
    """{"inference", "approximation", "amortization"} gaps in nats from log p(x), the
    encoder's ELBO and the local optimum's ELBO (scalars or arrays of examples alike)."""
    return {"inference": log_px - elbo_amortized, "approximation": log_px - elbo_local,
            "amortization": elbo_local - elbo_amortized}
