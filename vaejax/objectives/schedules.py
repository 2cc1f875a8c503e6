"""KL-weight (beta) schedules: pure functions of the training step, traceable in step and beta.

`BETA_SCHEDULES` is the registry that `config.objective.beta_schedule` names. A schedule takes
the step and `beta=` (the weight at the end of its ramp, traced so sweeps can vmap it) plus its
own keyword-only settings, which the training program reads from `config.objective` by name
(`from_config`); a setting no selected schedule reads is refused (`registry.refuse_unread`).
Your own: `config.objective.beta_schedule = "my_module:my_schedule"`.
"""
import functools
import inspect
from typing import Callable, Mapping

import jax.numpy as jnp

from vaejax import registry

BETA_SCHEDULES = registry.Registry("beta schedule", "objective.beta_schedule",
                                   neutral=dict(warmup_steps=0, cycle_steps=0),
                                   supplied=("step", "beta"))


@BETA_SCHEDULES.register("constant")
def constant_beta(step, *, beta):
    """beta at every step (shaped like `step`)."""
    return jnp.zeros(jnp.shape(step), jnp.result_type(float)) + beta


@BETA_SCHEDULES.register("linear")
def linear_warmup_beta(step, *, beta, warmup_steps):
    """0 at step 0, rising linearly to beta at step warmup_steps, then beta.

    warmup_steps <= 0 means no warmup (beta from step 0).
    """
    fraction = jnp.asarray(step, jnp.result_type(float)) / jnp.maximum(warmup_steps, 1)
    fraction = jnp.where(warmup_steps > 0, jnp.clip(fraction, 0.0, 1.0), 1.0)
    return beta * fraction


@BETA_SCHEDULES.register("cyclical")
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


def beta_schedule(kind: str, *, search_path: str | None = None, **settings) -> Callable:
    """`schedule(step, beta=...) -> beta at that step` for the schedule `kind` names
    ("constant" | "linear" | "cyclical" | "module:attribute"), its settings bound.

    `settings` are the schedule's keyword arguments, e.g.
    beta_schedule("linear", warmup_steps=10_000)(step, beta=1.0); `beta` may be bound too.
    """
    fn = BETA_SCHEDULES.get(kind, search_path=search_path)
    try:
        inspect.signature(fn).bind(0, **({"beta": 0.0} | settings))
    except TypeError as error:
        raise TypeError(f"beta_schedule({kind!r}, ...): {error}; "
                        f"signature {fn.__name__}{inspect.signature(fn)}") from None
    return functools.partial(fn, **settings)


def from_config(objective_config: Mapping, *, search_path: str | None = None) -> Callable:
    """The schedule `objective_config.beta_schedule` names, with the settings it reads from
    `objective_config` (warmup_steps, cycle_steps, ...; those absent keep their defaults)."""
    kind = objective_config["beta_schedule"]
    reads = BETA_SCHEDULES.settings(kind, search_path=search_path)
    return beta_schedule(kind, search_path=search_path, **{
        k: v for k, v in dict(objective_config).items()
        if (k in reads if reads is not None else k not in ("kind", "beta_schedule", "beta"))})
