"""Sønderby et al. (2016), "Ladder Variational Autoencoders": the MNIST models of table 1.

Five stochastic layers of 64-32-16-8-4 latents, each pair joined by a two-layer MLP of
512-256-128-64-32 units (both ways), leaky ReLU, Bernoulli likelihood, dynamically binarized
MNIST (all 60,000 training images), batch 256, Adam at 2e-4, the KL term warmed up linearly
over the first 200 epochs, 2000 epochs; test NLL by IWAE K=5000, as the authors' code
(casperkaae/LVAE, run_models.py) runs it. The paper's headline, LVAE with 5 layers, batch
normalisation and warm-up: 81.74 nats (table 1).

    vaejax train --config experiments/sonderby2016.py --workdir runs/sonderby/lvae5       # LVAE
    vaejax train --config experiments/sonderby2016.py --workdir runs/sonderby/vae5 \
        --config.model.kind=hierarchical                                                  # VAE
    vaejax sweep experiments/sonderby2016.py --workdir runs/sonderby/seeds                # 3 seeds

Where this differs from the paper: weight normalisation with data-dependent initialisation
(`--config.model.normalization=weight_norm`) in place of batch normalisation (why:
`vaejax.models.weight_norm`), and the differences of `vaejax.models.hierarchical` from the
authors' code (the bottom-up MLP reading d_{i-1}, the ladder sharing the generative
model's top-down parameters).
"""

import ml_collections

from vaejax.config import sibling

LATENTS = (64, 32, 16, 8, 4)
HIDDEN = ((512, 512), (256, 256), (128, 128), (64, 64), (32, 32))
STEPS_PER_EPOCH = 60_000 // 256


def get_config():
    config = sibling(__file__, "default").get_config()
    config.data.name = "mnist"
    config.data.preprocessing = "dynamic_binarize"
    config.data.num_validation = 0
    config.model = ml_collections.ConfigDict(dict(
        kind="ladder",                            # ladder | hierarchical (bottom-up inference)
        variance="softplus",                      # softplus(raw) + 1e-5, as the LVAE code
        normalization="none",                     # or weight_norm (vaejax.models.weight_norm)
        latent_dims=LATENTS,
        hidden_sizes=HIDDEN,
        activation="leaky_relu",
        likelihood="bernoulli",
    ))
    config.objective.kind = "elbo"
    config.objective.beta_schedule = "linear"
    config.objective.warmup_steps = 200 * STEPS_PER_EPOCH
    config.train.batch_size = 256
    config.train.epochs = 2000
    config.train.checkpoint_every = 20
    config.train.keep_every = 100
    config.optimizer.learning_rate = 2e-4
    config.eval.iwae_samples = 5000
    return config


def get_sweep():
    """Seeds 0, 1, 2 of the configured model: one vmapped group."""
    return [{"seed": seed} for seed in (0, 1, 2)]
