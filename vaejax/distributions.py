"""Log-densities, reparameterized samples and closed-form KLs for VAEs.

All log-densities and KLs are in nats. The Gaussian helpers work on the last axis
(the latent or feature axis) and broadcast leading axes explicitly, so they are
correct under `jax_numpy_rank_promotion="raise"`. The likelihood helpers
(`bernoulli_log_prob`, `gaussian_log_prob`) sum over ALL axes of one example and
return a scalar: vmap them for a batch.

Diagonal Gaussians are parameterized by `mean` and `logvar = log sigma^2`.

The classes at the end (`DiagGaussian`, `StandardNormal`, `Bernoulli`) wrap these functions
as distributions with distrax's interface, so that models and objectives can pass
distributions around as values; `kl_closed_form` picks the closed-form KL of a pair, and
`marginal_log_prob` gives a factorized distribution's log-densities per latent dimension.
`DiagGaussianMixture` (appended last: a mixture of diagonal Gaussians over a vector, e.g. the
VampPrior's p(z)) has no closed-form KL, so the objectives estimate its KL by Monte Carlo.
"""
import dataclasses
import functools
import math
import sys
from typing import NamedTuple

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


def kl_diag_gaussians_per_dim(mean_q, logvar_q, mean_p, logvar_p):
    """KL(N(mean_q, exp(logvar_q)) || N(mean_p, exp(logvar_p))) in nats, per dimension.

    `(..., Z) x 4 -> (..., Z)`: 0.5 * [logvar_p - logvar_q + (exp(logvar_q) + (mean_q - mean_p)^2)
    / exp(logvar_p) - 1].
    """
    mean_q, logvar_q, mean_p, logvar_p = _broadcast(mean_q, logvar_q, mean_p, logvar_p)
    variance_ratio = jnp.exp(logvar_q - logvar_p)
    mahalanobis = jnp.square(mean_q - mean_p) * jnp.exp(-logvar_p)
    return 0.5 * (variance_ratio + mahalanobis - 1.0 - (logvar_q - logvar_p))


def kl_diag_gaussians(mean_q, logvar_q, mean_p, logvar_p):
    """KL(N(mean_q, diag(exp(logvar_q))) || N(mean_p, diag(exp(logvar_p)))) in nats.

    Closed form, summed over the last axis: `(..., Z) x 4 -> (...)`; see
    `kl_diag_gaussians_per_dim`.
    """
    return jnp.sum(kl_diag_gaussians_per_dim(mean_q, logvar_q, mean_p, logvar_p), axis=-1)


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


# -- distributions as values -------------------------------------------------------------
#
# One example's distribution over z or x, with distrax's interface: `sample(seed=,
# sample_shape=)`, `sample_and_log_prob(seed=, sample_shape=)`, `log_prob(value)`, `mean()`,
# `kl_divergence(other)`. Every axis of the parameters is an event axis (there is no batch
# shape: vmap over examples), so `log_prob` of a `sample_shape + event_shape` value returns
# `sample_shape`. They are pytrees, so models may return them from jitted and vmapped code.
# The objectives accept these, distrax's and TensorFlow Probability's (JAX substrate)
# distributions alike; these keep vaejax's fast paths (closed-form KLs, the single-pass
# Bernoulli on binary data).


def _sample_shape(sample_shape) -> tuple[int, ...]:
    return (sample_shape,) if isinstance(sample_shape, int) else tuple(sample_shape)


def _event_axes(ndim: int) -> tuple[int, ...]:
    return tuple(range(-ndim, 0))


@functools.partial(jax.tree_util.register_dataclass, data_fields=["loc", "logvar"],
                   meta_fields=[])
