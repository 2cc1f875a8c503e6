"""Tomczak & Welling (2018), "VAE with a VampPrior": the one-layer VAE on dynamically binarized MNIST.

    vaejax train --config experiments/vampprior.py --workdir runs/vampprior
    vaejax train --config experiments/vampprior.py --workdir runs/vampprior_2000 --config.train.epochs=2000

The paper's setting (github.com/jmtomczak/vae_vampprior, experiment.py and utils/): latent 40,
encoder and decoder 300-300 (gated dense layers there, plain SiLU layers here: see
vaejax/models/vampprior.py), K = 500 pseudo-inputs initialised N(0.05, 0.01^2) and read
through hardtanh(0, 1), Bernoulli decoder, ELBO with one sample, batch 100, Adam lr 5e-4
(theirs normalizes each parameter's gradient to unit norm first; vaejax's Adam does not),
50,000 training and 10,000 validation images, up to 2000 epochs with early stopping after 50
epochs without improvement (vaejax has none: `config.train.epochs` is a budget you set), and
test NLL by importance sampling with 5000 samples (`config.eval.iwae_samples`, as here).

KL warm-up: the paper raises beta linearly from 0 to 1 over the first 100 epochs. vaejax counts
warm-up in steps: 100 epochs * 50,000 images / batch 100 = 50,000 steps (change `warmup_steps`
with the batch size or the number of training images). The 200 epochs here cover the warm-up
and 100 epochs at beta = 1.

Reference: the paper reports a test NLL of 85.57 nats for the one-layer VAE with the VampPrior
on dynamically binarized MNIST (as quoted by Pythae's reproducibility table).
"""

import ml_collections

from vaejax.config import sibling

BATCH_SIZE = 100
NUM_TRAIN = 50_000     # MNIST's 60,000 training images less the 10,000 for validation
WARMUP_EPOCHS = 100


def get_config():
    config = sibling(__file__, "iwae_mnist").get_config()
    config.data.name = "mnist"
    config.data.preprocessing = "dynamic_binarize"
    config.data.num_validation = 60_000 - NUM_TRAIN
    config.model = ml_collections.ConfigDict(dict(
        kind="vampprior", latent_dim=40, hidden_sizes=(300, 300), activation="silu",
        num_pseudo_inputs=500, pseudo_input_init="random", pseudo_input_mean=0.05,
        pseudo_input_std=0.01, likelihood="bernoulli"))
    config.objective.kind = "elbo"
    config.objective.num_samples = 1
    config.objective.beta = 1.0
    config.objective.beta_schedule = "linear"
    config.objective.warmup_steps = WARMUP_EPOCHS * NUM_TRAIN // BATCH_SIZE  # 50,000
    config.train.batch_size = BATCH_SIZE
    config.train.epochs = 200
    config.optimizer.learning_rate = 5e-4
    config.optimizer.b2 = 0.999
    config.optimizer.eps = 1e-8
    config.eval.iwae_samples = 5000
    return config
