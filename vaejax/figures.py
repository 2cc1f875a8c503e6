"""Figures of a trained model, written as PNGs to `<workdir>/figures/`.

Generation is z ~ p(z), then the mean of p(x|z); reconstruction is z ~ q(z|x), then the mean
of p(x|z): sigmoid(logits) for a Bernoulli likelihood, the mean (clipped to [0, 1]) for a
Gaussian. Any model of the protocol in `vaejax.models` is drawn the same way, with two
optional parts of the protocol:
  - a model conditioned on labels (`conditioning = "label"`, `num_classes`) gets
    class_samples.png (one row of samples per class) in place of prior_samples.png, and
    its reconstructions and traversals use each test image's own label;
  - a model with `learned_images(params) -> {name: (N,) + data_shape in [0, 1]}` (e.g. the
    VampPrior's pseudo-inputs) gets `<name>.png`, a grid of them;
  - a model whose prior has `sample_to_depth` (a hierarchy of latent layers, e.g.
    `hierarchical.GaussianChain`) gets layer_samples.png: a row per layer, z drawn from the top
    down to that layer and the layers below at their conditional means.
All randomness comes from the run's eval key, so the figures of a run are reproducible.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from vaejax import data as data_lib
from vaejax import disentanglement_evaluation, files, locking, plots, records, runs
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
    if out.is_dir():  # a figure half-written by a process killed while drawing
        files.remove_dead_writers_temporaries(out)
    test = data_lib.as_examples(test_data).take(slice(None, 2 * num_images))
    labels = test.labels if program.conditioning else None
    prior_key, binarize_key, posterior_key = jax.random.split(
        jax.random.fold_in(run_keys(hyper["seed"]).eval, 1), 3)
    # the model may read flat vectors (MLP): figures show images of the test set's shape
    view = _model_view(program.model, params, tuple(test.images.shape[1:]), labels, prior_key)
    paths = [_draw_prior_samples(view, out, prior_key, num_images) if labels is None
             else _draw_class_samples(view, out, prior_key, num_images)]
    x = program.inputs(binarize_key, test.images)
    posterior_mean, z = view.encode(posterior_key, x, labels)
    paths.append(_draw_reconstructions(view, out, x, z, labels, num_images))
    paths.append(_draw_latent_traversals(view, out, posterior_mean))
    paths += _draw_training_curves(workdir, out)
    if int(posterior_mean.shape[-1]) == 2:
        paths.append(_draw_latent_manifold(view, out))
    paths += _draw_learned_images(view, out)
    paths += _draw_layer_samples(view, out, prior_key, num_images)
    log(f"figures: {', '.join(p.name for p in paths)} -> {out}")
    return paths


@dataclasses.dataclass(frozen=True)
class _ModelView:
    """A model's functions as the figures use them, jitted over N images: z is one flat
    vector (D,) per image, and the images are (N,) + `image_shape`, in [0, 1]."""

    model: Any
    params: Any
    image_shape: tuple[int, ...]
    first: Any  # the condition (label) of the first test image; None: unconditional
    functions: Callable  # condition -> (encode, decode, prior) of one example
    decode: Callable  # (z (N, D), conditions (N,) or None) -> decoder means, clipped to [0, 1]
    encode: Callable  # (key, x (N,) + data_shape, conditions) -> posterior (means, draws) (N, D)
    prior_samples: Callable  # (key, conditions (N,)) -> z (N, D): one draw of p(z|y) each

    def first_condition(self, n: int):
        """The first test image's condition for `n` images: (n,) int32, or None."""
        return None if self.first is None else jnp.full((n,), self.first, jnp.int32)


def _model_view(model, params, image_shape, labels, prior_key) -> _ModelView:
    """`model` with `params`, drawing images of `image_shape`. `labels` (N,): the conditions of
    the test images (None: unconditional); `prior_key`: the draw of p(z) that fixes how z is
    laid out as one flat vector."""
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

    return _ModelView(model, params, image_shape, first, functions, decode, encode, prior_samples)


def _draw_prior_samples(view: _ModelView, out: pathlib.Path, key, num_images: int) -> pathlib.Path:
    """prior_samples.png: num_images x num_images decodings of z ~ p(z)."""
    z = view.functions(None)[2].sample(seed=key, sample_shape=(num_images * num_images,))
    z = jax.vmap(lambda zi: ravel_pytree(zi)[0])(z)
    return plots.prior_samples(np.asarray(view.decode(z, None)), out / "prior_samples.png",
                               ncols=num_images)


def _draw_class_samples(view: _ModelView, out: pathlib.Path, key, num_images: int) -> pathlib.Path:
    """class_samples.png: one row of `num_images` decodings of z ~ p(z|y) per class y."""
    classes = jnp.repeat(jnp.arange(view.model.num_classes, dtype=jnp.int32), num_images)
    z = view.prior_samples(key, classes)
    return plots.class_samples(np.asarray(view.decode(z, classes)), out / "class_samples.png",
                               num_classes=view.model.num_classes)


def _draw_reconstructions(view: _ModelView, out: pathlib.Path, x, z, labels,
                          num_images: int) -> pathlib.Path:
    """reconstructions.png: the model's inputs `x` (N,) + data_shape above the decodings of
    their posterior draws `z` (N, D)."""
    return plots.reconstructions(np.asarray(x).reshape((-1,) + view.image_shape),
                                 np.asarray(view.decode(z, labels)), out / "reconstructions.png",
                                 ncols=num_images)


