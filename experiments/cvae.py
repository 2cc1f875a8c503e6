"""The conditional VAE of Sohn et al. (2015) on dynamically binarized MNIST, conditioned on the digit.

    vaejax train --config experiments/cvae.py --workdir runs/cvae
    vaejax sweep experiments/cvae.py --workdir sweeps/cvae          # 3 seeds, vmapped

q(z|x, y) and p(x|z, y) are 784-500-500-20 MLPs reading the one-hot label beside their input
(`vaejax.models.conditional`); p(z|y) = N(0, I) (`model.prior = "learned"`: one Gaussian per
class). The test NLL is the conditional -log p(x|y) (IWAE, K=5000), and the figures include a
grid of samples per class (class_samples.png). Sohn et al. condition on part of an image (their
MNIST task predicts quadrants), so they report no number for this setting to compare with.
(Not to be confused with experiments/cvae_mnist.py: TensorFlow's "CVAE" tutorial, a
*convolutional* VAE.)
"""

import ml_collections

from vaejax.config import sibling
from vaejax.sweep import product


def get_config():
    config = sibling(__file__, "default").get_config()
    config.data.name = "mnist"
    config.model = ml_collections.ConfigDict(dict(
        kind="conditional", latent_dim=20, num_classes=10, hidden_sizes=(500, 500),
        activation="relu", prior="standard", likelihood="bernoulli"))
    config.train.epochs = 20
    config.train.batch_size = 100
    config.eval.iwae_samples = 5000
    return config


def get_sweep():
    return product(seed=[0, 1, 2])
