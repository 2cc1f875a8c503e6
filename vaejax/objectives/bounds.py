"""Evidence bounds for ONE example, and their batch helpers. Pure and model-agnostic.

A model is given to a bound as two functions of one example and an optional prior:

    encode(x) -> q(z|x): a distribution over z, or the pair (mean_Z, logvar_Z) of a
                 diagonal Gaussian (vaejax's `DiagGaussian`, with its closed-form KLs)
    decode(z) -> p(x|z): a distribution over x (anything with `log_prob`), or the raw output
                 of a named `likelihood` ("bernoulli": logits shaped like x; "gaussian":
                 (mean, logvar))
    prior=      p(z): a distribution over z; None is N(0, I)

"Distribution" means distrax's interface: `sample_and_log_prob(seed=, sample_shape=)`,
`log_prob(value)`; vaejax's own (`vaejax.distributions`), distrax's and TensorFlow
Probability's (JAX substrate) work unchanged. Values are in nats per example, higher is
better; use `-value` as a loss. Batch with `batch_elbo` / `batch_iwae_bound` (jax.vmap over
examples, one key per example) or with your own jax.vmap.
"""
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from vaejax import distributions

LIKELIHOODS = ("bernoulli", "gaussian")


def _gaussian_log_likelihood(x, decoder_output):
    """log N(x; mean, exp(logvar)) summed over x, for a decoder returning (mean, logvar)."""
    mean, logvar = decoder_output
    return distributions.gaussian_log_prob(x, mean, logvar)


_NAMED_LIKELIHOODS = {
    "bernoulli": distributions.bernoulli_log_prob,
    "gaussian": _gaussian_log_likelihood,
}


def log_likelihood_fn(likelihood) -> Callable:
    """Resolves `likelihood` to a function `log_likelihood(x, decoder_output) -> scalar`.

    When decode(z) returns a distribution, `dist.log_prob(x)` is used and a *named*
    likelihood is ignored; a callable is always used as given.

    Args:
        likelihood: "bernoulli" (decoder output = logits shaped like x), "gaussian"
            (decoder output = (mean, logvar), logvar a scalar or shaped like x), or a
            callable `log_likelihood(x, decoder_output) -> scalar` in nats, returned as is.
    """
    if callable(likelihood):
        return likelihood
    if likelihood not in _NAMED_LIKELIHOODS:
        raise ValueError(
                f"unknown likelihood {likelihood!r}: use one of {', '.join(map(repr, LIKELIHOODS))} "
                "or a callable log_likelihood(x, decoder_output) -> scalar")
    named = _NAMED_LIKELIHOODS[likelihood]

    def log_likelihood(x, decoder_output):
        if distributions.is_distribution(decoder_output):
            return decoder_output.log_prob(x)
        return named(x, decoder_output)

    return log_likelihood


def posterior(encode, x, caller):
    """q(z|x) as a distribution: encode(x) itself, or `DiagGaussian(mean, logvar)` of a pair."""
    outputs = encode(x)
    if distributions.is_distribution(outputs):
        return outputs
    if not isinstance(outputs, (tuple, list)) or len(outputs) != 2:
        raise ValueError(f"{caller}: encode(x) must return a distribution over z (with log_prob "
                         f"and sample_and_log_prob) or a pair (mean, logvar), got "
                         f"{type(outputs).__name__}")
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
    return distributions.DiagGaussian(mean_Z, logvar_Z)


def default_prior(prior, q):
    """p(z): `prior`, or N(0, I) over q's event shape when None."""
    if prior is None:
        return distributions.StandardNormal(tuple(q.event_shape))
    if not distributions.is_distribution(prior):
        raise ValueError(f"prior must be a distribution over z (with log_prob), got "
                         f"{type(prior).__name__}; pass prior=None for N(0, I)")
    return prior


def check_num_samples(num_samples, name="num_samples"):
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(f"{name} must be a Python int >= 1 (it fixes shapes), got {num_samples!r}")