@dataclasses.dataclass(frozen=True)
class DiagGaussian:
    """N(loc, diag(exp(logvar))) over one example: every axis is an event axis.

    For z: `loc`, `logvar` of shape (Z,); for x (a Gaussian likelihood): shaped like x, or
    a scalar `logvar` shared by every element. `mean()` returns `loc` (broadcast).
    """

    loc: jax.Array
    logvar: jax.Array

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(jnp.broadcast_shapes(jnp.shape(self.loc), jnp.shape(self.logvar)))

    def mean(self):
        return jnp.broadcast_to(self.loc, self.event_shape)

    def variance(self):
        return jnp.broadcast_to(jnp.exp(self.logvar), self.event_shape)

    def sample(self, *, seed, sample_shape=()):
        """Reparameterized: loc + exp(logvar / 2) * eps; `sample_shape + event_shape`."""
        return diag_gaussian_sample(seed, self.loc, self.logvar, _sample_shape(sample_shape))

    def log_prob(self, value):
        """Nats, summed over the event axes: `sample_shape + event_shape -> sample_shape`."""
        ndim = len(self.event_shape)
        if ndim == 1:  # a latent: the formula of `diag_gaussian_log_prob`
            return diag_gaussian_log_prob(value, self.loc, self.logvar)
        value, mean, logvar = _broadcast(value, self.loc, self.logvar)
        return -0.5 * jnp.sum(LOG_2PI + logvar + jnp.square(value - mean) * jnp.exp(-logvar),
                              axis=_event_axes(ndim))

    def sample_and_log_prob(self, *, seed, sample_shape=()):
        z = self.sample(seed=seed, sample_shape=sample_shape)
        return z, self.log_prob(z)

    def kl_divergence(self, other):
        kl = kl_closed_form(self, other)
        if kl is None:
            raise NotImplementedError(
                f"no closed-form KL between {type(self).__name__} and {type(other).__name__}")
        return jnp.sum(kl.per_dim) if kl.per_dim is not None else kl.total


@functools.partial(jax.tree_util.register_dataclass, data_fields=[],
                   meta_fields=["event_shape"])
@dataclasses.dataclass(frozen=True)
class StandardNormal:
    """N(0, I) over `event_shape` (one latent, e.g. (Z,)): the default prior p(z)."""

    event_shape: tuple[int, ...]

    def mean(self):
        return jnp.zeros(self.event_shape)

    def sample(self, *, seed, sample_shape=()):
        return jax.random.normal(seed, _sample_shape(sample_shape) + tuple(self.event_shape))

    def log_prob(self, value):
        """Nats, summed over the event axes: `sample_shape + event_shape -> sample_shape`."""
        if len(self.event_shape) == 1:
            return standard_normal_log_prob(value)
        value = jnp.asarray(value, _float_dtype(value))
        return -0.5 * jnp.sum(LOG_2PI + jnp.square(value), axis=_event_axes(len(self.event_shape)))

    def sample_and_log_prob(self, *, seed, sample_shape=()):
        z = self.sample(seed=seed, sample_shape=sample_shape)
        return z, self.log_prob(z)


