"""Figures of a trained model, written as PNGs to `<workdir>/figures/`.

Generation is `z ~ p(z)`, then decode; reconstruction is `z ~ q(z|x)`, then decode. Images
show the decoder's mean: sigmoid(logits) for a Bernoulli likelihood, the mean for a Gaussian.
All randomness comes from the run's eval key, so the figures of a run are reproducible.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from vaejax import data as data_lib
from vaejax import distributions, plots, records

FIGURES = ("prior_samples.png", "reconstructions.png", "latent_traversals.png",
           "training_curves.png", "latent_manifold.png")


def decoder_mean(decoder_output, likelihood: str):
    """The image a decoder output stands for, in [0, 1]."""
    if likelihood == "bernoulli":
        return jax.nn.sigmoid(decoder_output)
    mean, _ = decoder_output
    return jnp.clip(mean, 0.0, 1.0)


def draw_figures(workdir, program, params, hyper, test_uint8, *, num_images: int = 10,
                 log=print) -> list[pathlib.Path]:
    """Writes the figures of `params` to `<workdir>/figures`; returns their paths."""
    from vaejax.train import run_keys  # noqa: PLC0415

    out = pathlib.Path(workdir) / "figures"
    vae, likelihood = program.vae, program.likelihood
    image_shape = tuple(test_uint8.shape[1:])  # the model may read flat vectors (MLP)
    decode = jax.jit(jax.vmap(
        lambda z: decoder_mean(vae.decode(params, z), likelihood).reshape(image_shape)))
    encode = jax.jit(jax.vmap(
        lambda x: vae.encode(params, x.reshape(vae.data_shape))))
    prior_key, binarize_key, posterior_key = jax.random.split(
        jax.random.fold_in(run_keys(hyper.seed).eval, 1), 3)
    z_dim = vae.latent_dim
    paths = []

    z = jax.random.normal(prior_key, (num_images * num_images, z_dim))
    paths.append(plots.prior_samples(np.asarray(decode(z)), out / "prior_samples.png",
                                     ncols=num_images))

    x = data_lib.preprocess(binarize_key, test_uint8[: 2 * num_images], kind=program.preprocessing)
    mean, logvar = encode(x)
    z = distributions.diag_gaussian_sample(posterior_key, mean, logvar)
    paths.append(plots.reconstructions(np.asarray(x), np.asarray(decode(z)),
                                       out / "reconstructions.png", ncols=num_images))

    # Traversals through the posterior mean of the first test image, along the dimensions
    # with the largest KL (the ones the model uses), at most 10 of them.
    kl = np.asarray(distributions.kl_to_standard_normal_per_dim(mean, logvar).mean(0))
    dims = np.argsort(-kl)[: min(10, z_dim)]
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

    if z_dim == 2:  # the seed's figure: decode a grid over [-3, 3]^2, z2 decreasing down rows
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
    from vaejax import train as train_lib  # noqa: PLC0415

    config = records.run_config(workdir)
    splits = train_lib.load_splits(config, log=log)
    program = train_lib.TrainProgram.build(config, splits.train.shape[1:], splits.train.shape[0])
    hyper = train_lib.Hyper.from_config(config)
    params, _ = train_lib.restore_params(workdir, program, hyper)
    return draw_figures(workdir, program, params, hyper, splits.test, log=log)