def check_scalar(value, name):
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


def log_likelihoods(x, z_S, decode, log_likelihood):
    """log p(x|z_s) for each of S latents: `(S, ...) -> (S,)`, decoding with jax.vmap."""
    if jax.tree.leaves(z_S)[0].shape[0] == 1:  # a length-1 vmap costs ~10% of a CPU train step
        return log_likelihood(x, decode(jax.tree.map(lambda z: z[0], z_S)))[None]
    return jax.vmap(lambda z: log_likelihood(x, decode(z)))(z_S)


GRADIENT_ESTIMATORS = ("reparam", "stl", "dreg")


def _check_estimator(gradient_estimator, caller):
    if gradient_estimator not in GRADIENT_ESTIMATORS:
        raise ValueError(f"{caller}: gradient_estimator must be one of "
                         f"{', '.join(map(repr, GRADIENT_ESTIMATORS))}, got {gradient_estimator!r}")


def stop_gradient_parameters(dist, caller="stl/dreg"):
    """`dist` with `jax.lax.stop_gradient` on every parameter: the same density, but no
    gradient reaches the parameters through `log_prob` (only through its argument).

    Works for any distribution that is a pytree of its parameters (vaejax's, distrax's and
    TFP-on-JAX's are).
    """
    leaves = jax.tree.leaves(dist)
    if len(leaves) == 1 and leaves[0] is dist:
        raise ValueError(f"{caller} needs a posterior that is a JAX pytree of its parameters (as "
                         f"vaejax, distrax and TFP distributions are), got {type(dist).__name__}; "
                         "register it with jax.tree_util, or use gradient_estimator='reparam'")
    return jax.tree.map(jax.lax.stop_gradient, dist)


def with_gradient_of(value, surrogate):
    """`value` in the forward pass, the gradient of `surrogate` in the backward pass.

    value + (s - s) is value (s finite), so every estimator returns the value of the plain
    reparameterized bound for the same key (bit for bit unless XLA fuses the two programs'
    arithmetic differently).
    """
    return jax.lax.stop_gradient(value) + (surrogate - jax.lax.stop_gradient(surrogate))


