"""TensorFlow's CVAE tutorial model: a conv VAE with a 2-D latent on MNIST, drawn as a manifold.

    vaejax train --config experiments/cvae_mnist.py --workdir runs/cvae_mnist

Encoder Conv(32,3,s2)-Conv(64,3,s2)-Dense(4); decoder Dense(7*7*32)-ConvT(64,s2)-ConvT(32,s2)-
ConvT(1) (`vaejax.models.conv`). Batch 32, Adam 1e-4 as in the tutorial. Epoch times on 2 CPU
cores are in benchmarks/RESULTS.md.
"""

import ml_collections

from vaejax.config import sibling


def get_config():
    config = sibling(__file__, "default").get_config()
    config.data.name = "mnist"
    config.model = ml_collections.ConfigDict(dict(
        kind="conv", latent_dim=2, activation="relu", likelihood="bernoulli",
        gaussian_logvar="learned"))
    config.train.epochs = 10
    config.train.batch_size = 32
    config.optimizer.learning_rate = 1e-4
    return config
