"""`vaejax.objectives.schedules`: KL-weight schedules at chosen steps, traced and vmapped."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaejax import objectives


def test_schedules_values_at_chosen_steps():
    steps = jnp.array([0, 50, 100, 150, 1000])
    np.testing.assert_allclose(objectives.constant_beta(steps, beta=0.5), 0.5 * jnp.ones(5))
    np.testing.assert_allclose(objectives.linear_warmup_beta(steps, beta=2.0, warmup_steps=100),
                               [0.0, 1.0, 2.0, 2.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(objectives.linear_warmup_beta(steps, beta=2.0, warmup_steps=0), 2.0 * jnp.ones(5))
    # cycle 100, ramp over the first 40 steps of each cycle
    steps = jnp.array([0, 10, 20, 40, 99, 100, 120, 150, 1020])
    np.testing.assert_allclose(
            objectives.cyclical_beta(steps, beta=1.0, cycle_steps=100, ramp_fraction=0.4),
            [0.0, 0.25, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0, 0.5], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(objectives.cyclical_beta(25, beta=4.0, cycle_steps=100), 2.0, rtol=1e-6)


def test_schedules_trace_under_jit_and_vmap():
    for kind, kwargs in (("constant", {}), ("linear", {"warmup_steps": 100}),
                         ("cyclical", {"cycle_steps": 100, "ramp_fraction": 0.5})):
        schedule = objectives.beta_schedule(kind, beta=3.0, **kwargs)
        traced = jax.jit(lambda step, beta: objectives.beta_schedule(kind, beta=beta, **kwargs)(step))
        for step in (0, 30, 60, 130):
            np.testing.assert_allclose(traced(jnp.int32(step), jnp.float32(3.0)), schedule(step), rtol=1e-6,
                                       err_msg=f"{kind} step {step}")
        over_steps = jax.vmap(schedule)(jnp.arange(200))
        chex.assert_shape(over_steps, (200,))
        assert jnp.all(over_steps >= 0.0) and jnp.all(over_steps <= 3.0)
    np.testing.assert_allclose(jax.jit(objectives.linear_warmup_beta, static_argnames="warmup_steps")(
            jnp.int32(30), beta=jnp.float32(3.0), warmup_steps=60), 1.5, rtol=1e-6)


def test_beta_schedule_errors():
    with pytest.raises(ValueError, match=r"Unknown objective.beta_schedule 'cosine'; choose one of \['constant', 'cyclical', 'linear'\]"):
        objectives.beta_schedule("cosine", beta=1.0)
    with pytest.raises(TypeError, match="warmup_steps"):
        objectives.beta_schedule("linear", beta=1.0)


# The docs' example (docs/concepts/losses.md), which uses vaejax with someone else's encoder and decoder.