def elbo(key, x, encode, decode, *, likelihood="bernoulli", beta=1.0,
         num_samples=1, analytic_kl=True, free_bits=0.0, prior=None, gradient_estimator="reparam"):
    """(beta-weighted) evidence lower bound for ONE example, in nats.

        value = E_q[log p(x|z)] - beta * KL_term,   z ~ q(z|x) reparameterized,

    with the expectation estimated by `num_samples` draws from `key` (decoded with
    jax.vmap). The KL term:
      - analytic_kl=True and the pair (q, p) has a closed form (a diagonal Gaussian q
        against N(0, I) or against a diagonal Gaussian prior, per dimension; or whatever
        distrax/TFP register for the pair): KL_term = sum_d max(KL_d, free_bits), or the
        registered total KL when free_bits=0;
      - otherwise (analytic_kl=False, or no closed form, e.g. a mixture prior or a flow
        posterior): the Monte Carlo estimate mean_s[log q(z_s|x) - log p(z_s)] over the SAME
        draws; free bits are not allowed there.
    For beta=1 and free_bits=0, value <= log p(x) in expectation.

    Free bits (Kingma et al. 2016) are applied per example: per latent dimension where the
    closed form has dimensions, and per latent variable (group) where q and p are
    hierarchical (`log_prob_parts`: one term per stochastic layer), the Monte Carlo KL of
    each layer floored at `free_bits`, as NVAE and VDVAE use them. The paper applies them to
    each group's KL averaged over the minibatch.

    Gradient estimators (the value is the same for all three, up to float rounding
    where XLA fuses the programs differently; only the gradient differs):
      - "reparam": the gradient of the value above.
      - "stl": sticking the landing (Roeder et al. 2017): the gradient of the Monte Carlo
        ELBO mean_s[log p(x|z_s) - beta (log q(z_s|x) - log p(z_s))] with q's parameters
        stopped inside log q, so the score term (zero in expectation) is dropped; the
        encoder gradient is exactly zero where q(z|x) = p(z|x) and beta = 1.
      - "dreg": for the ELBO, DReG (Tucker et al. 2019) with K = 1 is "stl".
    "stl" and "dreg" need free_bits = 0 (the floor has no Monte Carlo form).

    Args:
        key: PRNG key, consumed here.
        x: one example, any shape.
        encode: x -> q(z|x), a distribution or (mean, logvar) each (latent_dim,).
        decode: z -> p(x|z), a distribution or a decoder output (see `likelihood`).
        likelihood: "bernoulli", "gaussian" or a callable; see `log_likelihood_fn`.
        beta: KL weight, a float or a traced scalar (vmappable over a sweep).
        num_samples: Python int >= 1, the number of draws averaged.
        analytic_kl: use the closed-form KL where the pair has one.
        free_bits: floor in nats per latent dimension on the KL in the objective (per
            latent variable for a hierarchical pair); a float or traced scalar. Needs a
            per-dimension closed-form KL or a hierarchical pair unless it is 0.
        prior: p(z), a distribution; None is N(0, I).
        gradient_estimator: "reparam", "stl" or "dreg".

    Returns:
        (value, aux): value is a scalar (nats, this example, higher is better). aux:
            "reconstruction": Monte Carlo E_q[log p(x|z)], nats.
            "kl": the rate KL(q(z|x) || p(z)) in nats, without beta or free bits
                (closed form, or the Monte Carlo estimate).
            "kl_term": the KL as it enters the objective (free bits applied), before beta.
            "elbo": reconstruction - kl, the plain ELBO (beta=1, no free bits).
            "kl_per_dim": (latent_dim,) closed-form KL per dimension, where there is one.
            "kl_by_variable": {name: nats} the Monte Carlo KL per latent variable, where q and p
                are hierarchical (`log_prob_parts`, e.g. one term per stochastic layer): the
                terms log q(z_i | ...) - log p(z_i | ...) of the same draws, summing to "kl".
    """
    check_num_samples(num_samples)
    check_scalar(beta, "beta")
    check_scalar(free_bits, "free_bits")
    _check_estimator(gradient_estimator, "elbo")
    log_likelihood = log_likelihood_fn(likelihood)
    q = posterior(encode, x, "elbo")
    p = default_prior(prior, q)
    closed = distributions.kl_closed_form(q, p) if analytic_kl else None
    _check_free_bits(free_bits, closed, q, p, analytic_kl=analytic_kl,
                     gradient_estimator=gradient_estimator)

    if closed is None:
        z_S, log_q_S = distributions.sample_and_log_prob(q, key, (num_samples,))
    else:
        z_S, log_q_S = q.sample(seed=key, sample_shape=(num_samples,)), None
    reconstruction = jnp.mean(log_likelihoods(x, z_S, decode, log_likelihood))
    aux = {"reconstruction": reconstruction}
    kl_by_variable = None
    if _hierarchical(closed, q, p):  # the Monte Carlo KL split per latent variable, same draws
        q_parts, p_parts = q.log_prob_parts(z_S), p.log_prob_parts(z_S)
        kl_by_variable = {name: jnp.mean(q_parts[name] - p_parts[name]) for name in q_parts}
        aux["kl_by_variable"] = kl_by_variable
    kl, kl_term = _kl_terms(closed, p, z_S, log_q_S, free_bits, kl_by_variable)
    if closed is not None and closed.per_dim is not None:
        aux["kl_per_dim"] = closed.per_dim
    aux["kl"] = kl
    aux["kl_term"] = kl_term
    aux["elbo"] = reconstruction - kl
    value = reconstruction - beta * kl_term
    if gradient_estimator != "reparam":  # stl, and dreg (= stl for K = 1)
        q_fixed = stop_gradient_parameters(q, f"elbo(gradient_estimator={gradient_estimator!r})")
        path_kl = jnp.mean(q_fixed.log_prob(z_S) - p.log_prob(z_S))
        value = with_gradient_of(value, reconstruction - beta * path_kl)
    return value, aux


