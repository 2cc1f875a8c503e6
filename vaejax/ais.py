"""Annealed importance sampling (AIS) with HMC transitions, and bidirectional Monte Carlo.

    log_px = vaejax.ais_log_prob(key, x, decode, prior=prior, num_steps=1000, num_chains=16,
                                 initial=q)          # q = q(z|x): the usual start
    lower, upper = vaejax.bdmc(key, decode, prior=prior, num_steps=1000, num_chains=16)[1:]

AIS (Neal 2001; for decoder-based models Wu et al. 2017) anneals from `initial` (default: the
prior) to the posterior p(z|x) ∝ p(x|z) p(z) through the geometric path

    log f_t(z) = log initial(z) + β_t [log p(x|z) + log p(z) − log initial(z)],   0 = β_0 < … < β_T = 1,

with HMC transitions leaving each f_t invariant. Each chain's weight is
log w = Σ_t (β_t − β_{t−1}) g(z_{t−1}), g = log p(x|z) + log p(z) − log initial(z); E[w] = p(x),
so log-mean-exp over chains is a stochastic lower bound on log p(x) (in expectation), tighter as
the steps grow. BDMC (Grosse et al. 2015) runs the same path backwards from an exact posterior
sample, which only data simulated from the model provides: its weights estimate 1/p(x), an
upper bound. The two bracket log p(x), and their gap bounds the error of both.

The HMC kernel is blackjax's (`blackjax.mcmc.hmc.build_kernel`): its leapfrog integrator,
metric and Metropolis correction, for latents that are arrays or pytrees. AIS needs what
blackjax's samplers do not give, a target that changes at every step, so the kernel is called
with each step's log-density inside one `lax.scan`. The step size is adapted during annealing
as Wu et al.'s code does: multiplied by 1.02 after a step whose acceptance rate (the mean over
chains) was above `target_accept`, divided by 1.02 otherwise. The reverse chain of BDMC replays
the forward chain's step sizes in reverse order, so its transitions do not depend on its own
states. Everything is in nats, per example; keys are split explicitly and the result is a pure
function of them.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

SCHEDULES = ("sigmoid", "linear")
ADAPT_FACTOR = 1.02


def annealing_schedule(num_steps: int, kind: str = "sigmoid", sharpness: float = 4.0) -> jax.Array:
    """β_0 = 0 < … < β_T = 1, shape (num_steps + 1,). "sigmoid" (Grosse et al. 2015): a
    logistic of sharpness δ over [−δ, δ], rescaled to [0, 1], denser near both ends;
    "linear": evenly spaced."""
    if num_steps < 1:
        raise ValueError(f"num_steps={num_steps} must be >= 1")
    t = jnp.linspace(0.0, 1.0, num_steps + 1)
    if kind == "linear":
        return t
    if kind != "sigmoid":
        raise ValueError(f"Unknown annealing schedule {kind!r}; choose one of {SCHEDULES}.")
    s = jax.nn.sigmoid(sharpness * (2.0 * t - 1.0))
    return (s - s[0]) / (s[-1] - s[0])


def _anneal(key, z0, betas, log_initial, log_target, step_sizes, *, num_leapfrog,
            target_accept, adapt):
    """Runs the chains `z0` (a pytree with a leading chain axis) along `betas`. `step_sizes`
    (len(betas) − 1,) is where each step starts: with `adapt`, only its first entry is used
    and the rest follow the acceptance rate. Returns (final z, log weights (chains,),
    step sizes used (len(betas) − 1,), acceptance rates (len(betas) − 1,))."""
    # blackjax initialises JAX's backend when imported: only here, so that `import vaejax`
    # leaves it to jax.distributed.initialize in multi-process runs
    from blackjax.mcmc import hmc  # noqa: PLC0415

    num_chains = jax.tree.leaves(z0)[0].shape[0]
    dim = ravel_pytree(jax.tree.map(lambda leaf: leaf[0], z0))[0].shape[0]
    inverse_mass_matrix = jnp.ones(dim)
    kernel = hmc.build_kernel()

    def gap(z):  # g(z) = log p(x|z) + log p(z) − log initial(z), per chain
        return log_target(z) - log_initial(z)

    def step(carry, inputs):
        z, log_w, step_size = carry
        beta_prev, beta, given_size, step_key = inputs
        step_size = step_size if adapt else given_size
        log_w = log_w + (beta - beta_prev) * jax.vmap(gap)(z)

        def logdensity(position):
            return log_initial(position) + beta * gap(position)

        def move(chain_key, position):
            state = hmc.init(position, logdensity)  # the cached density is of this step's f_t
            new, info = kernel(chain_key, state, logdensity, step_size, inverse_mass_matrix,
                               num_leapfrog)
            return new.position, info.acceptance_rate

        z, accept = jax.vmap(move)(jax.random.split(step_key, num_chains), z)
        accept = jnp.mean(accept)
        next_size = jnp.where(accept > target_accept, step_size * ADAPT_FACTOR,
                              step_size / ADAPT_FACTOR)
        return (z, log_w, next_size), (step_size, accept)

    num = betas.shape[0] - 1
    inputs = (betas[:-1], betas[1:], step_sizes, jax.random.split(key, num))
    (z, log_w, _), (used, accept) = jax.lax.scan(
        step, (z0, jnp.zeros(num_chains), step_sizes[0]), inputs)
    return z, log_w, used, accept


def _log_mean_exp(log_w):
    return jax.nn.logsumexp(log_w) - math.log(log_w.shape[0])


def ais_log_prob(key, x, decode: Callable, *, prior, num_steps: int, num_chains: int,
                 initial=None, schedule: str = "sigmoid", step_size: float = 0.05,
                 num_leapfrog: int = 10, target_accept: float = 0.65,
                 return_log_weights: bool = False):
    """AIS estimate of log p(x) for ONE example x, in nats: log-mean-exp over `num_chains`
    chains of their log weights; E[exp(.)] = p(x), so it is a stochastic lower bound.

    Args:
        key: PRNG key, consumed here.
        x: one example, any shape.
        decode: z -> p(x|z), a distribution with `log_prob(x)` (a scalar: the whole example).
        prior: p(z), a distribution with `log_prob` and `sample`.
        num_steps: T, the intermediate distributions (HMC transitions per chain).
        num_chains: independent chains averaged.
        initial: the distribution to anneal from (`log_prob`, `sample`); default the prior.
            q(z|x) from the encoder is the usual choice: the same bound, fewer steps.
        schedule: the β path, "sigmoid" or "linear" (`annealing_schedule`).
        step_size: HMC's first step size; adapted towards `target_accept` at every step.
        num_leapfrog: leapfrog steps per HMC transition.
        return_log_weights: also return the chains' log weights, shape (num_chains,).

    Returns:
        The estimate (a scalar), or (estimate, log weights) with `return_log_weights`.
    """
    initial = prior if initial is None else initial
    init_key, run_key = jax.random.split(key)
    z0 = _sample(initial, init_key, num_chains)
    betas = annealing_schedule(num_steps, schedule)
    _, log_w, _, _ = _anneal(
        run_key, z0, betas, initial.log_prob, _log_target(x, decode, prior),
        jnp.full(num_steps, step_size), num_leapfrog=num_leapfrog,
        target_accept=target_accept, adapt=True)
    estimate = _log_mean_exp(log_w)
    return (estimate, log_w) if return_log_weights else estimate


def batch_ais_log_prob(key, x_batch, decode: Callable, *, prior, num_steps: int,
                       num_chains: int, encode: Callable | None = None, **kwargs):
    """`ais_log_prob` of each example of `x_batch` (B, ...), one key each: shape (B,). With
    `encode` (x -> q(z|x)), each example anneals from its own q(z|x); else from the prior."""
    keys = jax.random.split(key, x_batch.shape[0])

    def one(k, x):
        initial = None if encode is None else encode(x)
        return ais_log_prob(k, x, decode, prior=prior, num_steps=num_steps,
                            num_chains=num_chains, initial=initial, **kwargs)

    return jax.vmap(one)(keys, x_batch)


def bdmc(key, decode: Callable, *, prior, num_steps: int, num_chains: int,
         schedule: str = "sigmoid", step_size: float = 0.05, num_leapfrog: int = 10,
         target_accept: float = 0.65):
    """Bidirectional Monte Carlo for ONE example simulated from the model: z* ~ p(z),
    x ~ p(x|z*); forward AIS from the prior gives a lower bound on log p(x), and reverse AIS
    from z* (an exact sample of p(z|x)) an upper bound, both in nats and stochastic (they hold
    in expectation).

    Returns:
        (x, lower, upper): the simulated example and the two bounds (scalars).
    """
    z_key, x_key, forward_key, reverse_key = jax.random.split(key, 4)
    z_star = prior.sample(seed=z_key)
    x = decode(z_star).sample(seed=x_key)
    log_target = _log_target(x, decode, prior)
    betas = annealing_schedule(num_steps, schedule)
    init_key, run_key = jax.random.split(forward_key)
    z0 = _sample(prior, init_key, num_chains)
    _, log_w, used, _ = _anneal(run_key, z0, betas, prior.log_prob, log_target,
                                jnp.full(num_steps, step_size), num_leapfrog=num_leapfrog,
                                target_accept=target_accept, adapt=True)
    lower = _log_mean_exp(log_w)
    z_exact = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (num_chains,) + leaf.shape), z_star)
    _, log_w_reverse, _, _ = _anneal(reverse_key, z_exact, betas[::-1], prior.log_prob, log_target,
                                     used[::-1], num_leapfrog=num_leapfrog,
                                     target_accept=target_accept, adapt=False)
    upper = -_log_mean_exp(log_w_reverse)  # the reverse weights estimate 1/p(x)
    return x, lower, upper


def _log_target(x, decode, prior):
    return lambda z: decode(z).log_prob(x) + prior.log_prob(z)


def _sample(distribution, key, num):
    """`num` draws with a leading axis, for a distribution over an array or a pytree."""
    return distribution.sample(seed=key, sample_shape=(num,))
