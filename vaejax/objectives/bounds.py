"""VAE objectives for ONE example, batch helpers, and KL-weight schedules.

Everything here is pure and model-agnostic. A model is two functions:

    encode(x) -> (mean_Z, logvar_Z)    # q(z|x) = N(mean, diag(exp(logvar))), one example
    decode(z_Z) -> decoder output      # parameters of p(x|z), one latent

The prior is p(z) = N(0, I). Values are in nats per example, higher is better;
use `-value` as a loss. Batch with `batch_elbo` / `batch_iwae_bound` (jax.vmap over
examples, one key per example) or with your own jax.vmap.
"""
import functools
import inspect
import math
from typing import Callable

import jax
import jax.numpy as jnp

from vaejax import distributions

LIKELIHOODS = ("bernoulli", "gaussian")


def _gaussian_log_likelihood(x, decoder_output):
    """log N(x; mean, exp(logvar)) summed over x, for a decoder returning (mean, logvar)."""
    mean, logvar = decoder_output
    return distributions.gaussian_log_prob(x, mean, logvar)


def log_likelihood_fn(likelihood) -> Callable:
    """Resolves `likelihood` to a function `log_likelihood(x, decoder_output) -> scalar`.

    Args:
        likelihood: "bernoulli" (decoder output = logits shaped like x), "gaussian"
            (decoder output = (mean, logvar), logvar a scalar or shaped like x), or a
            callable `log_likelihood(x, decoder_output) -> scalar` in nats, returned as is.
    """
    if callable(likelihood):
        return likelihood
    if likelihood == "bernoulli":
        return distributions.bernoulli_log_prob
    if likelihood == "gaussian":
        return _gaussian_log_likelihood
    raise ValueError(
            f"unknown likelihood {likelihood!r}: use one of {', '.join(map(repr, LIKELIHOODS))} "
            "or a callable log_likelihood(x, decoder_output) -> scalar")


def _encode_one(encode, x, caller):
    """Calls encode(x) and checks it returned rank-1 (mean, logvar) of equal shape."""
    outputs = encode(x)
    if not isinstance(outputs, (tuple, list)) or len(outputs) != 2:
        raise ValueError(f"{caller}: encode(x) must return a pair (mean, logvar), got {type(outputs).__name__}")
    mean_Z, logvar_Z = (jnp.asarray(a) for a in outputs)
    if mean_Z.ndim == 2:
        batch_fn = f"batch_{caller}(key, x_batch, ...) or " if caller in ("elbo", "iwae_bound") else ""
        raise ValueError(
                f"{caller}: encode(x) returned mean of shape {mean_Z.shape} (rank 2): {caller} takes ONE "
                f"example, not a batch. Use {batch_fn}jax.vmap({caller}, ...) over the batch axis.")
    if mean_Z.ndim != 1 or logvar_Z.shape != mean_Z.shape:
        raise ValueError(
                f"{caller}: encode(x) must return mean and logvar of equal rank-1 shape (latent_dim,), "
                f"got mean {mean_Z.shape} and logvar {logvar_Z.shape}")
    return mean_Z, logvar_Z


def _check_num_samples(num_samples):
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(f"num_samples must be a Python int >= 1 (it fixes shapes), got {num_samples!r}")


def _check_scalar(value, name):
    if jnp.ndim(value) != 0:
        raise ValueError(
                f"{name} must be a scalar (got shape {jnp.shape(value)}); to sweep it, "
                f"jax.vmap over a vector of {name} values")


def _is_concrete_zero(value):
    """True if `value` is known at trace time to be 0; False if it is nonzero or traced."""
    try:
        return float(value) == 0.0
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError, TypeError):
        return False


def _log_likelihoods(x, z_SxZ, decode, log_likelihood):
    """log p(x|z_s) for each of S latents: `(S, Z) -> (S,)`, decoding with jax.vmap."""
    if z_SxZ.shape[0] == 1:  # the common case: a length-1 vmap costs ~10% of a CPU train step
        return log_likelihood(x, decode(z_SxZ[0]))[None]
    return jax.vmap(lambda z_Z: log_likelihood(x, decode(z_Z)))(z_SxZ)


