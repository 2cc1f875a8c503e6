"""Sønderby et al. (2016), table 1's comparison on MNIST at one shared, small budget.

Bottom-up VAE and LVAE, 2 and 5 stochastic layers (64-32[-16-8-4] latents, 512-256[-128-64-32]
hidden units), each with and without KL warm-up; and with weight normalisation (WN, in place
of the paper's batch normalisation: `vaejax.models.weight_norm` says why) the VAE with and
without warm-up and the LVAE with it. Each row over 3 seeds as one vmapped group: 14 groups,
42 runs. Everything else is `sonderby2016.py` (the paper's model, batch 256, Adam 2e-4,
dynamically binarized MNIST), except the budget:

- 50 epochs (11,700 updates) instead of 2000;
- warm-up over the first 5 epochs, the paper's share (200 of 2000 epochs);
- the test NLL by IWAE K=1000 on the first 1,000 test images instead of K=5000 on all 10,000
  (the same images for every row, so rows compare pairwise).

    vaejax sweep experiments/sonderby2016_budget.py --workdir sweeps/sonderby2016_budget
    # on two cores, one shard each:
    taskset -c 0 vaejax sweep experiments/sonderby2016_budget.py \
        --workdir sweeps/sonderby2016_budget --shard 0/2 &
    taskset -c 1 vaejax sweep experiments/sonderby2016_budget.py \
        --workdir sweeps/sonderby2016_budget --shard 1/2 &

Rerunning a command resumes it.
"""

from vaejax.config import sibling

EPOCHS = 50
STEPS_PER_EPOCH = 60_000 // 256
DEPTHS = {  # layers -> (latent_dims, hidden_sizes), the first layers of the paper's widths
    5: ((64, 32, 16, 8, 4), ((512, 512), (256, 256), (128, 128), (64, 64), (32, 32))),
    2: ((64, 32), ((512, 512), (256, 256))),
}
SEEDS = (0, 1, 2)


def get_config():
    config = sibling(__file__, "sonderby2016").get_config()
    config.train.epochs = EPOCHS
    config.train.checkpoint_every = 5
    config.train.keep_every = 0
    config.objective.warmup_steps = EPOCHS // 10 * STEPS_PER_EPOCH
    config.eval.iwae_samples = 1000
    config.eval.num_test_examples = 1000
    return config


def _runs(kind, depth, *, warmup, weight_norm=False):
    latents, hidden = DEPTHS[depth]
    schedule = {} if warmup else {"objective.beta_schedule": "constant", "objective.warmup_steps": 0}
    norm = {"model.normalization": "weight_norm"} if weight_norm else {}
    return [{"model.kind": kind, "model.latent_dims": latents, "model.hidden_sizes": hidden,
             **schedule, **norm, "seed": seed} for seed in SEEDS]


def get_sweep():
    """Table 1's columns at each depth: VAE, VAE + warm-up, LVAE, LVAE + warm-up (warm-up
    first, 5 layers then 2, ladder then bottom-up, so that `--shard i/2` gives each shard one
    inference model's groups); then, with weight normalisation in place of the paper's batch
    normalisation, VAE + WN, VAE + WN + warm-up and LVAE + WN + warm-up."""
    runs = []
    for warmup in (True, False):
        for depth in DEPTHS:
            for kind in ("ladder", "hierarchical"):
                runs += _runs(kind, depth, warmup=warmup)
    # the weight-normalised rows, ordered so that `--shard i/2` splits their cost evenly
    runs += _runs("hierarchical", 5, warmup=False, weight_norm=True)
    runs += _runs("ladder", 5, warmup=True, weight_norm=True)
    runs += _runs("hierarchical", 2, warmup=False, weight_norm=True)
    runs += _runs("hierarchical", 5, warmup=True, weight_norm=True)
    runs += _runs("hierarchical", 2, warmup=True, weight_norm=True)
    runs += _runs("ladder", 2, warmup=True, weight_norm=True)
    return runs
