"""Sweeps: many models in one compiled program, many programs across machines.

A sweep file is an experiment file with `get_sweep()` beside `get_config()`:

    def get_sweep():
        return product(latent_dim=[2, 5, 10, 20, 50], beta=[0.25, 0.5, 1, 2, 4], seed=[0, 1, 2])

Runs whose configs differ only in traced scalars (seed, learning rate, beta) form a *group* that trains
as ONE jitted program, vmapped over its members. Each part in its own module:

    plan     the plan language (`product`, `zip_`), run names, groups and shards (`make_plan`)
    memory   a group's memory estimate and the --dry-run table (`describe_plan`)
    group    training a group (`train_group`) and running a sweep (`run_sweep`), on one
             device, several devices (a `Mesh` axis "model") or several processes
    results  results.csv, results.md and figures/ from the run workdirs (`report`)
    slurm    the sweep as one Slurm job array, a task per group (`vaejax.sweep.slurm.submit`;
             imported on demand, needs the `slurm` extra: submitit)

Workdir layout:

    <workdir>/sweep.json                 the plan: sweep file, base config, runs, groups
    <workdir>/runs/<run>/                one `vaejax train` workdir per run (run.json,
                                         metrics.jsonl, checkpoints/, results.json)
    <workdir>/groups/<group>/            group.json and checkpoints/ of the stacked state
    <workdir>/results.csv, results.md    one row per run (`report`)
    <workdir>/figures/                   rate_distortion, nll_vs_latent_dim, active_units_vs_beta,
                                         kl_per_unit, nll_by_run

A run is finished when its results.json exists (or diverged.json: its loss became NaN);
a finished run is never trained again, and an unfinished group resumes from its latest
checkpoint. `--shard i/n` gives process i every n-th group in plan order, so independent
processes split a sweep with no coordinator; `report` merges whatever run workdirs exist.

Note: the function `report` shadows the submodule of the same name as an attribute of this
package; reach the module with `from vaejax.sweep.results import ...`.
"""

from vaejax.placement import member_shardings
from vaejax.sweep.group import run_sweep
from vaejax.sweep.group import train_group
from vaejax.sweep.memory import describe_plan
from vaejax.sweep.memory import memory_estimate
from vaejax.sweep.plan import Group
from vaejax.sweep.plan import Plan
from vaejax.sweep.plan import Run
from vaejax.sweep.plan import group_runs
from vaejax.sweep.plan import make_plan
from vaejax.sweep.plan import parse_shard
from vaejax.sweep.plan import process_shard
from vaejax.sweep.plan import product
from vaejax.sweep.plan import shard_groups
from vaejax.sweep.plan import zip_
from vaejax.sweep.results import FIGURES
from vaejax.sweep.results import collect
from vaejax.sweep.results import report

__all__ = [
    "FIGURES",
    "Group",
    "Plan",
    "Run",
    "collect",
    "describe_plan",
    "group_runs",
    "make_plan",
    "member_shardings",
    "memory_estimate",
    "parse_shard",
    "process_shard",
    "product",
    "report",
    "run_sweep",
    "shard_groups",
    "train_group",
    "zip_",
]
