"""KL-weight (beta) schedules: pure functions of the training step, traceable in step and beta.

`SCHEDULES` is the registry that `config.objective.beta_schedule` names. A schedule takes the
step and `beta=` (the weight at the end of its ramp, traced so sweeps can vmap it) plus its
own keyword-only settings, which the training program reads from `config.objective` by name.
"""
import functools
import inspect
from typing import Callable

import jax.numpy as jnp


def constant_beta(step, *, beta):
    """beta at every step (shaped like `step`)."""
    return jnp.zeros(jnp.shape(step), jnp.result_type(float)) + beta


def linear_warmup_beta(step, *, beta, warmup_steps):
    """0 at step 0, rising linearly to beta at step warmup_steps, then beta.

    warmup_steps <= 0 means no warmup (beta from step 0).
    """
    fraction = jnp.asarray(step, jnp.result_type(float)) / jnp.maximum(warmup_steps, 1)
    fraction = jnp.where(warmup_steps > 0, jnp.clip(fraction, 0.0, 1.0), 1.0)
    return beta * fraction


def cyclical_beta(step, *, beta, cycle_steps, ramp_fraction=0.5):
    """Cyclical annealing (Fu et al. 2019): in each cycle of cycle_steps steps, beta rises
    linearly from 0 over the first ramp_fraction of the cycle, then holds at beta.

    E.g. cycle_steps=100, ramp_fraction=0.5: 0 at steps 0, 100, 200; beta/2 at step 25;
    beta from step 50 to 99.
    """
    if isinstance(cycle_steps, (int, float)) and cycle_steps <= 0:
        raise ValueError(f"cycle_steps must be positive, got {cycle_steps}")
    position = jnp.mod(step, cycle_steps) / cycle_steps  # in [0, 1)
    position = jnp.asarray(position, jnp.result_type(float))
    ramp = jnp.where(ramp_fraction > 0,
                     jnp.clip(position / jnp.where(ramp_fraction > 0, ramp_fraction, 1.0), 0.0, 1.0),
                     1.0)
    return beta * ramp


SCHEDULES = {
    "constant": constant_beta,
    "linear": linear_warmup_beta,
    "cyclical": cyclical_beta,
}


def beta_schedule(kind: str, **kwargs) -> Callable:
    """Returns `schedule(step) -> beta` for kind "constant" | "linear" | "cyclical".

    kwargs are the keyword arguments of constant_beta, linear_warmup_beta or
    cyclical_beta, e.g. beta_schedule("linear", beta=1.0, warmup_steps=10_000).
    """
    if kind not in SCHEDULES:
        raise ValueError(f"unknown beta schedule {kind!r}: use one of {', '.join(map(repr, SCHEDULES))}")
    fn = SCHEDULES[kind]
    try:
        inspect.signature(fn).bind(0, **kwargs)
    except TypeError as error:
        raise TypeError(f"beta_schedule({kind!r}, ...): {error}; "
                        f"signature {fn.__name__}{inspect.signature(fn)}") from None
    return functools.partial(fn, **kwargs)
