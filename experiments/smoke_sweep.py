"""A sweep small enough to run anywhere: 8 runs in 2 vmapped groups, minutes on a CPU.

    vaejax sweep experiments/smoke_sweep.py --workdir sweeps/smoke --dry-run   # the plan
    vaejax sweep experiments/smoke_sweep.py --workdir sweeps/smoke             # train, report

latent_dim {2, 4} x beta {0.5, 2} x seed {0, 1} of a 784-64-z MLP VAE on the first 2000
Fashion-MNIST training images, 2 epochs; test metrics on 500 test images, IWAE K=50.
Writes sweeps/smoke/results.md, results.csv and figures/ (the README's sweep example).
"""

from vaejax.config import sibling
from vaejax.sweep import product


def get_config():
    config = sibling(__file__, "default").get_config()
    config.data.num_train = 2000
    config.data.num_validation = 1000
    config.model.hidden_sizes = (64,)
    config.train.epochs = 2
    config.train.batch_size = 100
    config.eval.iwae_samples = 50
    config.eval.iwae_chunk = 50
    config.eval.num_test_examples = 500
    config.eval.figures = False
    return config


def get_sweep():
    return product(latent_dim=[2, 4], beta=[0.5, 2], seed=[0, 1])
