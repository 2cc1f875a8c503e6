"""Pure evaluation metrics: test negative ELBO, rate, distortion, KL per latent dimension,
active units (Burda et al.'s Cov_x(E_q[z_d]) > threshold) and IWAE estimates of log p(x).
All values in nats per example. Functions of (model, params, data, key): no files, no
output; `vaejax.evaluate` runs them over a run's checkpoints and writes the results.

Each example gets its own keys, folded from the eval key and the example's index, so results
do not depend on the batch or chunk sizes used to compute them, and every metric sees the
same binarization of each image.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from vaejax import data as data_lib
from vaejax import distributions, objectives
from vaejax.program import run_keys


def binary_log_likelihood(x, p_x):
    """log p(x|z) for x in {0, 1}: Bernoulli's single-pass form where it applies (the same
    values, faster for IWAE), else `p_x.log_prob(x)`."""
    if isinstance(p_x, distributions.Bernoulli):
        return p_x.log_prob_binary(x)
    return p_x.log_prob(x)


def log_likelihood(x, p_x):
    """log p(x|z) = `p_x.log_prob(x)`, nats: any x."""
    return p_x.log_prob(x)


def likelihood_of(preprocessing):
    """log p(x|z) for inputs preprocessed by `preprocessing` (a name or the function)."""
    return binary_log_likelihood if data_lib.is_binary(preprocessing) else log_likelihood


def example_streams(key):
    """Keys for the test-time binarization and for the posterior samples."""
    binarize_key, noise_key = jax.random.split(key)
    return binarize_key, noise_key


def example_inputs(binarize_key, examples, idx_B, preprocessing, data_shape):
    """Preprocessed examples `idx_B` (B,) of `examples`, each binarized with its own key, in
    the model's input shape (B,) + data_shape (the MLP reads flat vectors), and their labels
    (B,) (None unless `examples` carries labels: a conditional model's)."""
    keys = jax.vmap(jax.random.fold_in, (None, 0))(binarize_key, idx_B)
    batch = examples.take(idx_B)
    x = jax.vmap(functools.partial(data_lib.preprocess, kind=preprocessing))(keys, batch.images)
    return x.reshape((x.shape[0],) + tuple(data_shape)), batch.labels


def _flat(tree):
    """A pytree of arrays (one latent) as one vector."""
    return jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree.leaves(tree)])


def latent_variables(model, params, data_shape, condition=None) -> dict[str, int] | None:
    """{name: size} of the latent variables of a hierarchical posterior (whose mean is a
    pytree of several arrays, e.g. {"z1": (100,), "z2": (50,)}), in `_flat`'s order; None
    for a single latent vector."""
    mean = jax.eval_shape(lambda x: objectives.model_functions(model, params, condition)[0](x).mean(),
                          jax.ShapeDtypeStruct(tuple(data_shape), jnp.float32))
    leaves = jax.tree_util.tree_leaves_with_path(mean)
    if len(leaves) < 2:
        return None
    return {jax.tree_util.keystr(path, simple=True, separator="/"): math.prod(leaf.shape)
            for path, leaf in leaves}


