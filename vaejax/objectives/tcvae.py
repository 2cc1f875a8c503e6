"""beta-TCVAE (Chen et al. 2018, "Isolating Sources of Disentanglement in Variational
Autoencoders"): the ELBO with its KL split into three terms, each with its own weight,

    value = mean_i log p(x_i|z_i) - alpha * MI - beta * TC - gamma * DimKL,   z_i ~ q(z|x_i),
    MI    = mean_i [log q(z_i|x_i) - log qhat(z_i)]              index-code mutual information
    TC    = mean_i [log qhat(z_i) - sum_d log qhat(z_id)]         total correlation
    DimKL = mean_i [sum_d log qhat(z_id) - log p(z_i)]            dimension-wise KL

on a batch x_1..x_B of a dataset of N = dataset_size examples. The terms sum to the Monte Carlo
KL mean_i [log q(z_i|x_i) - log p(z_i)] for any estimator, so alpha = beta = gamma = 1 is the ELBO.
qhat estimates the aggregate posterior q(z) = (1/N) sum_n q(z|x_n), and qhat(z_d) its marginals,
from log q(z_i|x_j) for all B x B pairs, per latent dimension: q(z|x) must factorize
(`vaejax.distributions.marginal_log_prob`). qhat(z_i) = sum_j W_ij q(z_i|x_j), the same W for
the marginals, and each row of W sums to 1:

  - "mws", minibatch weighted sampling: W_ij = 1/B. The paper (and the authors' code) uses
    1/(N B), an estimate of q(z)/N: the same gradients, but MI, TC and DimKL off by multiples
    of log N. With 1/B they tend to the true values, and are exact when the batch is the dataset.
  - "mss", minibatch stratified sampling: W_ii = 1/N and W_ij = (N - 1) / (N (B - 1)), j != i.
    z_i comes from x_i, which stands for itself; the other B - 1 examples are a uniform draw
    from the other N - 1 and stand for them equally, so qhat(z_i) is unbiased for q(z_i), rows
    sum to 1/N + (N - 1)/N = 1, and B = N is exact. The authors' code weighs one other example
    (N - B + 1) / (N (B - 1)) and the rest 1/(B - 1), not exact at B = N, and its strided
    assignment fills columns, not the diagonal (rtqichen/beta-tcvae pull request #1).

Both are biased through the log (Jensen), less as B grows: MWS gives z_i's own posterior too
much weight (1/B > 1/N) and so underestimates MI. Values are nats per example, batch means.
"""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from vaejax import distributions
from vaejax.objectives import bounds
from vaejax.objectives.common import model_functions

SAMPLINGS = ("mws", "mss")


def _check_static(dataset_size, sampling, batch_size=None):
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be 'mws' (minibatch weighted) or 'mss' (minibatch "
                         f"stratified), got {sampling!r}")
    if not isinstance(dataset_size, int) or isinstance(dataset_size, bool) or dataset_size < 1:
        raise ValueError(f"dataset_size must be a Python int, the number N of training examples "
                         f"the batches are drawn from, got {dataset_size!r}")
    if batch_size is not None and dataset_size < batch_size:
        raise ValueError(f"dataset_size={dataset_size} is smaller than the batch ({batch_size}): "
                         "pass the number of examples in the whole training set")
    if batch_size is not None and sampling == "mss" and batch_size < 2:
        raise ValueError("sampling='mss' needs a batch of at least 2 examples; use 'mws' for 1")


def _log_weights(batch_size, dataset_size, sampling):
    """log W, (B, B): W_ij is the weight of q(z_i|x_j) in qhat(z_i); every row sums to 1."""
    if sampling == "mws":
        return np.full((batch_size, batch_size), -math.log(batch_size))
    weights_BxB = np.full((batch_size, batch_size),
                          (dataset_size - 1) / (dataset_size * (batch_size - 1)))
    np.fill_diagonal(weights_BxB, 1.0 / dataset_size)
    return np.log(weights_BxB)


