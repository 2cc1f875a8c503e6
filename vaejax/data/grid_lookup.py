"""Images of a full factor grid by their factor indices (the BetaVAE and FactorVAE scores
draw images with one factor held fixed, `vaejax.disentanglement_evaluation`)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


class GridLookup:
    """`images(factors [N, F]) -> [N, ...]`, the images of those factor values.

    `images` (M, ...) on a device, `factors` [M, F]: every point of the factor grid once, in
    any order (for a run, every image of its dataset, `Splits.grid`). The grid's sizes are the factors'
    maxima + 1. Refuses, naming what is missing, factors that are None or not a full grid."""

    def __init__(self, images, factors):
        if factors is None:
            raise ValueError("eval.disentanglement needs a dataset with ground-truth factors "
                             "(data.name = 'dsprites' or 'squares', or your own with factors).")
        factors = np.asarray(factors)
        self.sizes = tuple(int(s) for s in factors.max(axis=0) + 1)
        flat = np.ravel_multi_index(factors.T, self.sizes)
        grid_size = int(np.prod(self.sizes))
        distinct = np.unique(flat).size
        if distinct != grid_size or flat.size != grid_size:
            raise ValueError(
                f"eval.disentanglement needs every point of the factor grid {self.sizes} once "
                f"(the BetaVAE and FactorVAE scores draw images with one factor held fixed); the "
                f"dataset holds {distinct:,} of its {grid_size:,} points in {flat.size:,} "
                "images.")
        self.position = np.empty(grid_size, np.int64)
        self.position[flat] = np.arange(flat.size)
        self._images = images

    def images(self, factors) -> jax.Array:
        index = self.position[np.ravel_multi_index(np.asarray(factors).T, self.sizes)]
        return jnp.take(self._images, jnp.asarray(index), axis=0)
