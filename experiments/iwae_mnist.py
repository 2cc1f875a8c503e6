"""Burda et al. (2015), one stochastic layer: 784-200-200-50, tanh, dynamically binarized MNIST.

    vaejax train --config experiments/iwae_mnist.py --workdir runs/vae_k1
    vaejax train --config experiments/iwae_mnist.py --workdir runs/iwae_k5  --config.objective.num_samples=5
    vaejax sweep experiments/iwae_mnist.py --workdir sweeps/iwae           # VAE and IWAE, K in {1, 5, 50}

The paper trains 3^8 passes (3280 epochs); `config.train.epochs` here is a budget you set.
Reference test NLL (K=5000): VAE 86.76, IWAE k=50 84.78 nats. Evaluation uses K=5000.
"""

from vaejax.config import sibling


def get_config():
    config = sibling(__file__, "default").get_config()
    config.data.name = "mnist"
    config.data.num_validation = 0
    config.model.hidden_sizes = (200, 200)
    config.model.activation = "tanh"
    config.model.latent_dim = 50
    config.objective.kind = "iwae"
    config.objective.num_samples = 1
    config.train.batch_size = 20
    config.train.epochs = 10
    config.optimizer.learning_rate = 1e-3
    config.optimizer.b2 = 0.999
    config.optimizer.eps = 1e-4
    config.eval.iwae_samples = 5000
    return config


def get_sweep():
    """VAE (ELBO) and IWAE with K in {1, 5, 50}: six runs."""
    runs = []
    for kind in ("elbo", "iwae"):
        for k in (1, 5, 50):
            runs.append({"objective.kind": kind, "objective.num_samples": k})
    return runs