def kl_balance_coefficients(kl_by_variable_B, sizes, *, floor=0.01):
    """NVAE's KL balancing coefficients (Vahdat & Kautz 2020, appendix A; NVAE's
    `utils.kl_balancer`): one weight per latent group, with no gradient, that sets each group's
    KL term in proportion to its share of the KL per unit, so that no group is left to collapse
    while the others carry the rate.

        m_l = mean_b |KL_l,b| + floor,   c_l = (m_l / a_l) / mean_j (m_j / a_j)

    Args:
        kl_by_variable_B: {group: (B,)} each example's KL of each group, nats.
        sizes: {group: int} the group's number of latent units (a_l; NVAE's "square" weighting
            of a group's spatial size is the same count for its image latents).
        floor: added to each group's mean |KL| (NVAE's 0.01).

    Returns:
        {group: scalar} coefficients, mean 1 over the groups, stopped from the gradient.
    """
    names = list(kl_by_variable_B)
    share = jnp.stack([(jnp.mean(jnp.abs(kl_by_variable_B[n])) + floor) / sizes[n] for n in names])
    share = jax.lax.stop_gradient(share / jnp.mean(share))
    return {name: share[i] for i, name in enumerate(names)}


def _check_free_bits(free_bits, closed, q, p, *, analytic_kl, gradient_estimator) -> None:
    """Free bits need the closed-form KL per latent dimension (`closed.per_dim`) and the
    reparameterized gradient; a readable error otherwise (a traced free_bits is let through)."""
    if _is_concrete_zero(free_bits):
        return
    if _hierarchical(closed, q, p) and gradient_estimator == "reparam":
        return  # floored per latent variable (layer)
    if closed is None or closed.per_dim is None:
        if not analytic_kl:
            raise ValueError("free_bits needs the closed-form KL per dimension: pass analytic_kl=True "
                             "(or free_bits=0.0 with analytic_kl=False)")
        raise ValueError(
                f"free_bits needs the closed-form KL per latent dimension, which the pair "
                f"q={type(q).__name__}, p={type(p).__name__} does not have: pass free_bits=0.0, "
                "or use diagonal-Gaussian q and p (vaejax.DiagGaussian, StandardNormal)")
    if gradient_estimator != "reparam":
        raise ValueError(f"elbo: gradient_estimator={gradient_estimator!r} estimates the gradient of "
                         "the Monte Carlo KL, which free bits have no form for: pass free_bits=0.0 "
                         "or gradient_estimator='reparam'")


def _hierarchical(closed, q, p) -> bool:
    """A pair with no closed-form KL whose densities split per latent variable (layer)."""
    return closed is None and hasattr(q, "log_prob_parts") and hasattr(p, "log_prob_parts")


def _kl_terms(closed, p, z_S, log_q_S, free_bits, kl_by_variable=None):
    """(kl, kl_term), nats: KL(q || p) (the closed form, else the Monte Carlo mean over the
    draws z_S (S, ...) with their log q(z_S|x) `log_q_S` (S,)), and the KL as the objective
    takes it: floored at `free_bits` per dimension where the closed form has dimensions, and
    per latent variable where the pair is hierarchical (`kl_by_variable`, its Monte Carlo KL
    per variable)."""
    if closed is None:
        kl = jnp.mean(log_q_S - p.log_prob(z_S))
        if kl_by_variable is None or _is_concrete_zero(free_bits):
            return kl, kl
        return kl, sum(jnp.maximum(v, free_bits) for v in kl_by_variable.values())
    if closed.per_dim is not None:
        return jnp.sum(closed.per_dim), jnp.sum(jnp.maximum(closed.per_dim, free_bits))
    return closed.total, closed.total


