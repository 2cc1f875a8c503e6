"""Figures of a trained model, written as PNGs to `<workdir>/figures/`.

Generation is z ~ p(z), then the mean of p(x|z); reconstruction is z ~ q(z|x), then the mean
of p(x|z): sigmoid(logits) for a Bernoulli likelihood, the mean (clipped to [0, 1]) for a
Gaussian. Any model of the protocol in `vaejax.models` is drawn the same way, with two
optional parts of the protocol:
  - a model conditioned on labels (`conditioning = "label"`, `num_classes`) gets
    class_samples.png (one row of samples per class) in place of prior_samples.png, and
    its reconstructions and traversals use each test image's own label;
  - a model with `learned_images(params) -> {name: (N,) + data_shape in [0, 1]}` (e.g. the
    VampPrior's pseudo-inputs) gets `<name>.png`, a grid of them.
All randomness comes from the run's eval key, so the figures of a run are reproducible.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from vaejax import data as data_lib
from vaejax import locking, plots, records, runs
from vaejax.objectives import model_functions
from vaejax.program import run_keys

FIGURES = ("prior_samples.png", "reconstructions.png", "latent_traversals.png",
           "training_curves.png", "latent_manifold.png")


def draw_figures(workdir, program, params, hyper, test_data, *, num_images: int = 10,
                 log=print) -> list[pathlib.Path]:
    """Writes the figures of `params` to `<workdir>/figures`; returns their paths.

    `test_data`: `Examples` (with labels for a conditional model) or images (N, H, W, C).
    """
    out = pathlib.Path(workdir) / "figures"
    model = program.model
    test = data_lib.as_examples(test_data).take(slice(None, 2 * num_images))
    image_shape = tuple(test.images.shape[1:])  # the model may read flat vectors (MLP)
    labels = test.labels if program.conditioning else None
    prior_key, binarize_key, posterior_key = jax.random.split(
        jax.random.fold_in(run_keys(hyper["seed"]).eval, 1), 3)

    def functions(condition):  # (encode, decode, prior) of one example
        return model_functions(model, params, condition)

    first = None if labels is None else labels[0]
    _, unravel = ravel_pytree(functions(first)[2].sample(seed=prior_key))  # z as one flat vector

    @jax.jit
    def decode(z_flat_N, condition_N):
        def one(z, condition):
            return functions(condition)[1](unravel(z)).mean()
        mean = jax.vmap(one)(z_flat_N, condition_N)
        return jnp.clip(mean, 0.0, 1.0).reshape((-1,) + image_shape)

    @jax.jit
    def encode(key, x_N, condition_N):
        def one(k, x, condition):
            q = functions(condition)[0](x)
            return ravel_pytree(q.mean())[0], ravel_pytree(q.sample(seed=k))[0]
        return jax.vmap(one)(jax.random.split(key, x_N.shape[0]), x_N, condition_N)

    @jax.jit
    def prior_samples(key, condition_N):
        def one(k, condition):
            return ravel_pytree(functions(condition)[2].sample(seed=k))[0]
        return jax.vmap(one)(jax.random.split(key, condition_N.shape[0]), condition_N)

    def repeat(condition, n):  # one condition for n images (None: unconditional)
        return None if condition is None else jnp.full((n,), condition, jnp.int32)

    paths = []
    if labels is None:
        z = functions(None)[2].sample(seed=prior_key, sample_shape=(num_images * num_images,))
        z = jax.vmap(lambda zi: ravel_pytree(zi)[0])(z)
        paths.append(plots.prior_samples(np.asarray(decode(z, None)), out / "prior_samples.png",
                                         ncols=num_images))
    else:
        classes = jnp.repeat(jnp.arange(model.num_classes, dtype=jnp.int32), num_images)
        z = prior_samples(prior_key, classes)
        paths.append(plots.class_samples(np.asarray(decode(z, classes)), out / "class_samples.png",
                                         num_classes=model.num_classes))

    x = program.inputs(binarize_key, test.images)
    mean, z = encode(posterior_key, x, labels)
    paths.append(plots.reconstructions(np.asarray(x).reshape((-1,) + image_shape),
                                       np.asarray(decode(z, labels)), out / "reconstructions.png",
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
        np.asarray(decode(jnp.asarray(grid), repeat(first, grid.shape[0]))),
        out / "latent_traversals.png", num_dims=len(dims), num_steps=len(values), values=values,
        dims=[int(d) for d in dims]))

    metrics = records.read_metrics(workdir)
    if metrics:
        paths.append(plots.training_curves(metrics, out / "training_curves.png"))

    if z_dim == 2:  # a 2-D latent space: decode a grid over [-3, 3]^2, z2 decreasing down rows
        size, extent = 20, 3.0
        z1 = np.linspace(-extent, extent, size)
        z2 = np.linspace(extent, -extent, size)
        zz = np.stack(np.meshgrid(z1, z2), -1).reshape(-1, 2).astype(np.float32)
        paths.append(plots.latent_manifold(np.asarray(decode(jnp.asarray(zz), repeat(first, size * size))),
                                           out / "latent_manifold.png", grid_size=size,
                                           extent=extent))

    learned = getattr(model, "learned_images", None)
    for name, images in (learned(params) if learned is not None else {}).items():
        images = np.clip(np.asarray(images, np.float32), 0.0, 1.0).reshape((-1,) + image_shape)
        paths.append(plots.image_grid(images, out / f"{name}.png", ncols=min(25, images.shape[0]),
                                      title=f"{name.replace('_', ' ')} (learned, {images.shape[0]})"))
    log(f"figures: {', '.join(p.name for p in paths)} -> {out}")
    return paths


def sample_run(workdir, log=print) -> list[pathlib.Path]:
    """`vaejax sample --workdir`: the figures of the latest checkpoint of a run."""
    records.read_run_record(workdir)  # a clear error if `workdir` is not a run
    with locking.hold(workdir, "vaejax sample"):
        run = runs.load_run(workdir, log=log)
        return draw_figures(workdir, run.program, run.params, run.hyper, run.splits.test, log=log)
