"""Training-step time of each model family against the one-layer MLP VAE, and the cost of
IWAE evaluation, at the settings of experiments/model_families.sh (ELBO, batch 100).

Each family's own experiment file (its paper's architecture), on synthetic uint8 images with
labels: the time of a jitted scan of `STEPS` optimizer steps, the families interleaved round
by round so that all see the same drift in the machine's speed; median over rounds, per step.
The evaluation column is the time of the IWAE log-likelihood of 100 examples with K=500,
per example (x 10 for the K=5000 of the README's table).

    python benchmarks/model_families.py          # the table, ~3 min on 2 CPU cores
    python benchmarks/model_families.py "LVAE, 5 layers (64-32-16-8-4)"   # one row and the VAE
"""
from __future__ import annotations

import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from vaejax import config as config_lib
from vaejax import data as data_lib
from vaejax import evaluate
from vaejax.program import Program

REPO = pathlib.Path(__file__).resolve().parents[1]
STEPS = 50
BATCH = 100
IMAGE_SHAPE = (28, 28, 1)
COMMON = [f"train.batch_size={BATCH}", "objective.kind=elbo", "objective.num_samples=1",
          "objective.beta_schedule=constant"]
# name -> experiment file, or (experiment file, its overrides)
FAMILIES = {
    "VAE (mlp 200-200-50)": "iwae_mnist.py",
    "VampPrior (K=500)": "vampprior.py",
    "two layers (100-50)": "iwae_two_layer.py",
    "5 layers, bottom-up (64-32-16-8-4)": ("sonderby2016.py", ["model.kind=hierarchical"]),
    "LVAE, 5 layers (64-32-16-8-4)": "sonderby2016.py",
    "IAF (2 steps)": "iaf.py",
    "conditional (500-500-20)": "cvae.py",
}
BASELINE = "VAE (mlp 200-200-50)"


def _runs(experiment, examples):
    experiment, overrides = (experiment, []) if isinstance(experiment, str) else experiment
    config = config_lib.load_config(REPO / "experiments" / experiment, COMMON + overrides)
    program = Program.build(config, IMAGE_SHAPE, examples.num_examples)
    hyper = program.hyper(config)
    state = jax.jit(program.init_state)(hyper)
    data = data_lib.Examples(examples.images, examples.labels if program.conditioning else None)
    epoch = jax.jit(program.train_epoch).lower(state, hyper, data, jnp.int32(0)).compile()

    def train():
        start = time.perf_counter()
        jax.block_until_ready(epoch(state, hyper, data, jnp.int32(0)))
        return (time.perf_counter() - start) / program.steps_per_epoch

    test = data.take(slice(0, 100))

    def iwae():
        start = time.perf_counter()
        evaluate.iwae_log_likelihood(program.model, state.params, test, jax.random.key(0),
                                     data_shape=program.data_shape, preprocessing=program.preprocessing,
                                     num_samples=500, chunk_size=250, batch_size=100)
        return (time.perf_counter() - start) / 100

    iwae()  # compile
    return train, iwae


def table(rounds: int = 5, log=print, families=None) -> str:
    """The markdown table: median ms per training step and per IWAE(500) example, and the
    ratio of each family's step to the VAE's. `families`: the names of FAMILIES to time (all
    by default; the VAE is always timed)."""
    chosen = {name: FAMILIES[name] for name in FAMILIES
              if families is None or name in families or name == BASELINE}
    rng = np.random.default_rng(0)
    examples = data_lib.Examples(
        jnp.asarray(rng.integers(0, 256, (BATCH * STEPS,) + IMAGE_SHAPE, np.uint8)),
        jnp.asarray(rng.integers(0, 10, (BATCH * STEPS,), np.int32)))
    runs = {}
    for name, experiment in chosen.items():
        runs[name] = _runs(experiment, examples)
        log(f"  compiled {name}")
    times = {name: ([], []) for name in chosen}
    for r in range(rounds):
        for name, (train, iwae) in runs.items():
            times[name][0].append(train())
            times[name][1].append(iwae())
        log(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {1e3 * t[0][-1]:.1f} ms" for n, t in times.items()))
    step = {name: statistics.median(t[0]) for name, t in times.items()}
    lines = [f"| model (ELBO, batch {BATCH}) | ms per step | vs VAE | ms per example, IWAE K=500 |",
             "| --- | ---: | ---: | ---: |"]
    for name, (_, iwae_times) in times.items():
        lines.append(f"| {name} | {1e3 * step[name]:.1f} | {step[name] / step[BASELINE]:.2f}x | "
                     f"{1e3 * statistics.median(iwae_times):.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(table(families=sys.argv[1:] or None))