class Draws(NamedTuple):
    """K draws z_k ~ q(z|x) of one example and their log densities, each log term (K,)."""

    q: object
    p: object
    z: object  # (K, ...) or a pytree of such
    log_px_z: jax.Array
    log_pz: jax.Array
    log_qz: jax.Array

    @property
    def log_w(self):
        return self.log_px_z + self.log_pz - self.log_qz


def _draws(key, x, encode, decode, log_likelihood, num_samples, prior, caller) -> Draws:
    check_num_samples(num_samples)
    q = posterior(encode, x, caller)
    p = default_prior(prior, q)
    z_K, log_qz_K = distributions.sample_and_log_prob(q, key, (num_samples,))
    log_px_z_K = log_likelihoods(x, z_K, decode, log_likelihood)
    return Draws(q, p, z_K, log_px_z_K, p.log_prob(z_K), log_qz_K)


def group_iwae(log_w_MxK):
    """mean over groups m of log (1/K) sum_k w_mk: (M, K) -> scalar."""
    return jnp.mean(jax.nn.logsumexp(log_w_MxK, axis=-1)) - math.log(log_w_MxK.shape[-1])


def _stl_log_weights(draws, caller):
    """log w_k with q's parameters stopped inside log q(z_k|x): the path derivative only."""
    q_fixed = stop_gradient_parameters(draws.q, caller)
    return draws.log_px_z + draws.log_pz - q_fixed.log_prob(draws.z)


def _dreg_log_weights(draws, x, decode, log_likelihood, num_groups, caller):
    """log w_mk, equal in value, whose reparameterized gradient carries an extra factor
    w~_mk (the weight normalized within its group) on the path through z:

        z'_mk = sg(z_mk) + sg(w~_mk) (z_mk - sg(z_mk))   (= z_mk in value),

    so d/dphi of the group's IWAE gives sum_k w~_mk^2 dlog w_mk/dz_mk dz_mk/dphi (Tucker et
    al. 2019, eq. 7) while the decoder's sum_k w~_mk dlog w_mk/dtheta is unchanged. Costs one
    more forward pass of the decoder (the weights come from the value's pass).
    """
    q_fixed = stop_gradient_parameters(draws.q, caller)
    num_draws = draws.log_w.shape[0]
    w_K = jax.lax.stop_gradient(
            jax.nn.softmax(draws.log_w.reshape(num_groups, -1), axis=-1).reshape(num_draws))

    def scale_path(z):
        z_fixed = jax.lax.stop_gradient(z)
        return z_fixed + w_K.reshape((num_draws,) + (1,) * (z.ndim - 1)) * (z - z_fixed)

    z = jax.tree.map(scale_path, draws.z)
    return log_likelihoods(x, z, decode, log_likelihood) + draws.p.log_prob(z) - q_fixed.log_prob(z)


def _estimator_log_weights(draws, x, decode, log_likelihood, num_groups, gradient_estimator, caller):
    """The log weights whose gradient is the estimator's, for groups of K = draws / num_groups."""
    caller = f"{caller}(gradient_estimator={gradient_estimator!r})"
    if gradient_estimator == "stl" or draws.log_w.shape[0] == num_groups:  # DReG with K = 1 is STL
        return _stl_log_weights(draws, caller)
    return _dreg_log_weights(draws, x, decode, log_likelihood, num_groups, caller)


def iwae_log_weights(key, x, encode, decode, *, likelihood="bernoulli", num_samples, prior=None):
    """Log importance weights log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), z_k ~ q(z|x).

    Returns `(num_samples,)` in nats for ONE example. The draws are the same as those
    of `elbo` and `iwae_bound` with the same key. Chunks of weights from independent
    keys combine into one bound: logsumexp(concatenate(chunks)) - log(total K).
    """
    return _draws(key, x, encode, decode, log_likelihood_fn(likelihood), num_samples, prior,
                  "iwae_log_weights").log_w