def elbo(key, x, encode, decode, *, likelihood="bernoulli", beta=1.0,
         num_samples=1, analytic_kl=True, free_bits=0.0):
    """(beta-weighted) evidence lower bound for ONE example, in nats.

        value = E_q[log p(x|z)] - beta * KL_term,   z = mean + exp(logvar / 2) * eps,

    with the expectation estimated by `num_samples` reparameterized draws from `key`
    (decoded with jax.vmap). With analytic_kl=True, KL_term = sum_d max(KL_d, free_bits)
    where KL_d = KL(q(z_d|x) || N(0, 1)) is closed form; with free_bits=0 it is
    KL(q(z|x) || p(z)). With analytic_kl=False, KL_term is the Monte Carlo estimate
    mean_s[log q(z_s|x) - log p(z_s)] over the same draws (free bits not allowed).
    For beta=1 and free_bits=0, value <= log p(x) in expectation.

    Free bits (Kingma et al. 2016) are applied per example and per latent dimension;
    the paper applies them to each group's KL averaged over the minibatch.

    Args:
        key: PRNG key, consumed here.
        x: one example, any shape.
        encode: x -> (mean, logvar), each of shape (latent_dim,).
        decode: z of shape (latent_dim,) -> decoder output (see `likelihood`).
        likelihood: "bernoulli", "gaussian" or a callable; see `log_likelihood_fn`.
        beta: KL weight, a float or a traced scalar (vmappable over a sweep).
        num_samples: Python int >= 1, the number of draws averaged.
        analytic_kl: closed-form KL (True) or Monte Carlo KL (False).
        free_bits: floor in nats per latent dimension on the KL in the objective; a
            float or traced scalar. Requires analytic_kl=True unless it is 0.

    Returns:
        (value, aux): value is a scalar (nats, this example, higher is better). aux:
            "reconstruction": Monte Carlo E_q[log p(x|z)], nats.
            "kl": the rate KL(q(z|x) || p(z)) in nats, without beta or free bits
                (closed form, or the Monte Carlo estimate if analytic_kl=False).
            "kl_term": the KL as it enters the objective (free bits applied), before beta.
            "elbo": reconstruction - kl, the plain ELBO (beta=1, no free bits).
            "kl_per_dim": (latent_dim,) closed-form KL per dimension (analytic_kl only).
    """
    _check_num_samples(num_samples)
    _check_scalar(beta, "beta")
    _check_scalar(free_bits, "free_bits")
    if not analytic_kl and not _is_concrete_zero(free_bits):
        raise ValueError("free_bits needs the closed-form KL per dimension: pass analytic_kl=True "
                         "(or free_bits=0.0 with analytic_kl=False)")
    log_likelihood = log_likelihood_fn(likelihood)
    mean_Z, logvar_Z = _encode_one(encode, x, "elbo")

    z_SxZ = distributions.diag_gaussian_sample(key, mean_Z, logvar_Z, (num_samples,))
    reconstruction = jnp.mean(_log_likelihoods(x, z_SxZ, decode, log_likelihood))
    aux = {"reconstruction": reconstruction}
    if analytic_kl:
        kl_per_dim_Z = distributions.kl_to_standard_normal_per_dim(mean_Z, logvar_Z)
        kl = jnp.sum(kl_per_dim_Z)
        kl_term = jnp.sum(jnp.maximum(kl_per_dim_Z, free_bits))
        aux["kl_per_dim"] = kl_per_dim_Z
    else:
        log_q_S = distributions.diag_gaussian_log_prob(z_SxZ, mean_Z, logvar_Z)
        log_p_S = distributions.standard_normal_log_prob(z_SxZ)
        kl = jnp.mean(log_q_S - log_p_S)
        kl_term = kl
    aux["kl"] = kl
    aux["kl_term"] = kl_term
    aux["elbo"] = reconstruction - kl
    return reconstruction - beta * kl_term, aux


