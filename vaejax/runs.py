"""One way to load a run: `vaejax.load_run(workdir)` -> the model, its params, its config.

    model, params, config = vaejax.load_run("runs/default")
    q = model.posterior(params, x)           # x: one example of shape model.data_shape

Evaluation, figures and `reproduce` load runs through here too.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

from vaejax import checkpoints, records
from vaejax.program import Program, evaluation_params
from vaejax.data import Splits, load_splits


@dataclasses.dataclass
class LoadedRun:
    """A trained run. Unpacks as `model, params, config = load_run(...)`; the rest (the
    program, hyper, data splits and checkpoint epoch) is there for evaluation and figures."""

    model: Any
    params: Any
    config: Any
    program: Program
    hyper: dict
    splits: Splits
    epoch: int
    workdir: pathlib.Path

    def __iter__(self):
        return iter((self.model, self.params, self.config))


def load_run(workdir, *, epoch: int | None = None, config=None, log=print) -> LoadedRun:
    """The model, params (checkpoint of `epoch`, default the newest that restores: a
    damaged newer one is moved aside and named in the log) and config of a run.

    `config` replaces the recorded one (e.g. other eval settings); the model and its
    parameters always come from the record and the checkpoint.
    """
    workdir = pathlib.Path(workdir)
    config = records.run_config(workdir) if config is None else config
    splits = load_splits(config, log=log)
    program = Program.build(config, splits.image_shape, splits.train.num_examples, splits.train)
    splits = program.model_data(splits)
    manager = checkpoints.Manager(workdir)
    like = program.abstract_state()
    try:
        if epoch is None:  # the newest that restores; damaged ones are moved aside
            epoch, state = manager.restore_latest(like, log=log)
            if epoch is None:
                raise checkpoints.NoCheckpointError(
                    f"No checkpoint that restores in {manager.directory}: train first "
                    f"(vaejax train --workdir {workdir} --resume).")
        else:
            state = manager.restore(epoch, like)
    finally:
        manager.close()
    return LoadedRun(program.model, evaluation_params(state), config, program, program.hyper(config), splits,
                     epoch, workdir)