def weight_aux(draws, log_w_MxK):
    log_sum_w_M = jax.nn.logsumexp(log_w_MxK, axis=-1)
    return {
        "reconstruction": jnp.mean(draws.log_px_z),
        "kl": jnp.mean(draws.log_qz - draws.log_pz),
        "elbo": jnp.mean(draws.log_w),
        "ess": jnp.mean(jnp.exp(2.0 * log_sum_w_M - jax.nn.logsumexp(2.0 * log_w_MxK, axis=-1))),
    }


def miwae_bound(key, x, encode, decode, *, num_groups, num_samples, likelihood="bernoulli",
                prior=None, gradient_estimator="reparam"):
    """Multiply importance-weighted bound MIWAE(M, K) (Rainforth et al. 2018) for ONE example.

        value = (1/M) sum_m log (1/K) sum_k w_mk,   w_mk = p(x, z_mk) / q(z_mk|x),

    from M * K draws z_mk ~ q(z|x) (M = num_groups, K = num_samples per group): the mean of
    M independent K-sample IWAE bounds. MIWAE(1, K) is `iwae_bound` with K samples, and
    MIWAE(M, 1) is the M-sample Monte Carlo ELBO. The M*K draws are the same as those of
    `iwae_bound(..., num_samples=M*K)` with the same key.

    Gradient estimators (the value is the same for all three, up to float rounding; only the
    gradient differs):
      - "reparam": the reparameterized gradient of the value.
      - "stl": sticking the landing (Roeder et al. 2017): log q(z|x) with its parameters
        stopped, so only the path derivative through z reaches the encoder.
      - "dreg": doubly reparameterized (Tucker et al. 2019): encoder gradient
        (1/M) sum_m sum_k w~_mk^2 dlog w_mk/dz_mk dz_mk/dphi with w~ normalized within each
        group; the decoder's gradient is that of "reparam". Unbiased for the same
        expectation; its signal-to-noise ratio does not fall as K grows.
    "stl" and "dreg" are exactly zero for the encoder where q(z|x) = p(z|x), for any key.

    Returns:
        (value, aux): value a scalar in nats. aux, Monte Carlo averages over all M*K
        unweighted draws: "reconstruction" mean log p(x|z), "kl" mean [log q(z|x) - log p(z)],
        "elbo" mean log w, and "ess" the effective sample size (sum w)^2 / sum w^2 of each
        group, averaged over groups (in [1, K]).
    """
    return _grouped_iwae(key, x, encode, decode, num_groups, num_samples, likelihood, prior,
                         gradient_estimator, "miwae_bound")


def _grouped_iwae(key, x, encode, decode, num_groups, num_samples, likelihood, prior,
                  gradient_estimator, caller):
    """`miwae_bound`, and `iwae_bound` as its case M = 1; `caller` names it in errors."""
    check_num_samples(num_groups, "num_groups")
    check_num_samples(num_samples)
    _check_estimator(gradient_estimator, caller)
    log_likelihood = log_likelihood_fn(likelihood)
    draws = _draws(key, x, encode, decode, log_likelihood, num_groups * num_samples, prior, caller)
    log_w_MxK = draws.log_w.reshape(num_groups, num_samples)
    value = group_iwae(log_w_MxK)
    if gradient_estimator != "reparam":
        log_w = _estimator_log_weights(draws, x, decode, log_likelihood, num_groups, gradient_estimator, caller)
        value = with_gradient_of(value, group_iwae(log_w.reshape(num_groups, num_samples)))
    return value, weight_aux(draws, log_w_MxK)


