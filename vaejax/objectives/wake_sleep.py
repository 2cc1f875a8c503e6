"""Reweighted wake-sleep (Bornschein & Bengio 2015) for ONE example: a training signal for
posteriors that cannot be reparameterized (discrete latents, or any q whose samples carry
no gradient).

With K draws z_k ~ q(z|x), held fixed (no gradient flows through them), log weights
log w_k = log p(x, z_k) - log q(z_k|x) and normalized weights w~_k = w_k / sum_j w_j:

    wake-theta:  sum_k w~_k d/dtheta log p(x, z_k)   (the IWAE gradient for p, ascended)
    wake-phi:    sum_k w~_k d/dphi   log q(z_k|x)     (a self-normalized estimate of
                                                       -d/dphi KL(p(z|x) || q(z|x)), ascended)

Both updates come from one surrogate, so one `jax.grad` gives them; the value returned is
the K-sample IWAE bound. The sleep-phi phase (fitting q to dreams from p) is not included:
the paper finds wake-phi alone, with K >= 5, trains as well or better.
"""
import jax
import jax.numpy as jnp

from vaejax.objectives import bounds


def reweighted_wake_sleep(key, x, encode, decode, *, num_samples, likelihood="bernoulli", prior=None):
    """(value, aux) for ONE example: value is the K-sample IWAE bound in nats; its gradient
    is the RWS update (wake-theta for p, wake-phi for q, both to ascend).

    `encode(x)` returns q(z|x): any distribution with `sample` and `log_prob` (no
    reparameterization needed; discrete z works) or a pair (mean, logvar). `decode`,
    `likelihood` and `prior` are as in `vaejax.elbo`; K = num_samples (a Python int >= 1).

    Returns:
        (value, aux): value a scalar in nats; aux as `iwae_bound`'s ("reconstruction",
        "kl", "elbo", "ess"), Monte Carlo averages over the K draws.
    """
    bounds.check_num_samples(num_samples)
    log_likelihood = bounds.log_likelihood_fn(likelihood)
    q = bounds.posterior(encode, x, "reweighted_wake_sleep")
    p = bounds.default_prior(prior, q)
    z_K = jax.lax.stop_gradient(q.sample(seed=key, sample_shape=(num_samples,)))
    draws = bounds.Draws(q, p, z_K, bounds.log_likelihoods(x, z_K, decode, log_likelihood),
                          p.log_prob(z_K), q.log_prob(z_K))
    log_w_1xK = draws.log_w[None]
    w_K = jax.lax.stop_gradient(jax.nn.softmax(draws.log_w))
    wake = jnp.sum(w_K * (draws.log_px_z + draws.log_pz)) + jnp.sum(w_K * draws.log_qz)  # theta + phi
    value = bounds.with_gradient_of(bounds.group_iwae(log_w_1xK), wake)
    return value, jax.lax.stop_gradient(bounds.weight_aux(draws, log_w_1xK))


def batch_reweighted_wake_sleep(key, x, encode, decode, **kw):
    """`reweighted_wake_sleep` averaged over a batch `x` of shape (batch, ...), one key per example."""
    return bounds.batch_of(reweighted_wake_sleep, key, x, encode, decode, kw)


