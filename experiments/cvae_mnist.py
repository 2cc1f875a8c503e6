"""The seed article's convolutional VAE: latent_dim 2 on MNIST, drawn as a 2-D manifold.

    vaejax train --config experiments/seed_cvae.py --workdir runs/seed_cvae

Encoder Conv(32,3,s2)-Conv(64,3,s2)-Dense(4); decoder Dense(7*7*32)-ConvT(64,s2)-ConvT(32,s2)-
ConvT(1). Batch 32, Adam 1e-4 as in the TensorFlow CVAE tutorial. About 50-60 s per 50,000-image
epoch on 2 CPU cores (vaejax.layers; flax's own conv layers took about 620 s): 10 epochs ~10 min.
"""

from vaejax.config import sibling


def get_config():
    config = sibling(__file__, "default").get_config()
    config.data.name = "mnist"
    config.model.kind = "conv"
    config.model.latent_dim = 2
    config.train.epochs = 10
    config.train.batch_size = 32
    config.optimizer.learning_rate = 1e-4
    return config
