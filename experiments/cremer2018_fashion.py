"""Cremer, Li & Duvenaud (2018), "Inference suboptimality in VAEs": the Fashion-MNIST VAE.

As the authors' evaluation code trains it (lxuechen/inference-suboptimality, `run.py`,
`vae.py`, `loader.py`): 784-200-200-50 ELU encoder and 50-200-200-784 ELU decoder, Bernoulli
likelihood, Fashion-MNIST binarized once at 0.5, the first 55,000 training images (the last
5,000 held out), batch 100, Adam (eps 1e-4) at 1e-3 * 10^(-i/7) for stage i of 3^i epochs
(Burda et al.'s schedule, 3280 epochs), and the KL weight warmed up linearly over the first
400 epochs (550 steps per epoch here).

    vaejax train --config experiments/cremer2018_fashion.py --workdir runs/likelihoods/fashion_vae

The likelihoods study (docs/likelihoods) evaluates this run with AIS, BDMC and the gap split.
"""

from vaejax.config import sibling


def get_config():
    """Burda et al.'s one-layer VAE (experiments/iwae_mnist.py) with Cremer et al.'s changes."""
    config = sibling(__file__, "iwae_mnist").get_config()
    config.data.name = "fashion_mnist"
    config.data.preprocessing = "threshold"
    config.data.num_validation = 5_000
    config.model.activation = "elu"
    config.objective.beta_schedule = "linear"
    config.objective.warmup_steps = 400 * 550
    return config
