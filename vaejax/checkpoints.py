"""Orbax checkpoints of a `TrainState`, one per saved epoch, the last few kept.

Layout: `<workdir>/checkpoints/<epoch>/`. Saves are synchronous and atomic (orbax writes
to a temporary folder and renames it), so a killed run leaves only whole checkpoints.
"""

from __future__ import annotations

import pathlib

import jax
import orbax.checkpoint as ocp


class Manager:
    """Saves and restores `TrainState`s (any pytree) keyed by epoch."""

    def __init__(self, workdir, *, keep: int = 3):
        self.directory = pathlib.Path(workdir).resolve() / "checkpoints"
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                 enable_async_checkpointing=False),
        )

    def latest_epoch(self) -> int | None:
        return self._manager.latest_step()

    def epochs(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, epoch: int, state) -> None:
        self._manager.save(epoch, args=ocp.args.StandardSave(state))
        self._manager.wait_until_finished()

    def restore(self, epoch: int, like):
        """Restores the checkpoint of `epoch` into the structure, shapes and dtypes of `like`."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        return self._manager.restore(epoch, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self._manager.close()