@functools.partial(jax.tree_util.register_dataclass, data_fields=["logits"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class Bernoulli:
    """Independent Bernoulli(sigmoid(logits)) pixels of one example: every axis is an event axis.

    `log_prob(x)` accepts soft x in [0, 1] (then minus the cross-entropy), as
    `bernoulli_log_prob`; `log_prob_binary(x)` is the single-pass form for x in {0, 1}.
    """

    logits: jax.Array

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(jnp.shape(self.logits))

    def mean(self):
        return jax.nn.sigmoid(self.logits)

    def log_prob(self, value):
        """Nats, summed over the event axes: `sample_shape + event_shape -> sample_shape`
        (for one x shaped like the logits, exactly `bernoulli_log_prob(value, logits)`)."""
        if jnp.shape(value) == self.event_shape:
            return bernoulli_log_prob(value, self.logits)
        value = jnp.asarray(value, self.logits.dtype)
        logits = jnp.broadcast_to(self.logits, value.shape)
        return jnp.sum(value * logits - jax.nn.softplus(logits), axis=_event_axes(len(self.event_shape)))

    def log_prob_binary(self, value):
        """`log_prob` for value in {0, 1} only, in one pass: `bernoulli_log_prob_binary`."""
        return bernoulli_log_prob_binary(value, self.logits)

    def sample(self, *, seed, sample_shape=()):
        shape = _sample_shape(sample_shape) + self.event_shape
        probs = jnp.broadcast_to(jax.nn.sigmoid(self.logits), shape)
        return jax.random.bernoulli(seed, probs, shape).astype(jnp.float32)

    def sample_and_log_prob(self, *, seed, sample_shape=()):
        x = self.sample(seed=seed, sample_shape=sample_shape)
        return x, self.log_prob(x)


def is_distribution(value) -> bool:
    """True for anything with distrax's `log_prob` (vaejax's, distrax's, TFP-on-JAX's)."""
    return hasattr(value, "log_prob") and callable(value.log_prob)


def sample_and_log_prob(dist, key, sample_shape):
    """`dist.sample_and_log_prob`, or TFP's `experimental_sample_and_log_prob`."""
    if hasattr(dist, "sample_and_log_prob"):
        return dist.sample_and_log_prob(seed=key, sample_shape=sample_shape)
    if hasattr(dist, "experimental_sample_and_log_prob"):
        return dist.experimental_sample_and_log_prob(seed=key, sample_shape=sample_shape)
    z = dist.sample(seed=key, sample_shape=sample_shape)
    return z, dist.log_prob(z)


def _diag_normal_parameters(dist):
    """(loc, scale) of a distrax or TFP-on-JAX diagonal normal over (Z,), or None.

    Looks the libraries up in `sys.modules`: a distribution of theirs means they are
    imported, and vaejax does not import them itself.
    """
    libraries = (sys.modules.get("distrax"),
                 sys.modules.get("tensorflow_probability.substrates.jax.distributions"))
    for lib in filter(None, libraries):
        if isinstance(dist, lib.MultivariateNormalDiag):
            return dist.mean(), dist.stddev()
        inner = dist
        if isinstance(dist, lib.Independent) and dist.reinterpreted_batch_ndims == 1:
            inner = dist.distribution
        if isinstance(inner, lib.Normal) and len(inner.batch_shape) == 1:
            return inner.loc, inner.scale
    return None


def marginal_log_prob(dist, value):
    """Per-dimension log-densities log q(z_d) of a factorized distribution over z, in nats.

    `(..., Z) -> (..., Z)`: the value's leading axes are sample axes, and the sum over the
    last axis is the joint log q(z). Needs a diagonal Gaussian over a vector (Z,):
    vaejax's `DiagGaussian` and `StandardNormal`; distrax's or TFP-on-JAX's
    `MultivariateNormalDiag`, `Independent(Normal, 1)` and `Normal` with batch shape (Z,).
    beta-TCVAE's per-dimension marginals q(z_d) need it.
    """
    if isinstance(dist, StandardNormal) and len(dist.event_shape) == 1:
        value = jnp.asarray(value, _float_dtype(value))
        return -0.5 * (LOG_2PI + jnp.square(value))
    if isinstance(dist, DiagGaussian) and len(dist.event_shape) == 1:
        value, loc, logvar = _broadcast(value, dist.loc, dist.logvar)
        return -0.5 * (LOG_2PI + logvar + jnp.square(value - loc) * jnp.exp(-logvar))
    parameters = _diag_normal_parameters(dist)
    if parameters is None:
        raise ValueError(
                f"per-dimension log-densities need a factorized (diagonal Gaussian) distribution over "
                f"a vector z, got {type(dist).__name__} with event shape "
                f"{tuple(getattr(dist, 'event_shape', ()))}: beta-TCVAE needs a factorized (diagonal) "
                "posterior. Return (mean, logvar) or vaejax.distributions.DiagGaussian from encode, or "
                "distrax/TFP MultivariateNormalDiag or Independent(Normal)")
    value, loc, scale = _broadcast(value, *parameters)
    return -0.5 * (LOG_2PI + jnp.square((value - loc) / scale)) - jnp.log(scale)


class ClosedFormKL(NamedTuple):
    """KL(q || p) in nats: `per_dim` (Z,) where the pair factorizes per latent dimension,
    else None with `total` the scalar KL."""

    per_dim: jax.Array | None
    total: jax.Array | None = None


def kl_closed_form(q, p) -> ClosedFormKL | None:
    """The closed-form KL(q || p) of one example in nats, or None where the pair has none.

    Per dimension for a vaejax `DiagGaussian` q against `StandardNormal` (today's formula,
    `kl_to_standard_normal_per_dim`) or against a `DiagGaussian` p (a learned or fixed
    non-standard Gaussian prior, `kl_diag_gaussians_per_dim`). Otherwise whatever distrax or
    TFP registers for the pair (`q.kl_divergence(p)`), as a total. None means: estimate it
    by Monte Carlo (the objectives do, over their own draws).
    """
    if isinstance(q, DiagGaussian) and len(q.event_shape) == 1:
        if isinstance(p, StandardNormal):
            return ClosedFormKL(kl_to_standard_normal_per_dim(q.loc, q.logvar))
        if isinstance(p, DiagGaussian):
            return ClosedFormKL(kl_diag_gaussians_per_dim(q.loc, q.logvar, p.loc, p.logvar))
        return None
    if isinstance(q, (DiagGaussian, StandardNormal, Bernoulli)) or isinstance(
            p, (DiagGaussian, StandardNormal, Bernoulli)):
        return None  # a vaejax distribution against a foreign one: no registered KL
    kl_method = getattr(q, "kl_divergence", None)
    if kl_method is None:
        return None
    try:
        return ClosedFormKL(None, kl_method(p))
    except (NotImplementedError, TypeError):
        return None


@functools.partial(jax.tree_util.register_dataclass, data_fields=["logits", "loc", "logvar"],
                   meta_fields=[])
@dataclasses.dataclass(frozen=True)
class DiagGaussianMixture:
    """sum_k softmax(logits)_k N(loc_k, diag(exp(logvar_k))) over one vector (D,).

    `logits` (K,) are the unnormalized log mixture weights (zeros: uniform), `loc` (K, D)
    and `logvar` (K, D) the components' means and log-variances (`logvar` may be anything
    that broadcasts to (K, D)). The event shape is (D,). No closed-form KL with a Gaussian:
    `kl_closed_form` gives None and the ELBO estimates the KL by Monte Carlo.

    `sample` is ancestral: a component k ~ Categorical(softmax(logits)), then
    loc_k + exp(logvar_k / 2) * eps. Gradients reach the chosen component's `loc` and
    `logvar`, never `logits` (the discrete choice is not reparameterized): right for a prior,
    whose samples only draw figures, not for a posterior trained by the reparameterized ELBO.
    """

    logits: jax.Array
    loc: jax.Array
    logvar: jax.Array

    @property
    def num_components(self) -> int:
        return int(jnp.shape(self.logits)[-1])

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(jnp.broadcast_shapes(jnp.shape(self.loc), jnp.shape(self.logvar))[-1:])

    def _components(self):
        """(log weights (K,), loc (K, D), logvar (K, D)) in one float dtype."""
        log_weights = jax.nn.log_softmax(jnp.asarray(self.logits, _float_dtype(self.logits)))
        loc, logvar = _broadcast(self.loc, self.logvar)
        return log_weights, loc, logvar

    def mean(self):
        """sum_k w_k loc_k: (D,)."""
        log_weights, loc, _ = self._components()
        return jnp.einsum("k,kd->d", jnp.exp(log_weights), loc)

    def variance(self):
        """Per-dimension variance sum_k w_k (exp(logvar_k) + loc_k^2) - mean^2: (D,)."""
        log_weights, loc, logvar = self._components()
        second_moment = jnp.einsum("k,kd->d", jnp.exp(log_weights), jnp.exp(logvar) + jnp.square(loc))
        return second_moment - jnp.square(self.mean())

    def log_prob(self, value):
        """log sum_k w_k N(value; loc_k, diag(exp(logvar_k))) in nats, by logsumexp over k.

        `sample_shape + (D,) -> sample_shape`.
        """
        log_weights, loc, logvar = self._components()
        value = jnp.asarray(value, _float_dtype(value, loc))
        log_components = diag_gaussian_log_prob(value[..., None, :], loc, logvar)  # sample_shape + (K,)
        log_weights = jnp.broadcast_to(log_weights, log_components.shape)
        return jax.nn.logsumexp(log_components + log_weights, axis=-1)

    def sample(self, *, seed, sample_shape=()):
        """Ancestral draws, `sample_shape + (D,)` (see the class docstring for gradients)."""
        log_weights, loc, logvar = self._components()
        shape = _sample_shape(sample_shape)
        component_key, noise_key = jax.random.split(seed)
        k = jax.random.categorical(component_key, log_weights, shape=shape)  # sample_shape
        eps = jax.random.normal(noise_key, shape + loc.shape[-1:], loc.dtype)
        return loc[k] + jnp.exp(0.5 * logvar[k]) * eps

    def sample_and_log_prob(self, *, seed, sample_shape=()):
        z = self.sample(seed=seed, sample_shape=sample_shape)
        return z, self.log_prob(z)
