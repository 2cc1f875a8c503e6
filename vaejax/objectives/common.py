"""What the batch-level objectives share: a model's functions bound to its parameters (and
to an example's condition), and a per-example bound averaged over a batch. A leaf of the
objectives package: `training` and `tcvae` import it, it imports neither.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def model_functions(model, params, condition=None):
    """(encode, decode, prior) of `model` at `params`, as the bounds take them; for a model
    conditioned on each example's label (`model.conditioning`), given that `condition`."""
    if condition is None:
        return (functools.partial(model.posterior, params),
                functools.partial(model.likelihood, params), model.prior(params))
    return (lambda x: model.posterior(params, x, condition),
            lambda z: model.likelihood(params, z, condition), model.prior(params, condition))


def over_examples(bound, key, x_BxD, functions, condition_B=None, **kw):
    """`bound(key_i, x_i, encode, decode, prior=prior, **kw)` for each example of a batch.

    Example i gets `jax.random.split(key, B)[i]` (the keys of `batch_elbo` & co.) and
    `(encode, decode, prior) = functions(condition_B[i])` (None when `condition_B` is None).
    Returns (values (B,), aux with a leading batch axis).
    """
    keys = jax.random.split(key, x_BxD.shape[0])

    def one(k, x, condition):
        encode, decode, prior = functions(condition)
        return bound(k, x, encode, decode, prior=prior, **kw)

    return jax.vmap(one)(keys, x_BxD, condition_B)


def mean_over_examples(bound, key, x_BxD, functions, condition_B=None, **kw):
    """`over_examples`, averaged over the batch: (mean value, aux averaged over the batch axis)."""
    values_B, aux = over_examples(bound, key, x_BxD, functions, condition_B, **kw)
    return jnp.mean(values_B), jax.tree.map(lambda a: jnp.mean(a, axis=0), aux)
