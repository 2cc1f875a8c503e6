"""The host loop for M >= 1 models: compile, epochs, divergence, metrics, checkpoints.

`vaejax train` runs it for one model (a group of one, unvmapped: the fastest program), and
`vaejax sweep` for a group of M same-shaped models vmapped into one program. Each member has
its own workdir, where the loop appends one `metrics.jsonl` line per epoch; the state (one
model's, or the group's stacked state) is checkpointed every `train.checkpoint_every` epochs
and at the end. A member whose loss turns NaN/Inf is written off (`diverged.json` in its
workdir, with the step) while the others go on; the loop stops when no member is left.

Records are written before the checkpoint of their epoch: a kill in between re-runs that
epoch on resume and `records.truncate_metrics` drops its lines, so metrics.jsonl never has
gaps or repeats.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import sys
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vaejax import checkpoints, records, trackers
from vaejax import metrics as metrics_lib
from vaejax.program import evaluation_params
from vaejax.progress import Progress, duration

# Metrics that measure the machine, not the model: excluded from reproducibility checks.
TIMING_KEYS = ("epoch_time", "examples_per_sec", "compile_time", "wall_time")


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or Inf; the last good checkpoint is kept."""


@dataclasses.dataclass
class EpochFunctions:
    """The jitted epoch and validation functions of one model (`num_members` None: state and
    hyper unstacked) or of a vmapped group of `num_members` (a leading member axis); the
    compiled epoch is kept so that later groups of the same shape reuse it, with the
    progress reporter its callback calls."""

    epoch: Callable
    validate: Callable
    progress: Progress
    num_members: int | None = None
    compiled_epoch: Any = None


def epoch_functions(program, *, num_members: int | None = None, out_shardings=None) -> EpochFunctions:
    """`program`'s epoch (state donated) and validation, jitted; vmapped over a leading
    member axis of state and hyper when `num_members` is given."""
    def validate(params, hyper, images):
        return metrics_lib.validation_metrics(program, params, hyper, images)

    progress = Progress(program.steps_per_epoch, program.batch_size)
    train_epoch = functools.partial(program.train_epoch, on_steps=progress,
                                    every=program.progress_every)
    kw = {} if out_shardings is None else {"out_shardings": out_shardings}
    if num_members is None:
        return EpochFunctions(jax.jit(train_epoch, donate_argnums=0), jax.jit(validate), progress)
    return EpochFunctions(
        jax.jit(jax.vmap(train_epoch, in_axes=(0, 0, None, None)), donate_argnums=0, **kw),
        jax.jit(jax.vmap(validate, in_axes=(0, 0, None)), **kw), progress, num_members)


def epoch_record(epoch, step, metrics, val_metrics, epoch_time, num_examples,
                 last_value_keys: Sequence[str]) -> dict:
    """One metrics.jsonl line: per-step metrics averaged over the epoch as `train/<name>`
    (settings in `last_value_keys`, like lr and beta, at their last step), validation as
    `val/<name>`, and train/neg_elbo = rate + distortion where the objective reports both.
    With skipped updates (`optimizer.skip_grad_norm`), `train/skipped` counts them and the
    averages are over the steps whose update was applied."""
    record = {"epoch": epoch, "step": step}
    applied = None
    if "skipped" in metrics:  # optimizer.skip_grad_norm: count them; average the others' metrics
        applied = np.asarray(metrics["skipped"]) == 0
        record["train/skipped"] = int(np.sum(~applied))
    for name, values in metrics.items():
        if name in last_value_keys:
            record[name] = float(values[-1])
        elif name != "skipped":
            values = np.asarray(values)
            kept = values[applied] if applied is not None and applied.any() else values
            record[f"train/{name}"] = float(np.mean(kept))
    if "train/rate" in record and "train/distortion" in record:
        record["train/neg_elbo"] = record["train/rate"] + record["train/distortion"]
    if val_metrics is not None:
        for name, value in val_metrics.items():
            record[f"val/{name}"] = float(value)
    record["epoch_time"] = epoch_time
    record["examples_per_sec"] = num_examples / epoch_time
    return record


def _divergence(loss, first_step, epoch, manager) -> tuple[int, str]:
    bad = ~np.isfinite(loss)
    step = first_step + int(np.argmax(bad)) + 1
    good = manager.latest_epoch()
    return step, (f"The loss became {loss[bad][0]} at step {step} (epoch {epoch + 1}). "
            + (f"The last good checkpoint (epoch {good}) is kept in {manager.directory}."
               if good is not None else "No checkpoint was written before it.")
            + " Lower optimizer.learning_rate or set optimizer.grad_clip_norm.")


