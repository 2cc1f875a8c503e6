"""What in-epoch progress output costs: the MLP epoch (experiments/bench_mlp.py, 390 steps)
with the progress callback every 100 steps (the default), every 10, and without it.

The three programs' epochs are interleaved, round after round, so that all see the same drift
in the machine's speed; the table gives each one's median and the median over rounds of its
epoch time divided by that round's "none" epoch.

    python benchmarks/progress.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp

from vaejax import config as config_lib
from vaejax import progress as progress_lib
from vaejax.data import load_splits
from vaejax.program import Program

REPO = pathlib.Path(__file__).resolve().parents[1]
SETTINGS = {"none": 0, "every 100 steps (default)": 100, "every 10 steps": 10}


def table(rounds: int = 7, log=print) -> str:
    config = config_lib.load_config(REPO / "experiments/bench_mlp.py")
    splits = load_splits(config, log=lambda *_: None)
    program = Program.build(config, splits.train.images.shape[1:], splits.train.images.shape[0])
    hyper = program.hyper(config)
    progress = progress_lib.Progress(program.steps_per_epoch, program.batch_size)  # prints nothing:
    progress.start("bench", 0, 1, log=lambda *_: None)                    # interval 30 s
    epochs, states = {}, {}
    for name, every in SETTINGS.items():
        fn = jax.jit(lambda s, h, x, e, every=every: program.train_epoch(
            s, h, x, e, on_steps=progress, every=every), donate_argnums=0)
        states[name] = jax.jit(program.init_state)(hyper)
        epochs[name] = fn.lower(states[name], hyper, splits.train, jnp.int32(0)).compile()
    times = {name: [] for name in SETTINGS}
    for r in range(rounds):
        for name in SETTINGS:
            start = time.perf_counter()
            states[name], _ = epochs[name](states[name], hyper, splits.train, jnp.int32(r))
            jax.block_until_ready(states[name])
            times[name].append(time.perf_counter() - start)
        log(f"  round {r + 1}: " + ", ".join(f"{n} {t[-1]:.3f} s" for n, t in times.items()))
    rows = ["| progress callback | MLP epoch (median) | vs none (median of per-round ratios) |",
            "| --- | ---: | ---: |"]
    for name in SETTINGS:
        ratio = statistics.median(t / b for t, b in zip(times[name], times["none"]))
        rows.append(f"| {name} | {statistics.median(times[name]):.3f} s | "
                    f"{100 * (ratio - 1):+.1f}% |")
    return (f"In-epoch progress (benchmarks/progress.py): bench_mlp epoch, {program.steps_per_epoch} "
            f"steps, {rounds} interleaved rounds.\n\n" + "\n".join(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    print(table(parser.parse_args().rounds))