def _iwae_terms(key, x, encode, decode, likelihood, num_samples, caller):
    """(log p(x|z_k), log p(z_k), log q(z_k|x)), each (K,), for K draws z_k ~ q(z|x)."""
    _check_num_samples(num_samples)
    log_likelihood = log_likelihood_fn(likelihood)
    mean_Z, logvar_Z = _encode_one(encode, x, caller)
    z_KxZ = distributions.diag_gaussian_sample(key, mean_Z, logvar_Z, (num_samples,))
    log_px_z_K = _log_likelihoods(x, z_KxZ, decode, log_likelihood)
    log_pz_K = distributions.standard_normal_log_prob(z_KxZ)
    log_qz_K = distributions.diag_gaussian_log_prob(z_KxZ, mean_Z, logvar_Z)
    return log_px_z_K, log_pz_K, log_qz_K


def iwae_log_weights(key, x, encode, decode, *, likelihood="bernoulli", num_samples):
    """Log importance weights log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), z_k ~ q(z|x).

    Returns `(num_samples,)` in nats for ONE example. The draws are the same as those
    of `elbo` and `iwae_bound` with the same key. Chunks of weights from independent
    keys combine into one bound: logsumexp(concatenate(chunks)) - log(total K).
    """
    log_px_z_K, log_pz_K, log_qz_K = _iwae_terms(key, x, encode, decode, likelihood, num_samples,
                                                 "iwae_log_weights")
    return log_px_z_K + log_pz_K - log_qz_K


def iwae_bound(key, x, encode, decode, *, likelihood="bernoulli", num_samples):
    """Importance-weighted bound (Burda et al. 2015) for ONE example, in nats.

        value = log (1/K) sum_k p(x, z_k) / q(z_k|x),   z_k ~ q(z|x), K = num_samples,

    computed with logsumexp. E[value] <= log p(x), rises with K and tends to log p(x).
    With K = 1 it equals `elbo(..., analytic_kl=False, num_samples=1)` for the same key.

    Returns:
        (value, aux): value a scalar in nats. aux, all Monte Carlo averages over the
        K unweighted draws from q:
            "reconstruction": mean_k log p(x|z_k).
            "kl": mean_k [log q(z_k|x) - log p(z_k)].
            "elbo": mean_k log w_k, the K-sample ELBO estimate (<= value).
            "ess": effective sample size (sum w)^2 / sum w^2, in [1, K] samples.
    """
    log_px_z_K, log_pz_K, log_qz_K = _iwae_terms(key, x, encode, decode, likelihood, num_samples,
                                                 "iwae_bound")
    log_w_K = log_px_z_K + log_pz_K - log_qz_K
    log_sum_w = jax.nn.logsumexp(log_w_K)
    value = log_sum_w - math.log(num_samples)
    aux = {
        "reconstruction": jnp.mean(log_px_z_K),
        "kl": jnp.mean(log_qz_K - log_pz_K),
        "elbo": jnp.mean(log_w_K),
        "ess": jnp.exp(2.0 * log_sum_w - jax.nn.logsumexp(2.0 * log_w_K)),
    }
    return value, aux


def _batch(objective, key, x, encode, decode, kw):
    if jnp.ndim(x) < 1 or jnp.shape(x)[0] < 1:
        raise ValueError(
                f"batch_{objective.__name__} expects x with a leading batch axis, shape (batch, ...), "
                f"got shape {jnp.shape(x)}; for one example call {objective.__name__} directly")
    keys = jax.random.split(key, x.shape[0])  # one key per example
    values_B, aux = jax.vmap(lambda k, x_i: objective(k, x_i, encode, decode, **kw))(keys, x)
    return jnp.mean(values_B), jax.tree.map(lambda a: jnp.mean(a, axis=0), aux)


def batch_elbo(key, x, encode, decode, **kw):
    """`elbo` averaged over a batch `x` of shape (batch, ...), one key per example.

    Returns (mean value, aux averaged over the batch axis); aux["kl_per_dim"] keeps
    shape (latent_dim,). Keyword arguments go to `elbo`.
    """
    return _batch(elbo, key, x, encode, decode, kw)


def batch_iwae_bound(key, x, encode, decode, **kw):
    """`iwae_bound` averaged over a batch `x` of shape (batch, ...), one key per example.

    Returns (mean value, aux averaged over the batch axis). Keyword arguments
    (num_samples is required) go to `iwae_bound`.
    """
    return _batch(iwae_bound, key, x, encode, decode, kw)


# KL-weight schedules: pure functions of the training step, traceable in step and beta.

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
