"""Latent size x KL weight on MNIST: 5 latent dims x 5 betas x 3 seeds = 75 runs.

    export VAEJAX_MNIST_DIR=/path/to/mnist     # the four IDX files (or TFDS finds mnist)
    vaejax sweep experiments/latent_kl_sweep.py --workdir sweeps/latent_kl --dry-run
    vaejax sweep experiments/latent_kl_sweep.py --workdir sweeps/latent_kl
    vaejax sweep-report sweeps/latent_kl       # results.md, results.csv, figures/

The 15 runs of each latent dim (beta x seed) train as one vmapped program: 5 groups. On a
SLURM array of 5 tasks, `--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT` gives each
task one group; rerunning the same command resumes and skips finished runs.

How long: hours on 2 CPU cores, estimated from `make run`'s measured time (README) for the
same model; the whole sweep has only been dry-run. `--config.eval.iwae_samples=25` cuts the
IWAE part of evaluation about tenfold.
"""

from vaejax.config import sibling
from vaejax.sweep import product


def get_config():
    config = sibling(__file__, "default").get_config()
    config.data.name = "mnist"
    return config


def get_sweep():
    return product(latent_dim=[2, 5, 10, 20, 50], beta=[0.25, 0.5, 1, 2, 4], seed=[0, 1, 2])