def train_from_checkpoint(program, fresh, hyper, train_x, val_x, *, checkpoint_dir,
                          train_config, workdirs, place: Callable, shared: bool = True,
                          label: str = "train", log=print):
    """The run orchestration of `vaejax train` (one model) and of each sweep group: resume
    from the newest checkpoint in `checkpoint_dir` (`fresh`, a newly initialized state, is its
    template and the start when there is none), place the arrays on the devices, train to
    `train_config.epochs` writing `workdirs` (`fit`), and close the checkpoints.

    `place(program, state, hyper, train_x, val_x)` returns them placed where they train, with
    the epoch functions: `(program, fns, state, hyper, train_x, val_x)` (train shards each
    batch over the devices; a group, its members). `shared`: the checkpoints are one job's,
    written by process 0 (`checkpoints.Manager`). Returns (start_epoch, program, state, hyper,
    {member index: message} of the members that diverged).
    """
    manager = checkpoints.Manager(checkpoint_dir, keep=train_config.keep_checkpoints,
                                  keep_every=train_config.keep_every, shared=shared)
    try:
        start_epoch, state = manager.resume(fresh, label=label, log=log)
        program, fns, state, hyper, train_x, val_x = place(program, state, hyper, train_x, val_x)
        state, diverged = fit(program, fns, state, hyper, train_x, val_x, workdirs=workdirs,
                              manager=manager, start_epoch=start_epoch,
                              epochs=train_config.epochs,
                              checkpoint_every=train_config.checkpoint_every, label=label,
                              log=log)
    finally:
        manager.close()
    return start_epoch, program, state, hyper, diverged


def fit(program, fns: EpochFunctions, state, hyper, train_x, val_x, *,
        workdirs: Sequence[pathlib.Path], manager, start_epoch: int, epochs: int,
        checkpoint_every: int, label: str = "train", log=print):
    """Trains from `start_epoch` to `epochs`; returns (state, {member index: message} of the
    members that diverged).

    `workdirs` has one entry per member: one for a single model (`fns.num_members` None: its
    state and hyper unstacked), M for a group of `fns.num_members` = M (a leading member
    axis); a member whose entry is None (a finished run of a resumed group) is trained, not
    written.
    `manager` checkpoints `state` as it is (a `checkpoints.Manager`). Each written member's
    epochs also go to its trackers (`vaejax.trackers`: TensorBoard, W&B, MLflow).
    """
    stacked = fns.num_members is not None
    if len(workdirs) != (fns.num_members or 1):
        raise ValueError(f"{len(workdirs)} workdirs for {fns.num_members or 1} members")
    written = []
    for i, workdir in enumerate(workdirs):
        if workdir is None:
            continue
        try:
            records.truncate_metrics(workdir, start_epoch, log=log)
        except records.DamagedRecordError as error:
            if not stacked:
                raise
            records.mark_damaged(workdir, error, log=log, label=label)
            continue
        written.append(i)
    tracked = {i: trackers.open_run(workdirs[i]) for i in written}
    try:
        return _epochs(program, fns, state, hyper, train_x, val_x, workdirs=workdirs,
                       written=written, tracked=tracked, manager=manager, start_epoch=start_epoch,
                       epochs=epochs, checkpoint_every=checkpoint_every, label=label, log=log)
    finally:
        for run_trackers in tracked.values():
            run_trackers.close()