def elbo_metrics(model, params, data, key, *, data_shape, preprocessing, batch_size,
                 threshold=0.01):
    """ELBO-based metrics over all of `data` (`Examples`, or images (N, H, W, C) uint8), one
    posterior sample each. For a conditional model (`data` carries labels), the bounds of
    log p(x|y).

    Returns a dict of device scalars/vectors:
      neg_elbo, rate (KL), distortion (-E_q log p(x|z)): means over examples, nats;
      kl_per_dim (Z,): mean KL of each latent dimension, nats (only where q and p have a
        per-dimension closed form);
      posterior_mean_variance (Z,): Cov_x(E_q[z_d]) across examples (Burda et al. 2015);
      active_units: how many dimensions have that variance above `threshold`;
      active_units_by_variable: {name: count} for a hierarchical posterior (see
        `latent_variables`), the same count per latent variable;
      kl_by_variable: {name: nats} the rate split per latent variable, where the ELBO gives
        it (`vaejax.elbo`'s aux; a hierarchical model's layers), summing to rate.
    """
    examples = data_lib.as_examples(data)
    n = examples.num_examples
    idx, mask = data_lib.padded_batch_indices(n, min(batch_size, n))
    binarize_key, noise_key = example_streams(key)

    def per_example(i, x, condition):
        encode, decode, prior = objectives.model_functions(model, params, condition)
        value, aux = objectives.elbo(jax.random.fold_in(noise_key, i), x, encode, decode,
                                     likelihood=likelihood_of(preprocessing), prior=prior)
        mean = _flat(encode(x).mean())
        parts = {"value": value, "kl": aux["kl"], "rec": aux["reconstruction"], "mean": mean,
                 "mean2": mean**2}
        if "kl_per_dim" in aux:
            parts["kl_per_dim"] = aux["kl_per_dim"]
        for name, kl in aux.get("kl_by_variable", {}).items():
            parts[f"kl_by_variable/{name}"] = kl
        return parts

    def body(carry, batch):
        idx_B, mask_B = batch
        x, condition = example_inputs(binarize_key, examples, idx_B, preprocessing, data_shape)
        parts = jax.vmap(per_example)(idx_B, x, condition)
        w = mask_B.astype(jnp.float32)
        sums = {k: jnp.sum(w.reshape(w.shape + (1,) * (v.ndim - 1)) * v, 0) for k, v in parts.items()}
        return jax.tree.map(jnp.add, carry, sums), None

    condition = None if examples.labels is None else examples.labels[0]
    shapes = jax.eval_shape(per_example, 0, jax.ShapeDtypeStruct(tuple(data_shape), jnp.float32),
                            condition)
    init = jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), shapes)
    sums, _ = jax.lax.scan(body, init, (idx, mask))
    variance = sums["mean2"] / n - (sums["mean"] / n) ** 2
    out = {
        "neg_elbo": -sums["value"] / n,
        "rate": sums["kl"] / n,
        "distortion": -sums["rec"] / n,
        "posterior_mean_variance": variance,
        "active_units": jnp.sum(variance > threshold),
    }
    if "kl_per_dim" in sums:
        out["kl_per_dim"] = sums["kl_per_dim"] / n
    by_variable = {k.split("/", 1)[1]: v / n for k, v in sums.items() if k.startswith("kl_by_variable/")}
    if by_variable:
        out["kl_by_variable"] = by_variable
    variables = latent_variables(model, params, data_shape, condition)
    if variables is not None:
        active, start = {}, 0
        for name, size in variables.items():
            active[name] = jnp.sum(variance[start:start + size] > threshold)
            start += size
        out["active_units_by_variable"] = active
    return out


def iwae_batch_log_px(model, params, key, data, idx_B, *, data_shape, preprocessing,
                      num_samples, chunk_size):
    """IWAE estimate of log p(x) for the examples `idx_B` (B,) of `data` (`Examples` or
    images): (B,), nats; log p(x|y) for a conditional model (`data` carries labels).

    Pure: vmap it over (params, key) to evaluate many models at once. K = `num_samples`
    draws per example in `num_samples // chunk_size` sequential chunks (memory ~ chunk x B
    x D floats), combined with logsumexp. Example i's chunk c uses fold_in(fold_in(k, i), c).
    """
    num_chunks = num_samples // chunk_size
    binarize_key, noise_key = example_streams(key)
    x, condition = example_inputs(binarize_key, data_lib.as_examples(data), idx_B, preprocessing, data_shape)

    def chunk(c):
        def one(i, x_i, condition_i):
            encode, decode, prior = objectives.model_functions(model, params, condition_i)
            k = jax.random.fold_in(jax.random.fold_in(noise_key, i), c)
            log_w = objectives.iwae_log_weights(
                k, x_i, encode, decode, likelihood=likelihood_of(preprocessing),
                num_samples=chunk_size, prior=prior)
            return jax.nn.logsumexp(log_w)
        return jax.vmap(one)(idx_B, x, condition)

    per_chunk = jax.lax.map(chunk, jnp.arange(num_chunks))  # (C, B)
    return jax.nn.logsumexp(per_chunk, axis=0) - math.log(num_samples)


def _compiled_once(fn, static_argnames, model_axes):
    """`fn(model, *args, **settings)` jitted once per (model, settings, shapes) and reused by
    every later call in the process, and the same vmapped over a leading axis of M models
    in the `args` that `model_axes` marks (a sweep group). `model` must be hashable."""
    def over_models(model, *args, **settings):
        return jax.vmap(functools.partial(fn, model, **settings), in_axes=model_axes)(*args)

    jit = functools.partial(jax.jit, static_argnums=0, static_argnames=static_argnames)
    return jit(fn), jit(over_models)


compiled_elbo_metrics, compiled_elbo_metrics_stacked = _compiled_once(
    elbo_metrics, ("data_shape", "preprocessing", "batch_size", "threshold"), (0, None, 0))
compiled_iwae_batch, compiled_iwae_batch_stacked = _compiled_once(
    iwae_batch_log_px, ("data_shape", "preprocessing", "num_samples", "chunk_size"),
    (0, 0, None, None))


def validation_metrics(program, params, hyper, data):
    """Negative ELBO, rate and distortion of one member on `data` (`Examples` or images; nats
    per example): a pure function, vmapped over the members of a group."""
    m = elbo_metrics(program.model, params, data, run_keys(hyper["seed"]).eval,
                     data_shape=program.data_shape, preprocessing=program.preprocessing,
                     batch_size=program.eval_batch_size)
    return {"neg_elbo": m["neg_elbo"], "rate": m["rate"], "distortion": m["distortion"]}
