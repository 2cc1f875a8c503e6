"""Tiny configs and synthetic uint8 images for unit tests (nanodo-sized: a few dimensions)."""

import numpy as np

from vaejax import config as config_lib
from run_helpers import REPO

IMAGE_SHAPE = (4, 4, 1)


def tiny_config(*overrides):
    return config_lib.load_config(REPO / "experiments" / "default.py", [
        "model.hidden_sizes=(8,)", "model.latent_dim=2", "train.batch_size=8", "train.epochs=2",
        "eval.batch_size=8", *overrides])


def images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n,) + IMAGE_SHAPE, dtype=np.uint8)