def iwae_bound(key, x, encode, decode, *, likelihood="bernoulli", num_samples, prior=None,
               gradient_estimator="reparam"):
    """Importance-weighted bound (Burda et al. 2015) for ONE example, in nats.

        value = log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),   z_k ~ q(z|x), K = num_samples,

    computed with logsumexp. E[value] <= log p(x), rises with K and tends to log p(x).
    With K = 1 it equals `elbo(..., analytic_kl=False, num_samples=1)` for the same key.
    `encode`, `decode` and `prior` are as in `elbo`; `gradient_estimator` ("reparam",
    "stl", "dreg") as in `miwae_bound`, of which this is the case M = 1.

    Returns:
        (value, aux): value a scalar in nats. aux, all Monte Carlo averages over the
        K unweighted draws from q:
            "reconstruction": mean_k log p(x|z_k).
            "kl": mean_k [log q(z_k|x) - log p(z_k)].
            "elbo": mean_k log w_k, the K-sample ELBO estimate (<= value).
            "ess": effective sample size (sum w)^2 / sum w^2, in [1, K] samples.
    """
    return _grouped_iwae(key, x, encode, decode, 1, num_samples, likelihood, prior, gradient_estimator,
                         "iwae_bound")


def ciwae_bound(key, x, encode, decode, *, beta, num_samples, likelihood="bernoulli", prior=None,
                gradient_estimator="reparam"):
    """Combination IWAE bound CIWAE(beta) (Rainforth et al. 2018) for ONE example, in nats.

        value = beta * (1/K) sum_k log w_k + (1 - beta) * log (1/K) sum_k w_k,

    the convex combination of the K-sample Monte Carlo ELBO and the K-sample IWAE bound over
    the SAME K draws (beta = 1: the ELBO, `miwae_bound` with M = K, K = 1; beta = 0:
    `iwae_bound`). `beta` may be traced (vmappable). Gradient estimators as in
    `miwae_bound`; with "dreg" the ELBO term takes the "stl" gradient (DReG with one sample).

    Returns:
        (value, aux): value a scalar in nats; aux as `iwae_bound`'s, plus "iwae" the
        K-sample IWAE bound.
    """
    check_num_samples(num_samples)
    check_scalar(beta, "beta")
    _check_estimator(gradient_estimator, "ciwae_bound")
    log_likelihood = log_likelihood_fn(likelihood)
    draws = _draws(key, x, encode, decode, log_likelihood, num_samples, prior, "ciwae_bound")

    def combination(log_w_elbo, log_w_iwae):
        return beta * jnp.mean(log_w_elbo) + (1.0 - beta) * group_iwae(log_w_iwae[None])

    aux = weight_aux(draws, draws.log_w[None])
    aux["iwae"] = group_iwae(draws.log_w[None])
    value = combination(draws.log_w, draws.log_w)
    if gradient_estimator != "reparam":
        caller = f"ciwae_bound(gradient_estimator={gradient_estimator!r})"
        log_w_stl = _stl_log_weights(draws, caller)
        log_w_iwae = _estimator_log_weights(draws, x, decode, log_likelihood, 1, gradient_estimator,
                                            "ciwae_bound")
        value = with_gradient_of(value, combination(log_w_stl, log_w_iwae))
    return value, aux


def batch_of(objective, key, x, encode, decode, kw):
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
    shape (latent_dim,). Keyword arguments (including `prior`) go to `elbo`.
    """
    return batch_of(elbo, key, x, encode, decode, kw)


def batch_miwae_bound(key, x, encode, decode, **kw):
    """`miwae_bound` averaged over a batch `x` of shape (batch, ...), one key per example."""
    return batch_of(miwae_bound, key, x, encode, decode, kw)


def batch_ciwae_bound(key, x, encode, decode, **kw):
    """`ciwae_bound` averaged over a batch `x` of shape (batch, ...), one key per example."""
    return batch_of(ciwae_bound, key, x, encode, decode, kw)


def batch_iwae_bound(key, x, encode, decode, **kw):
    """`iwae_bound` averaged over a batch `x` of shape (batch, ...), one key per example.

    Returns (mean value, aux averaged over the batch axis). Keyword arguments
    (num_samples is required) go to `iwae_bound`.
    """
    return batch_of(iwae_bound, key, x, encode, decode, kw)
