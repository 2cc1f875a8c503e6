"""Figures of a trained model, written as PNGs to `<workdir>/figures/`.

Generation is z ~ p(z), then the mean of p(x|z); reconstruction is z ~ q(z|x), then the mean
of p(x|z): sigmoid(logits) for a Bernoulli likelihood, the mean (clipped to [0, 1]) for a
Gaussian. Any model of the protocol in `vaejax.models` is drawn the same way. All randomness
comes from the run's eval key, so the figures of a run are reproducible.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from vaejax import plots, records, runs
from vaejax.program import run_keys

FIGURES = ("prior_samples.png", "reconstructions.png", "latent_traversals.png",
           "training_curves.png", "latent_manifold.png")


def draw_figures(workdir, program, params, hyper, test_uint8, *, num_images: int = 10,
                 log=print) -> list[pathlib.Path]:
    """Writes the figures of `params` to `<workdir>/figures`; returns their paths."""
    out = pathlib.Path(workdir) / "figures"
    model = program.model
    image_shape = tuple(test_uint8.shape[1:])  # the model may read flat vectors (MLP)
    prior_key, binarize_key, posterior_key = jax.random.split(
        jax.random.fold_in(run_keys(hyper["seed"]).eval, 1), 3)
    prior = model.prior(params)
    z_example = prior.sample(seed=prior_key)
    _, unravel = ravel_pytree(z_example)  # figures handle z as one flat vector

    @jax.jit
    def decode(z_flat_N):
        mean = jax.vmap(lambda z: model.likelihood(params, unravel(z)).mean())(z_flat_N)
        return jnp.clip(mean, 0.0, 1.0).reshape((-1,) + image_shape)

    @jax.jit
    def encode(key, x_N):
        def one(k, x):
            q = model.posterior(params, x)
            return ravel_pytree(q.mean())[0], ravel_pytree(q.sample(seed=k))[0]
        return jax.vmap(one)(jax.random.split(key, x_N.shape[0]), x_N)

    paths = []
    z = prior.sample(seed=prior_key, sample_shape=(num_images * num_images,))
    z = jax.vmap(lambda zi: ravel_pytree(zi)[0])(z)
    paths.append(plots.prior_samples(np.asarray(decode(z)), out / "prior_samples.png",
                                     ncols=num_images))

    x = program.inputs(binarize_key, test_uint8[: 2 * num_images])
    mean, z = encode(posterior_key, x)
    paths.append(plots.reconstructions(np.asarray(x).reshape((-1,) + image_shape),
                                       np.asarray(decode(z)), out / "reconstructions.png",
                                       ncols=num_images))

    # Traversals through the posterior mean of the first test image, along the dimensions
    # whose posterior means vary most across the shown images (the ones the model uses:
    # Burda et al.'s activity statistic), at most 10 of them.
    z_dim = int(mean.shape[-1])
    activity = np.asarray(jnp.var(mean, axis=0))
    dims = np.argsort(-activity)[: min(10, z_dim)]
    values = np.linspace(-3.0, 3.0, 11)
    base = np.asarray(mean[0])
    grid = np.repeat(base[None], len(dims) * len(values), 0)
    for row, d in enumerate(dims):
        grid[row * len(values):(row + 1) * len(values), d] = values
    paths.append(plots.latent_traversals(
        np.asarray(decode(jnp.asarray(grid))), out / "latent_traversals.png",
        num_dims=len(dims), num_steps=len(values), values=values, dims=[int(d) for d in dims]))

    metrics = records.read_metrics(workdir)
    if metrics:
        paths.append(plots.training_curves(metrics, out / "training_curves.png"))

    if z_dim == 2:  # a 2-D latent space: decode a grid over [-3, 3]^2, z2 decreasing down rows
        size, extent = 20, 3.0
        z1 = np.linspace(-extent, extent, size)
        z2 = np.linspace(extent, -extent, size)
        zz = np.stack(np.meshgrid(z1, z2), -1).reshape(-1, 2).astype(np.float32)
        paths.append(plots.latent_manifold(np.asarray(decode(jnp.asarray(zz))),
                                           out / "latent_manifold.png", grid_size=size,
                                           extent=extent))
    log(f"figures: {', '.join(p.name for p in paths)} -> {out}")
    return paths


def sample_run(workdir, log=print) -> list[pathlib.Path]:
    """`vaejax sample --workdir`: the figures of the latest checkpoint of a run."""
    run = runs.load_run(workdir, log=log)
    return draw_figures(workdir, run.program, run.params, run.hyper, run.splits.test, log=log)