def batch_tcvae(key, x, encode, decode, *, dataset_size, alpha=1.0, beta=1.0, gamma=1.0,
                likelihood="bernoulli", prior=None, sampling="mws"):
    """The beta-TCVAE objective of a batch, in nats per example (see the module docstring).

    Args:
        key: PRNG key, split into one key per example (one reparameterized z each).
        x: the batch, shape (B, ...).
        encode: one x -> q(z|x), a factorized distribution or (mean, logvar) each (latent_dim,).
        decode: one z -> p(x|z), a distribution or a decoder output (see `likelihood`).
        dataset_size: N, a Python int >= B, the number of examples the batch is drawn from.
        alpha, beta, gamma: weights of MI, TC and DimKL; floats or traced scalars (vmappable).
        likelihood: "bernoulli", "gaussian" or a callable; see `bounds.log_likelihood_fn`.
        prior: p(z), a distribution; None is N(0, I).
        sampling: "mws" or "mss", the estimator of the aggregate posterior.

    Returns:
        (value, aux): value a scalar, higher is better. aux, batch means in nats per example:
            "reconstruction", "mi", "tc", "dim_kl", "kl" (the Monte Carlo KL, = mi + tc + dim_kl)
            and "elbo" (= reconstruction - kl).
    """
    if jnp.ndim(x) < 1 or jnp.shape(x)[0] < 1:
        raise ValueError(f"batch_tcvae expects x with a leading batch axis, shape (batch, ...), "
                         f"got shape {jnp.shape(x)}")
    batch_size = jnp.shape(x)[0]
    _check_static(dataset_size, sampling, batch_size)
    for weight, name in ((alpha, "alpha"), (beta, "beta"), (gamma, "gamma")):
        bounds.check_scalar(weight, name)
    log_likelihood = bounds.log_likelihood_fn(likelihood)

    def one(key, x_i):
        q = bounds.posterior(encode, x_i, "batch_tcvae")
        z = q.sample(seed=key)
        return q, z, log_likelihood(x_i, decode(z)), bounds.default_prior(prior, q).log_prob(z)

    q_B, z_BxZ, log_px_B, log_pz_B = jax.vmap(one)(jax.random.split(key, batch_size), x)
    # [i, j, d] = log q(z_id | x_j): row i is z_i under every example's posterior.
    log_q_BxBxZ = jax.vmap(lambda q: distributions.marginal_log_prob(q, z_BxZ), out_axes=1)(q_B)
    log_q_BxB = jnp.sum(log_q_BxBxZ, axis=-1)
    log_w_BxB = jnp.asarray(_log_weights(batch_size, dataset_size, sampling), log_q_BxB.dtype)
    log_qzx_B = jnp.diagonal(log_q_BxB)  # log q(z_i|x_i)
    log_qz_B = jax.nn.logsumexp(log_w_BxB + log_q_BxB, axis=1)
    log_prod_qzd_B = jnp.sum(jax.nn.logsumexp(log_w_BxB[:, :, None] + log_q_BxBxZ, axis=1), axis=-1)
    aux = {
        "reconstruction": jnp.mean(log_px_B),
        "mi": jnp.mean(log_qzx_B - log_qz_B),
        "tc": jnp.mean(log_qz_B - log_prod_qzd_B),
        "dim_kl": jnp.mean(log_prod_qzd_B - log_pz_B),
        "kl": jnp.mean(log_qzx_B - log_pz_B),
    }
    aux["elbo"] = aux["reconstruction"] - aux["kl"]
    value = aux["reconstruction"] - alpha * aux["mi"] - beta * aux["tc"] - gamma * aux["dim_kl"]
    return value, aux


@dataclasses.dataclass(frozen=True)
class TCVAE:
    """Minus `batch_tcvae` on the batch: alpha, beta, gamma (traced; 1 where a config sets none)
    weigh MI, TC and DimKL; `dataset_size` is N, the training set's size. Metrics: rate
    (= mi + tc + dim_kl, the Monte Carlo KL), distortion, mi, tc, dim_kl."""

    scalars = ("alpha", "beta", "gamma")
    dataset_size: int
    sampling: str = "mws"

    def __post_init__(self):
        _check_static(self.dataset_size, self.sampling)

    def __call__(self, key, x_BxD, model, params, *, alpha=1.0, beta=1.0, gamma=1.0):
        encode, decode, prior = model_functions(model, params)
        value, aux = batch_tcvae(key, x_BxD, encode, decode, dataset_size=self.dataset_size,
                                 alpha=alpha, beta=beta, gamma=gamma, prior=prior,
                                 sampling=self.sampling)
        return -value, {"rate": aux["kl"], "distortion": -aux["reconstruction"], "mi": aux["mi"],
                        "tc": aux["tc"], "dim_kl": aux["dim_kl"]}
