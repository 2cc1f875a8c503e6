"""Burda et al. (2015), two stochastic layers: 784-100-100-100(z1)-50-50-50(z2), tanh, MNIST.

    vaejax train --config experiments/iwae_two_layer.py --workdir runs/two_layer_vae_k1
    vaejax train --config experiments/iwae_two_layer.py --workdir runs/two_layer_iwae_k5  --config.objective.num_samples=5
    vaejax sweep experiments/iwae_two_layer.py --workdir sweeps/iwae_two_layer   # VAE and IWAE, K in {1, 5, 50}

The model is `vaejax.models.two_layer` (q(z1|x) q(z2|z1), p(z2) p(z1|z2) p(x|z1)); everything
else (dynamically binarized MNIST, batch 20, Adam with eps 1e-4) is experiments/iwae_mnist.py.
The paper trains 3^8 passes (3280 epochs); `config.train.epochs` here is a budget you set.
Reference test NLL (Burda et al. 2015, table 1, two stochastic layers, K=5000): VAE 85.33,
IWAE k=50 82.90 nats. Evaluation uses K=5000.
"""

import ml_collections

from vaejax.config import sibling


def get_config():
    config = sibling(__file__, "iwae_mnist").get_config()
    config.objective.kind = "iwae"  # iwae_mnist.py now defaults to the VAE row (elbo)
    config.model = ml_collections.ConfigDict(dict(
        kind="two_layer",
        latent_dims=(100, 50),                 # z1, z2
        hidden_sizes=((100, 100), (50, 50)),   # x <-> z1, z1 <-> z2 (mirrored in p)
        activation="tanh",
        likelihood="bernoulli",
    ))
    return config


def get_sweep():
    """VAE (ELBO) and IWAE with K in {1, 5, 50}: six runs."""
    return [{"objective.kind": kind, "objective.num_samples": k}
            for kind in ("elbo", "iwae") for k in (1, 5, 50)]
