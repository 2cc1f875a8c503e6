"""Training-step time of every objective against the plain IWAE bound at equal K.

The model and sizes of experiments/rainforth2018.py (784-200-200-50 tanh, batch 20,
M * K = 64 draws per example), on synthetic uint8 images: the time of a jitted scan of
`STEPS` optimizer steps, the objectives interleaved round by round so that all see the
same drift in the machine's speed; median over rounds, per step. beta-TCVAE and the ELBO's
estimators draw one z per example, so they are compared with the ELBO instead.

    python benchmarks/objectives.py          # the table, ~3 min on 2 CPU cores
"""
from __future__ import annotations

import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from vaejax import config as config_lib
from vaejax.program import Program

REPO = pathlib.Path(__file__).resolve().parents[1]
STEPS = 50
IMAGE_SHAPE = (28, 28, 1)

# name -> (config overrides, the baseline it is compared with)
OBJECTIVES = {
    "iwae K=64 (reparam)": (["objective.kind=iwae"], None),
    "iwae K=64, stl": (["objective.kind=iwae", "objective.gradient_estimator=stl"], "iwae K=64 (reparam)"),
    "iwae K=64, dreg": (["objective.kind=iwae", "objective.gradient_estimator=dreg"], "iwae K=64 (reparam)"),
    "miwae (8, 8)": (["objective.kind=miwae", "objective.num_groups=8", "objective.num_samples=8"],
                     "iwae K=64 (reparam)"),
    "miwae (8, 8), dreg": (["objective.kind=miwae", "objective.num_groups=8", "objective.num_samples=8",
                            "objective.gradient_estimator=dreg"], "iwae K=64 (reparam)"),
    "piwae (8, 8)": (["objective.kind=piwae", "objective.num_groups=8", "objective.num_samples=8"],
                     "iwae K=64 (reparam)"),
    "ciwae (0.05) K=64": (["objective.kind=ciwae", "objective.beta=0.05"], "iwae K=64 (reparam)"),
    "rws K=64": (["objective.kind=rws"], "iwae K=64 (reparam)"),
    "elbo (reparam)": (["objective.kind=elbo", "objective.num_samples=1"], None),
    "elbo, stl": (["objective.kind=elbo", "objective.num_samples=1", "objective.gradient_estimator=stl"],
                  "elbo (reparam)"),
    "tcvae (mws)": (["objective.kind=tcvae", "objective.num_samples=1"], "elbo (reparam)"),
    "tcvae (mss)": (["objective.kind=tcvae", "objective.num_samples=1", "objective.sampling=mss"],
                    "elbo (reparam)"),
    "dip_vae (ii)": (["objective.kind=dip_vae", "objective.num_samples=1", "objective.dip_type=ii",
                      "objective.lambda_d_factor=1.0"], "elbo (reparam)"),
    "annealed_vae": (["objective.kind=annealed_vae", "objective.num_samples=1"], "elbo (reparam)"),
}


def _epoch(overrides, images):
    config = config_lib.load_config(REPO / "experiments" / "rainforth2018.py", overrides)
    program = Program.build(config, IMAGE_SHAPE, images.shape[0])
    hyper = program.hyper(config)
    state = jax.jit(program.init_state)(hyper)
    epoch = jax.jit(program.train_epoch).lower(state, hyper, images, jnp.int32(0)).compile()

    def run():
        start = time.perf_counter()
        jax.block_until_ready(epoch(state, hyper, images, jnp.int32(0)))
        return time.perf_counter() - start

    return run, program.steps_per_epoch


def table(rounds: int = 5, log=print, names=None) -> str:
    """The markdown table: median ms per step of each objective and its ratio to its baseline."""
    names = list(names or OBJECTIVES)
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (20 * STEPS,) + IMAGE_SHAPE, np.uint8))
    runs = {}
    for name in names:
        runs[name] = _epoch(OBJECTIVES[name][0], images)
        log(f"  compiled {name}")
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names:
            run, steps = runs[name]
            times[name].append(run() / steps)
        log(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {1e3 * t[-1]:.1f} ms" for n, t in times.items()))
    median = {name: statistics.median(t) for name, t in times.items()}
    lines = ["| objective (batch 20) | ms per step | vs baseline |", "| --- | ---: | ---: |"]
    for name in names:
        baseline = OBJECTIVES[name][1]
        ratio = f"{median[name] / median[baseline]:.2f}x of {baseline}" if baseline in median else "baseline"
        lines.append(f"| {name} | {1e3 * median[name]:.1f} | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
