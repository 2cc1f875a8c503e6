"""The benchmark model: 784-400-20 MLP VAE, ReLU, Bernoulli likelihood, dynamically
binarized Fashion-MNIST, batch 128, Adam 1e-3: the model a plain PyTorch or JAX script trains.

    vaejax train --config experiments/bench_mlp.py --workdir runs/bench_mlp   # epoch times: benchmarks/RESULTS.md
"""

from vaejax.config import sibling


def get_config():
    config = sibling(__file__, "default").get_config()
    config.model.hidden_sizes = (400,)
    config.model.latent_dim = 20
    config.train.batch_size = 128
    config.optimizer.learning_rate = 1e-3
    return config