def _epochs(program, fns, state, hyper, train_x, val_x, *, workdirs, written, tracked, manager,
            start_epoch, epochs, checkpoint_every, label, log):
    """`fit`'s epochs, once its members' records are ready to append to (`written`, with
    their `tracked`); returns (state, {member index: message} of the members that diverged)."""
    stacked = fns.num_members is not None
    diverged: dict[int, str] = {}
    epoch_times: list[float] = []
    bar = _epoch_bar(label, start_epoch, epochs)
    for epoch in bar:
        compile_time = None
        if fns.compiled_epoch is None:
            compile_start = time.perf_counter()
            fns.compiled_epoch = fns.epoch.lower(state, hyper, train_x, jnp.int32(epoch)).compile()
            compile_time = time.perf_counter() - compile_start
        first_step = np.asarray(jax.device_get(state.step))
        fns.progress.start(label, epoch, epochs, log=log)
        start = time.perf_counter()
        state, metrics = fns.compiled_epoch(state, hyper, train_x, jnp.int32(epoch))
        metrics = jax.device_get(metrics)
        epoch_time = time.perf_counter() - start
        val = None if val_x is None else jax.device_get(
            fns.validate(evaluation_params(state), hyper, val_x))
        steps = np.asarray(jax.device_get(state.step))
        shown = _record_epoch(program, epoch, metrics, val, first_step, steps, epoch_time,
                              compile_time, workdirs=workdirs, written=written, tracked=tracked,
                              diverged=diverged, manager=manager, stacked=stacked, label=label,
                              log=log)
        if len(diverged) == len(written):
            break
        if (epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs:
            manager.save(epoch + 1, state)
        postfix = _postfix(shown)
        bar.set_postfix(postfix)
        epoch_times.append(epoch_time)
        members = len(written) - len(diverged) if stacked else None
        log(_epoch_line(label, epoch, epochs, members=members, epoch_time=epoch_time,
                        compile_time=compile_time, postfix=postfix,
                        seconds_left=time_left(epoch_times, epochs - epoch - 1)))
    bar.close()
    return state, diverged


def _epoch_bar(label: str, start_epoch: int, epochs: int):
    """The epochs `start_epoch` .. `epochs` - 1 to iterate over: a tqdm bar for people at a
    terminal, silent otherwise (logs get one line per epoch: Slurm, CI, nohup)."""
    from tqdm.auto import tqdm  # noqa: PLC0415  (progress output only)

    return tqdm(range(start_epoch, epochs), total=epochs, initial=start_epoch, unit="epoch",
                desc=label, dynamic_ncols=True,
                disable=start_epoch >= epochs or not sys.stderr.isatty())


def _record_epoch(program, epoch, metrics, val, first_step, steps, epoch_time, compile_time, *,
                  workdirs, written, tracked, diverged, manager, stacked, label, log) -> list[dict]:
    """Writes epoch `epoch` (0-based) of each written member not yet in `diverged`: its
    metrics.jsonl line and its trackers' or, where its loss turned NaN/Inf, its
    diverged.json, and the member joins `diverged`. Returns the records written.

    `metrics` (per step), `val`, `first_step` (before the epoch) and `steps` (after it) are
    host values, with a leading member axis when `stacked`; times in seconds (`compile_time`
    None: no compilation this epoch)."""
    num_examples = program.steps_per_epoch * program.batch_size
    last_value_keys = ("lr", *program.scalars)
    shown = []
    for i in written:
        if i in diverged:
            continue
        pick = (lambda v, i=i: v[i]) if stacked else (lambda v: v)
        member = jax.tree.map(pick, metrics)
        # a skipped update's loss may be NaN: only the applied ones count (skip_grad_norm)
        loss = np.where(member["skipped"] == 0, member["loss"], 0.0) if "skipped" in member else member["loss"]
        if not np.isfinite(loss).all():
            diverged[i] = _write_off(workdirs[i], loss, int(pick(first_step)), epoch,
                                     manager, label=label, log=log)
            continue
        record = epoch_record(epoch + 1, int(pick(steps)), member,
                              None if val is None else jax.tree.map(pick, val),
                              epoch_time, num_examples, last_value_keys)
        if compile_time is not None:
            record["compile_time"] = compile_time
        records.append_metrics(workdirs[i], record)
        tracked[i].epoch(record)
        shown.append(record)
    return shown


def _write_off(workdir, loss, first_step, epoch, manager, *, label, log) -> str:
    """Writes the diverged.json of the member of `workdir`, whose per-step `loss` of epoch
    `epoch` (0-based, from step `first_step`) turned NaN/Inf; returns its message."""
    step, message = _divergence(loss, first_step, epoch, manager)
    records.write_json(pathlib.Path(workdir) / records.DIVERGED, {
        "epoch": epoch + 1, "step": step, "message": message})
    log(f"{label}: {pathlib.Path(workdir).name}: diverged: {message}")
    return message


def _epoch_line(label, epoch, epochs, *, members, epoch_time, compile_time, postfix,
                seconds_left) -> str:
    """The log line of epoch `epoch` (0-based): `members` still training (None: one model),
    seconds taken, the progress numbers, and the time the training has left."""
    return (f"{label}: epoch {epoch + 1}/{epochs}"
            + (f", {members} members" if members is not None else "")
            + f", {epoch_time:.1f} s"
            + (f" (+{compile_time:.1f} s compile)" if compile_time is not None else "")
            + "".join(f", {k} {v}" for k, v in postfix.items())
            + (f", training done in {duration(seconds_left)}" if seconds_left > 0 else ""))


def time_left(epoch_times: list[float], epochs_left: int, window: int = 50) -> float:
    """Seconds the remaining epochs will take: the median of the last `window` epoch times
    (seconds each) times `epochs_left`. The median, not the mean: one epoch stretched by a
    paused or starved process (SIGSTOP, a busy machine) does not move the estimate for the
    hundreds still to come."""
    return float(np.median(epoch_times[-window:])) * epochs_left if epoch_times else 0.0


_SHOWN = {"train/loss": "loss", "train/rate": "rate", "train/distortion": "distortion",
          "val/neg_elbo": "val"}


def _postfix(shown: list[dict]) -> dict[str, str]:
    """The progress numbers: one model's losses, or the range over a group's members."""
    out = {}
    for key, name in _SHOWN.items():
        values = [r[key] for r in shown if key in r]
        if values:
            low, high = min(values), max(values)
            out[name] = f"{low:.2f}" if len(values) == 1 else f"{low:.2f}..{high:.2f}"
    return out
