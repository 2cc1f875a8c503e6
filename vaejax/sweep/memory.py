"""Memory: what a group needs on its device, and the --dry-run table that shows it.

`memory_estimate` asks XLA: the stacked train state of the group, and the temporaries of
one training step compiled (not run) for it. `describe_plan` is the text of
`vaejax sweep --dry-run`: the runs and groups of a shard with each group's estimate.
"""

from __future__ import annotations

import json
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vaejax import config as config_lib
from vaejax import data as data_lib
from vaejax.program import Program, run_keys
from vaejax.sweep.plan import Group, Plan, _finished, _group_key

# Activation memory: bytes per float x (forward value, its gradient, pre-activation, slack).


def memory_estimate(config, image_shape: Sequence[int], num_members: int) -> dict:
    """Bytes a group of `num_members` runs of `config` needs while training, as XLA counts
    them for one compiled (not run) training step of the vmapped group:

        params_bytes      = the stacked TrainState: params, optimizer state and step, x M
        activations_bytes = XLA's temporaries of the step (forward and backward values)

    Any model of the protocol works, since nothing is read from its layers. Compiling takes
    seconds per group shape. Not counted: the uint8 images (on the device once, shared).
    """
    shapes_only = data_lib.Examples(np.full((2, *image_shape), 128, np.uint8))  # no data here
    program = Program.build(config, image_shape, config.train.batch_size, shapes_only)
    hyper = jax.tree.map(lambda a: jax.ShapeDtypeStruct((num_members,) + a.shape, a.dtype),
                         program.hyper(config))
    state = jax.eval_shape(jax.vmap(program.init_state), hyper)
    keys = jax.eval_shape(jax.vmap(run_keys), hyper["seed"])
    batch = data_lib.Examples(
        jax.ShapeDtypeStruct((config.train.batch_size, *image_shape), jnp.uint8),
        jax.ShapeDtypeStruct((config.train.batch_size,), jnp.int32) if program.conditioning else None)
    step = jax.jit(jax.vmap(program.train_step, in_axes=(0, 0, None, 0)), donate_argnums=0)
    stats = step.lower(state, hyper, batch, keys).compile().memory_analysis()
    num_params = sum(math.prod(p.shape[1:]) for p in jax.tree.leaves(state.params))
    params_bytes = sum(math.prod(a.shape) * a.dtype.itemsize for a in jax.tree.leaves(state))
    activations_bytes = int(stats.temp_size_in_bytes)
    return {
        "members": num_members,
        "params_per_member": num_params,
        "params_bytes": params_bytes,
        "activations_bytes": activations_bytes,
        "total_bytes": params_bytes + activations_bytes,
    }


def _mb(num_bytes) -> float:
    return num_bytes / 2**20


def describe_plan(plan: Plan, shard_groups_: Sequence[Group], shard: str, sweep_dir=None,
                  log=None) -> str:
    """The --dry-run text: runs, groups, members and the memory estimate of each group.

    Groups that differ only in `program.vmapped_keys` and have as many members compile to the
    same step, so each distinct shape is compiled once (`plan._group_key`); `log`, if given,
    gets each line as soon as it is known, since compiling a large model takes a while.
    """
    lines = []

    def emit(line):
        lines.append(line)
        if log is not None:
            log(line)

    emit(f"sweep {plan.sweep_file}: {len(plan.runs)} runs in {len(plan.groups)} groups "
         f"(max_group_size {plan.max_group_size}); shard {shard}: "
         f"{len(shard_groups_)} groups, {sum(len(g.runs) for g in shard_groups_)} runs")
    keys = [(_group_key(g.config), len(g.runs)) for g in shard_groups_]
    emit(f"memory: compiling one training step for each of the {len(set(keys))} distinct "
         "group shapes")
    shapes, estimates = {}, {}
    for group in shard_groups_:
        data = json.dumps(config_lib.to_dict(group.config.data), sort_keys=True)
        if data not in shapes:
            emit(f"memory: loading data.name={group.config.data.name!r} for its example shape")
            shapes[data] = data_lib.example_shape(
                group.config.data, search_path=group.config.get("experiment_dir") or None)
    emit(f"{'group':<40} {'members':>7} {'params/member':>13} "
         f"{'params+adam MB':>14} {'activations MB':>14} {'total MB':>9}")
    for group, key in zip(shard_groups_, keys):
        if key not in estimates:
            data = json.dumps(config_lib.to_dict(group.config.data), sort_keys=True)
            estimates[key] = memory_estimate(group.config, shapes[data], len(group.runs))
        est = estimates[key]
        emit(f"{group.id:<40} {len(group.runs):>7} {est['params_per_member']:>13,} "
             f"{_mb(est['params_bytes']):>14.1f} {_mb(est['activations_bytes']):>14.1f} "
             f"{_mb(est['total_bytes']):>9.1f}")
        for run in group.runs:
            state = ""
            if sweep_dir is not None and _finished(run.workdir(sweep_dir)):
                state = "  (finished)"
            emit(f"    {run.name}{state}")
    emit("memory per group = the stacked train state (params, optimizer state) + XLA's "
         "temporaries of one compiled training step "
         "(see sweep.memory_estimate); the uint8 data is shared.")
    return "\n".join(lines)