def _draw_latent_traversals(view: _ModelView, out: pathlib.Path, posterior_mean) -> pathlib.Path:
    """latent_traversals.png: decodings of the first image's posterior mean with one dimension
    set to each of -3..3 (11 steps), a row per dimension.

    The dimensions are the ones whose posterior means (`posterior_mean`, (N, D)) vary most
    across the shown images (the ones the model uses: Burda et al.'s activity statistic),
    at most 10 of them."""
    z_dim = int(posterior_mean.shape[-1])
    activity = np.asarray(jnp.var(posterior_mean, axis=0))
    dims = np.argsort(-activity)[: min(10, z_dim)]
    values = np.linspace(-3.0, 3.0, 11)
    base = np.asarray(posterior_mean[0])
    grid = np.repeat(base[None], len(dims) * len(values), 0)
    for row, d in enumerate(dims):
        grid[row * len(values):(row + 1) * len(values), d] = values
    return plots.latent_traversals(
        np.asarray(view.decode(jnp.asarray(grid), view.first_condition(grid.shape[0]))),
        out / "latent_traversals.png", num_dims=len(dims), num_steps=len(values), values=values,
        dims=[int(d) for d in dims])


def _draw_training_curves(workdir, out: pathlib.Path) -> list[pathlib.Path]:
    """[training_curves.png] from the run's metrics.jsonl; [] before its first epoch."""
    metrics = records.read_metrics(workdir)
    return [plots.training_curves(metrics, out / "training_curves.png")] if metrics else []


def _draw_latent_manifold(view: _ModelView, out: pathlib.Path) -> pathlib.Path:
    """latent_manifold.png, for a 2-D latent space: the decodings of a 20 x 20 grid over
    [-3, 3]^2, z1 increasing along rows and z2 decreasing down them."""
    size, extent = 20, 3.0
    z1 = np.linspace(-extent, extent, size)
    z2 = np.linspace(extent, -extent, size)
    zz = np.stack(np.meshgrid(z1, z2), -1).reshape(-1, 2).astype(np.float32)
    return plots.latent_manifold(
        np.asarray(view.decode(jnp.asarray(zz), view.first_condition(size * size))),
        out / "latent_manifold.png", grid_size=size, extent=extent)


def _draw_learned_images(view: _ModelView, out: pathlib.Path) -> list[pathlib.Path]:
    """`<name>.png`, a grid of each set of images the model learns (`learned_images`, e.g.
    the VampPrior's pseudo-inputs); [] for a model without them."""
    learned = getattr(view.model, "learned_images", None)
    paths = []
    for name, images in (learned(view.params) if learned is not None else {}).items():
        images = np.clip(np.asarray(images, np.float32), 0.0, 1.0).reshape((-1,) + view.image_shape)
        paths.append(plots.image_grid(images, out / f"{name}.png", ncols=min(25, images.shape[0]),
                                      title=f"{name.replace('_', ' ')} (learned, {images.shape[0]})"))
    return paths


def _draw_layer_samples(view: _ModelView, out: pathlib.Path, key, num_images: int) -> list[pathlib.Path]:
    """[layer_samples.png] for a prior with `sample_to_depth` (see the module docstring), []
    otherwise; `num_images` columns, each with the same draws in every row."""
    prior = view.functions(view.first)[2]
    if not hasattr(prior, "sample_to_depth"):
        return []
    rows = []
    for depth in range(len(prior.names)):
        z = prior.sample_to_depth(seed=key, depth=depth, sample_shape=(num_images,))
        rows.append(view.decode(jax.vmap(lambda zi: ravel_pytree(zi)[0])(z),
                                view.first_condition(num_images)))
    return [plots.layer_samples(np.concatenate([np.asarray(r) for r in rows]),
                                out / "layer_samples.png", layers=list(prior.names))]


FACTOR_TRAVERSAL_SDS = np.linspace(-2.0, 2.0, 9)  # steps, in sds of each latent's posterior means


def draw_factor_traversals(workdir, program, params, codes, factors, image_shape) -> pathlib.Path:
    """factor_traversals.png, for a dataset with ground-truth factors: a row per factor, the
    latent that tells most about it (`disentanglement_evaluation.factor_latents` over `codes`
    [N, L], the posterior means of grid images whose factors are `factors` [N, F]: the
    evaluation's `sample_codes`) moved from the first image's own code by
    `FACTOR_TRAVERSAL_SDS` of that latent's spread over the images, the others fixed; images of
    `image_shape` (H, W, C). A disentangled model changes only its row's factor along each
    row."""
    codes = np.asarray(codes)
    latents = disentanglement_evaluation.factor_latents(codes, factors)
    spread = codes.std(axis=0)
    steps = FACTOR_TRAVERSAL_SDS
    z = np.repeat(codes[:1], len(latents) * len(steps), axis=0)
    for row, j in enumerate(latents):
        z[row * len(steps):(row + 1) * len(steps), j] = codes[0, j] + steps * spread[j]
    view = _model_view(program.model, params, tuple(image_shape), None, jax.random.key(0))
    decoded = np.asarray(view.decode(jnp.asarray(z), None))
    return plots.latent_traversals(
        decoded, pathlib.Path(workdir) / "figures" / "factor_traversals.png",
        num_dims=len(latents), num_steps=len(steps), values=steps, dims=[int(j) for j in latents],
        row_labels=[f"factor {f}: $z_{{{j}}}$" for f, j in enumerate(latents)],
        title="Each factor's most informative latent, traversed (others fixed)",
        xlabel="the latent's offset from the image's own mean, in sds of its posterior means")


def sample_run(workdir, log=print) -> list[pathlib.Path]:
    """`vaejax sample --workdir`: the figures of the latest checkpoint of a run."""
    records.read_run_record(workdir)  # a clear error if `workdir` is not a run
    with locking.hold(workdir, "vaejax sample"):
        run = runs.load_run(workdir, log=log)
        return draw_figures(workdir, run.program, run.params, run.hyper, run.splits.test, log=log)
