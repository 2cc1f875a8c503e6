"""Where the arrays of a run live when there are several devices: the one place that decides.

`vaejax train` shards each batch of one model over a mesh axis "data" of every device of the
job (`data_parallel`: the state and data replicated, XLA all-reducing the gradients); a sweep
group shards its members over a mesh axis "model" (`member_shardings`, `shard_members`: each
device trains whole members). One device: nothing moves.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import jax
import numpy as np

from vaejax import config as config_lib


def data_parallel(program, *arrays, devices=None, log=print):
    """Spreads training over all devices, of every process of the job: a mesh with one axis
    "data".

    Returns the program with its batches sharded over "data" and `arrays` (pytrees) placed
    replicated on the mesh: every process passes the same values (the same data, the same
    state) and keeps them whole, and the jitted epoch gives each device its share of each
    batch. With one device, or (one process and) a batch size the device count does not
    divide, returns everything unchanged. Every example keeps its own key, so results equal
    one device's up to the order of floating-point reductions.
    """
    devices = jax.devices() if devices is None else devices
    processes = len({d.process_index for d in devices})
    if len(devices) < 2:
        return (program, *arrays)
    if program.batch_size % len(devices):
        if processes > 1:
            raise config_lib.ConfigError(
                f"train.batch_size={program.batch_size} must be divisible by the {len(devices)} "
                f"devices of the {processes} processes, which share each batch.")
        log(f"train: batch size {program.batch_size} is not divisible by {len(devices)} "
            "devices; training on one device")
        return (program, *arrays)
    mesh = jax.sharding.Mesh(np.asarray(devices), ("data",))
    batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    log(f"train: each batch of {program.batch_size} is sharded over {len(devices)} devices"
        + (f" of {processes} processes" if processes > 1 else ""))
    placed = [None if a is None else replicate(a, replicated) for a in arrays]
    return (dataclasses.replace(program, batch_sharding=batch), *placed)


def replicate(tree, sharding):
    """`tree` placed whole on every device of `sharding`; across processes, each gives its
    own copy (they are equal: the same data, the same state), and nothing is sent between
    them."""
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def member_shardings(num_members: int, devices: Sequence[Any]):
    """(members sharded over "model", replicated) on gcd(members, devices) devices, or None."""
    n = math.gcd(num_members, len(devices))
    if n <= 1:
        return None
    mesh = jax.sharding.Mesh(np.asarray(devices[:n]), ("model",))
    P = jax.sharding.PartitionSpec
    return jax.sharding.NamedSharding(mesh, P("model")), jax.sharding.NamedSharding(mesh, P())


def shard_members(shardings, hypers, train_x, val_x, *, log, label, num_members):
    """`hypers` of the `num_members` members split over the devices along the member axis,
    and the data on every device (`shardings`: (members, replicated), `member_shardings`);
    returns (hypers, train_x, val_x)."""
    members, replicated = shardings
    hypers = jax.device_put(hypers, members)
    train_x = jax.device_put(train_x, replicated)
    val_x = None if val_x is None else jax.device_put(val_x, replicated)
    log(f"sweep: {label}: {num_members} members sharded over "
        f"{members.mesh.devices.size} devices (mesh axis 'model')")
    return hypers, train_x, val_x
