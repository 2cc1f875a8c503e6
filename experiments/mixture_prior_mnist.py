"""The plug-in example: `my_models/mixture_prior.py` (a user's own model file) on MNIST.

    vaejax train --config experiments/mixture_prior_mnist.py --workdir runs/mixture_prior
    vaejax sweep experiments/mixture_prior_mnist.py --workdir sweeps/mixture_prior   # 2 seeds, vmapped

`config.model` holds only the model's own fields: vaejax calls
`my_models.mixture_prior.MixturePriorVAE(image_shape=(28, 28, 1), latent_dim=..., num_components=...,
hidden_size=...)`, importing `my_models` from this file's folder.
"""

import ml_collections

from vaejax.config import sibling
from vaejax.sweep import product


def get_config():
    config = sibling(__file__, "default").get_config()
    config.data.name = "mnist"
    config.model = ml_collections.ConfigDict(dict(
        kind="my_models.mixture_prior:MixturePriorVAE", latent_dim=10, num_components=10, hidden_size=256))
    config.train.epochs = 10
    return config


def get_sweep():
    return product(seed=[0, 1])
