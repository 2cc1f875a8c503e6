"""Locatello et al. (2019), "Challenging common assumptions in the unsupervised learning of
disentangled representations": the unsupervised study on dSprites, as disentanglement_lib's
`config/unsupervised_study_v1` defines it.

Six methods, each at six strengths (`get_sweep`), every run with seeds as members of one
vmapped group:

    beta-VAE     objective.kind=elbo          beta        1, 2, 4, 6, 8, 16
    beta-TCVAE   objective.kind=tcvae         beta        1, 2, 4, 6, 8, 10
    FactorVAE    objective.kind=factor_vae    gamma       10, 20, 30, 40, 50, 100
    DIP-VAE-I    objective.kind=dip_vae "i"   lambda_od   1, 2, 5, 10, 20, 50 (lambda_d_factor 10)
    DIP-VAE-II   objective.kind=dip_vae "ii"  lambda_od   1, 2, 5, 10, 20, 50 (lambda_d_factor 1)
    AnnealedVAE  objective.kind=annealed_vae  capacity_max 5, 10, 25, 50, 75, 100 (gamma 1000,
                                                           100,000 steps)

The model is disentanglement_lib's conv encoder and decoder (`model.kind="beta_vae_conv"`),
10 latents, Bernoulli likelihood, Adam at 1e-4 (b1 0.9, b2 0.999, eps 1e-8), batch 64, on
dSprites (re-rendered on the published factor grid, `vaejax.data.dsprites`); the paper trains
300,000 steps: 29 epochs of the 663,552 training images here (300,672 steps). Every run is
scored by every disentanglement metric at the end (`eval.disentanglement`).

    vaejax sweep experiments/locatello2019.py --workdir sweeps/locatello2019          # full study
    vaejax sweep experiments/locatello2019.py --workdir sweeps/locatello2019_cpu \
        --config.train.epochs=1 --config.data.num_train=65536 \
        --config.eval.disentanglement_examples=2000 --max-group-size 3   # the CPU budget

The metrics score images from the whole factor grid whatever part of it trains; the first N
training images are a uniform sample of the grid (`vaejax.data.dsprites`). The CPU budget
(docs/locatello2019/results.md) trains 1,024 steps per model and scores each metric on 2,000
points instead of 10,000: on CPU the scoring costs more than the training, most of it
encoding the BetaVAE and FactorVAE scores' batches of 64 images (the page gives the measured
minutes). Test −ELBO is computed on the first 10,000 test images.

Seeds: `SEEDS` (3 here; the paper has 50 per setting). Rerunning a command resumes it.
"""

import ml_collections

from vaejax.config import sibling

SEEDS = (0, 1, 2)
STRENGTHS = {  # method -> (objective.kind, the swept setting, its values, fixed settings)
    "beta_vae": ("elbo", "beta", (1.0, 2.0, 4.0, 6.0, 8.0, 16.0), {}),
    "beta_tcvae": ("tcvae", "beta", (1.0, 2.0, 4.0, 6.0, 8.0, 10.0), {}),
    "factor_vae": ("factor_vae", "gamma", (10.0, 20.0, 30.0, 40.0, 50.0, 100.0), {}),
    "dip_vae_i": ("dip_vae", "lambda_od", (1.0, 2.0, 5.0, 10.0, 20.0, 50.0),
                  {"dip_type": "i", "lambda_d_factor": 10.0}),
    "dip_vae_ii": ("dip_vae", "lambda_od", (1.0, 2.0, 5.0, 10.0, 20.0, 50.0),
                   {"dip_type": "ii", "lambda_d_factor": 1.0}),
    "annealed_vae": ("annealed_vae", "capacity_max", (5.0, 10.0, 25.0, 50.0, 75.0, 100.0),
                     {"capacity_weight": 1000.0, "capacity_steps": 100_000}),
}


def get_config():
    config = sibling(__file__, "default").get_config()
    config.data.name = "dsprites"
    config.data.preprocessing = "scale"           # the images are 0 or 255: 0 or 1
    config.data.num_validation = 0
    config.model = ml_collections.ConfigDict(dict(kind="beta_vae_conv", latent_dim=10,
                                                  likelihood="bernoulli"))
    config.objective.kind = "elbo"
    config.train.batch_size = 64
    config.train.epochs = 29
    config.train.validate = False
    config.optimizer.learning_rate = 1e-4
    config.optimizer.eps = 1e-8
    config.eval.iwae_samples = 0
    config.eval.num_test_examples = 10_000        # test ELBO on the first 10,000 (a uniform sample)
    config.eval.disentanglement = True
    return config


def get_sweep():
    """Every method at every strength, each seed of `SEEDS`: 6 x 6 x len(SEEDS) runs."""
    runs = []
    for kind, name, values, fixed in STRENGTHS.values():
        for value in values:
            for seed in SEEDS:
                runs.append({"objective.kind": kind, f"objective.{name}": value, "seed": seed,
                             **{f"objective.{k}": v for k, v in fixed.items()}})
    return runs
