"""Log-densities, reparameterized samples and closed-form KLs for VAEs.

All log-densities and KLs are in nats. The Gaussian helpers work on the last axis
(the latent or feature axis) and broadcast leading axes explicitly, so they are
correct under `jax_numpy_rank_promotion="raise"`. The likelihood helpers
(`bernoulli_log_prob`, `gaussian_log_prob`) sum over ALL axes of one example and
return a scalar: vmap them for a batch.

Diagonal Gaussians are parameterized by `mean` and `logvar = log sigma^2`.
"""
import math

import jax
import jax.numpy as jnp

LOG_2PI = math.log(2.0 * math.pi)


def _float_dtype(*arrays):
    """The promoted dtype of `arrays`, or the default float dtype if it is not inexact."""
    dtype = jnp.result_type(*arrays)
    if jnp.issubdtype(dtype, jnp.inexact):
        return dtype
    return jnp.result_type(float)


def _broadcast(*arrays):
    """Explicitly broadcasts `arrays` to their common shape and a common float dtype."""
    dtype = _float_dtype(*arrays)
    shape = jnp.broadcast_shapes(*(jnp.shape(a) for a in arrays))
    return tuple(jnp.broadcast_to(jnp.asarray(a, dtype), shape) for a in arrays)


def diag_gaussian_log_prob(x, mean, logvar):
    """log N(x; mean, diag(exp(logvar))) in nats, summed over the last axis.

    Args:
        x, mean, logvar: arrays whose shapes broadcast to `(..., Z)`; e.g. `x_SxZ`
            against `mean_Z`, `logvar_Z`.

    Returns:
        `(...)`: -0.5 * sum_d [log(2 pi) + logvar_d + (x_d - mean_d)^2 / exp(logvar_d)].
    """
    x, mean, logvar = _broadcast(x, mean, logvar)
    return -0.5 * jnp.sum(LOG_2PI + logvar + jnp.square(x - mean) * jnp.exp(-logvar), axis=-1)


def standard_normal_log_prob(z):
    """log N(z; 0, I) in nats, summed over the last axis: `(..., Z) -> (...)`."""
    z = jnp.asarray(z, _float_dtype(z))
    return -0.5 * jnp.sum(LOG_2PI + jnp.square(z), axis=-1)


def diag_gaussian_sample(key, mean, logvar, sample_shape=()):
    """Reparameterized draw z = mean + exp(0.5 * logvar) * eps, eps ~ N(0, I).

    Differentiable in `mean` and `logvar` (dz/dmean = 1, dz/dlogvar = 0.5 * (z - mean)).

    Args:
        key: a PRNG key, consumed here.
        mean, logvar: arrays broadcasting to a common shape `(..., Z)`.
        sample_shape: leading shape of independent draws, e.g. `(num_samples,)` (an int n means `(n,)`).

    Returns:
        `sample_shape + (..., Z)`.
    """
    mean, logvar = _broadcast(mean, logvar)
    sample_shape = (sample_shape,) if isinstance(sample_shape, int) else tuple(sample_shape)
    shape = sample_shape + mean.shape
    eps = jax.random.normal(key, shape, mean.dtype)
    std = jnp.exp(0.5 * logvar)
    return jnp.broadcast_to(mean, shape) + jnp.broadcast_to(std, shape) * eps


def kl_to_standard_normal_per_dim(mean, logvar):
    """KL(N(mean, exp(logvar)) || N(0, 1)) in nats, per latent dimension.

    `(..., Z), (..., Z) -> (..., Z)`: 0.5 * (exp(logvar) + mean^2 - 1 - logvar).
    """
    mean, logvar = _broadcast(mean, logvar)
    return 0.5 * (jnp.exp(logvar) + jnp.square(mean) - 1.0 - logvar)


def kl_to_standard_normal(mean, logvar):
    """KL(N(mean, diag(exp(logvar))) || N(0, I)) in nats, summed over the latent axis.

    `(..., Z), (..., Z) -> (...)`.
    """
    return jnp.sum(kl_to_standard_normal_per_dim(mean, logvar), axis=-1)


def kl_diag_gaussians(mean_q, logvar_q, mean_p, logvar_p):
    """KL(N(mean_q, diag(exp(logvar_q))) || N(mean_p, diag(exp(logvar_p)))) in nats.

    Closed form, summed over the last axis: `(..., Z) x 4 -> (...)`,
        0.5 * sum_d [logvar_p - logvar_q + (exp(logvar_q) + (mean_q - mean_p)^2) / exp(logvar_p) - 1].
    """
    mean_q, logvar_q, mean_p, logvar_p = _broadcast(mean_q, logvar_q, mean_p, logvar_p)
    variance_ratio = jnp.exp(logvar_q - logvar_p)
    mahalanobis = jnp.square(mean_q - mean_p) * jnp.exp(-logvar_p)
    return 0.5 * jnp.sum(variance_ratio + mahalanobis - 1.0 - (logvar_q - logvar_p), axis=-1)


def _check_same_shape(x, other, what):
    if jnp.shape(x) != jnp.shape(other):
        raise ValueError(
                f"{what} has shape {jnp.shape(other)} but x has shape {jnp.shape(x)}; "
                "they must match (one example; vmap over a batch).")


def bernoulli_log_prob(x, logits):
    """log prod_i Bern(x_i; sigmoid(logits_i)) in nats, summed over ALL axes -> scalar.

    Computed stably as sum(x * logits - softplus(logits)), i.e. minus the sigmoid
    cross-entropy; finite and exact for |logits| >= 100. `x` may be binary or soft
    (in [0, 1]), in which case this is the negative cross-entropy.

    Args:
        x: targets, any shape (one example), e.g. `(28, 28, 1)`.
        logits: decoder logits, same shape as `x`.
    """
    _check_same_shape(x, logits, "logits")
    logits = jnp.asarray(logits, _float_dtype(logits))
    x = jnp.asarray(x, logits.dtype)
    return jnp.sum(x * logits - jax.nn.softplus(logits))


def bernoulli_log_prob_binary(x, logits):
    """`bernoulli_log_prob` for x in {0, 1} only: sum(log sigmoid((2x - 1) * logits)).

    Equal to `bernoulli_log_prob` on binary x, and a single pass over the logits: XLA turns
    the `sum(x * logits)` of the general form into a separate matrix-vector product when x is
    broadcast over many samples (IWAE evaluation), which makes that ~35% slower on CPU.
    Wrong for soft x in (0, 1): use `bernoulli_log_prob` there.
    """
    _check_same_shape(x, logits, "logits")
    logits = jnp.asarray(logits, _float_dtype(logits))
    sign = 2.0 * jnp.asarray(x, logits.dtype) - 1.0
    return jnp.sum(jax.nn.log_sigmoid(sign * logits))


def gaussian_log_prob(x, mean, logvar):
    """log N(x; mean, diag(exp(logvar))) in nats, summed over ALL axes -> scalar.

    Args:
        x: observation, any shape (one example).
        mean: same shape as `x`.
        logvar: a scalar (a fixed or learned shared variance, counted once per
            element of `x`) or an array shaped like `x` (per-element variances).
    """
    _check_same_shape(x, mean, "mean")
    if jnp.ndim(logvar) != 0:
        _check_same_shape(x, logvar, "logvar")
    x, mean, logvar = _broadcast(x, mean, logvar)
    return -0.5 * jnp.sum(LOG_2PI + logvar + jnp.square(x - mean) * jnp.exp(-logvar))
