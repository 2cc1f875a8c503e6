"""`vaejax train`: one model in one workdir, trained by the shared host loop, then evaluated.

A workdir holds run.json (the resolved config and environment), metrics.jsonl, checkpoints/,
results.json and figures/. A single run is a group of one (`vaejax.loop.fit` with one
member), unvmapped, and with several devices each batch is sharded over them.

Several processes (`vaejax.distributed`: each runs the same command) train the one model
together: each batch is sharded over a mesh axis "data" of every process's devices. Every
process holds the same data and state (replicated); process 0 alone owns the workdir (its
lock, records, checkpoints, evaluation and figures), and the others read what it chose.
"""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import tempfile

import jax

from vaejax import distributed, evaluate, files, locking, loop, placement, records
from vaejax import config as config_lib
from vaejax import program as program_lib
from vaejax.program import Program, evaluation_params
from vaejax.data import load_splits


class WorkdirExistsError(FileExistsError):
    """The workdir holds a run and neither --resume nor --overwrite was given."""


def _holds_run(workdir: pathlib.Path) -> bool:
    return workdir.exists() and any(p.name != locking.LOCK_FILE for p in workdir.iterdir())


def check_workdir(workdir, *, resume: bool, overwrite: bool) -> None:
    """Fails early, before any work, if `workdir` holds a run and neither flag says what to do."""
    workdir = pathlib.Path(workdir)
    if _holds_run(workdir) and not (resume or overwrite):
        raise WorkdirExistsError(
            f"{workdir} already holds a run. Pass --resume to continue it, --overwrite to "
            f"start again (the old run is moved aside, not deleted), or choose another --workdir."
        )


@contextlib.contextmanager
def owned_workdir(workdir, *, resume: bool, overwrite: bool, what: str = "vaejax train",
                  log=print):
    """Creates `workdir` and holds its lock (`vaejax.locking`) for the `with` block; an
    existing run is kept unless --resume, or moved aside on --overwrite (under the lock).

    In a multi-process job every process checks the workdir before any writes, then process
    0 alone creates, locks (and moves aside) it; the others go on once it has, or raise its
    error."""
    workdir = pathlib.Path(workdir)
    check_workdir(workdir, resume=resume, overwrite=overwrite)
    distributed.barrier("workdir checked")  # every process has looked before process 0 writes
    with contextlib.ExitStack() as held:
        with distributed.primary_first("workdir"):
            if distributed.is_primary():
                workdir.mkdir(parents=True, exist_ok=True)
                held.enter_context(locking.hold(workdir, what))
                if overwrite and _holds_run(workdir):
                    aside = files.move_aside(workdir)
                    log(f"train: --overwrite: moved the previous run to {aside}")
                    workdir.mkdir(parents=True)
                    held.enter_context(locking.hold(workdir, what))
        yield workdir


def train(config, workdir, *, resume: bool = False, overwrite: bool = False,
          evaluate_at_end: bool = True, log=print) -> dict:
    """Trains `config` in `workdir` (checkpoints, metrics.jsonl, run.json), then evaluates.

    Returns the final epoch's metrics record (and `results` when evaluated). One of several
    processes of a job (`vaejax.distributed`, joined here first) trains its share; only
    process 0 logs and writes.
    """
    if distributed.initialize("vaejax train") and not distributed.is_primary():
        log = _quiet
    config_lib.validate(config)
    program_lib.check_new_run(config)
    check_workdir(workdir, resume=resume, overwrite=overwrite)  # before the data loads
    splits = load_splits(config, log=log)
    program = Program.build(config, splits.image_shape, splits.train.num_examples, splits.train)
    splits = program.model_data(splits)
    hyper = program.hyper(config)
    state = jax.jit(program.init_state)(hyper)  # a model that cannot be built fails here
    with owned_workdir(workdir, resume=resume, overwrite=overwrite, log=log) as workdir:
        with distributed.primary_first("run record"):
            if distributed.is_primary():
                records.write_run_record(workdir, config, data_source=splits.source)
        result = _train(config, workdir, program, splits, hyper, state,
                        evaluate_at_end=evaluate_at_end, log=log)
    distributed.finish()
    return result


def _quiet(*_):
    """The log of a process other than 0: process 0 says it all."""


def _train(config, workdir, program, splits, hyper, state, *, evaluate_at_end, log) -> dict:
    def place(program, state, hyper, train_x, val_x):
        program, state, hyper, train_x, val_x = placement.data_parallel(
            program, state, hyper, train_x, val_x, log=log)
        return program, loop.epoch_functions(program), state, hyper, train_x, val_x

    with contextlib.ExitStack() as scratch:
        records_dir = workdir
        if not distributed.is_primary():
            # Every process runs the same host loop on the same numbers (divergence included),
            # so all stop together; but only process 0's records go to the workdir: the others
            # keep theirs in a scratch folder, deleted at the end.
            records_dir = pathlib.Path(scratch.enter_context(tempfile.TemporaryDirectory(
                prefix=f"vaejax-process{jax.process_index()}-")))
            if (workdir / records.METRICS).exists():
                shutil.copy(workdir / records.METRICS, records_dir / records.METRICS)
        start_epoch, program, state, hyper, diverged = loop.train_from_checkpoint(
            program, state, hyper, splits.train,
            splits.validation if config.train.validate else None, checkpoint_dir=workdir,
            train_config=config.train, workdirs=[records_dir], place=place, log=log)
    if diverged:
        raise loop.TrainingDiverged(diverged[0])
    with distributed.primary_first("evaluation"):  # the others wait for process 0's
        if distributed.is_primary():
            return _evaluate(config, workdir, program, splits, state, hyper,
                             start_epoch=start_epoch, evaluate_at_end=evaluate_at_end, log=log)
    return dict(records.last_metrics(workdir) or {})


def _evaluate(config, workdir, program, splits, state, hyper, *, start_epoch, evaluate_at_end,
              log) -> dict:
    epochs = config.train.epochs
    result = dict(records.last_metrics(workdir) or {})
    if evaluate_at_end and start_epoch >= epochs and records.evaluated(workdir):
        log(f"train: {workdir} already finished {epochs} epochs and was evaluated; kept as is "
            f"(vaejax eval --workdir {workdir} evaluates again)")
        result["results"] = records.read_json(workdir / records.RESULTS)
    elif evaluate_at_end:
        missing = records.missing_figures(workdir)
        if start_epoch >= epochs and missing:
            log(f"train: {workdir} was evaluated, but figures {missing} are missing (a kill "
                "while they were drawn?): evaluating again")
        params = evaluation_params(state)
        if program.batch_sharding is not None:  # evaluate on the device that holds the test set
            if distributed.multiprocess():  # process 0 alone: its copy of the replicated state
                params, hyper = jax.tree.map(lambda x: x.addressable_data(0), (params, hyper))
            params, hyper = jax.device_put((params, hyper), splits.test.images.sharding)
        results = evaluate.test_metrics(program, params, hyper, splits.test, config.eval, log=log,
                                        partial_file=evaluate.partial_eval_file(workdir))
        result["results"] = evaluate.finish_member(workdir, program, params, hyper, results,
                                                   splits.test, config, log=log, grid=splits.grid)
    return result
