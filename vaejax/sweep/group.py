"""Training a group as one vmapped program, and running a sweep group by group.

A group's members share shapes and a `Program`, so they train as ONE jitted program:
`jax.vmap(program.train_epoch, in_axes=(0, 0, None, None))` over the stacked `TrainState`s
and hyperparameters of its members, run by the same host loop as `vaejax train`
(`vaejax.loop.fit`). The group's stacked state is checkpointed in
<workdir>/groups/<group>/; each member writes its own `vaejax train` workdir in
<workdir>/runs/<run>/ (run.json, metrics.jsonl, its slice of the final checkpoint,
results.json). A member whose loss becomes NaN writes diverged.json; the others continue.

A finished run (results.json or diverged.json) is never trained, evaluated or written again.
An unfinished group resumes from its latest checkpoint, and since keys fold in the step, a
resumed group equals an uninterrupted one bit for bit.

Evaluation is vmapped over the members too (`evaluate.test_metrics` with stacked params). A
member's numbers equal `vaejax train` of its config to float rounding, not bit for bit: XLA's
batched matmuls round differently (on CPU, relative differences of ~4e-7 in metrics.jsonl).
With several local devices, a group's member axis is sharded over a `Mesh` axis "model"
of gcd(members, devices) devices; results equal one device's within float tolerance.
Several processes of one job (`vaejax.distributed`) each train their own share of the groups
on their own devices (`plan.process_shard`), with checkpoints of their own
(`checkpoints.Manager(shared=False)`); no computation spans processes. `run_sweep` ends with
`vaejax.sweep.results.report`, written by process 0 once every process is done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from vaejax import checkpoints, distributed, evaluate, files, locking, loop, placement, records
from vaejax import config as config_lib
from vaejax.data import Splits, load_splits
from vaejax.program import Program, evaluation_params
from vaejax.sweep.memory import describe_plan
from vaejax.sweep.plan import (
    SWEEP_RECORD,
    Group,
    Run,
    _finished,
    _group_key,
    make_plan,
    parse_shard,
    process_shard,
    shard_groups,
)
from vaejax.sweep.results import report

GROUP_RECORD = "group.json"


# -- training a group --------------------------------------------------------------------

@dataclasses.dataclass
class _Compiled:
    """A group shape's program, vmapped functions and member shardings, built once per
    shape and reused by every group of that shape in this process."""

    program: Program
    init: Callable
    fns: loop.EpochFunctions
    shardings: Any


def _group_functions(program, num_members: int, devices) -> _Compiled:
    """The vmapped, jitted init / epoch / validate of a group (state donated)."""
    shardings = placement.member_shardings(num_members, devices)
    members = None if shardings is None else shardings[0]
    init = jax.jit(jax.vmap(program.init_state),
                   **({} if members is None else {"out_shardings": members}))
    fns = loop.epoch_functions(program, num_members=num_members, out_shardings=members)
    return _Compiled(program, init, fns, shardings)


class _SplitsCache:
    """The data of the last config seen: consecutive groups usually share it."""

    def __init__(self, log):
        self.key, self.splits, self.log = None, None, log

    def get(self, config) -> Splits:
        key = json.dumps(config_lib.to_dict(config.data), sort_keys=True)
        if key != self.key:
            self.splits = None
            self.splits = load_splits(config, log=self.log)
            self.key = key
        return self.splits


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _prepare_group_dir(group: Group, sweep_dir, log) -> pathlib.Path:
    """group.json names the members; a group dir with other members is moved aside."""
    group_dir = group.workdir(sweep_dir)
    record = {"id": group.id, "runs": [r.name for r in group.runs],
              "config": config_lib.to_dict(group.config)}
    path = group_dir / GROUP_RECORD
    if path.exists() and records.read_json(path)["runs"] != record["runs"]:
        aside = files.move_aside(group_dir)
        log(f"sweep: group {group.id} had other members; its checkpoints moved to {aside}")
    group_dir.mkdir(parents=True, exist_ok=True)
    records.write_json(path, record)
    return group_dir


def _adopt_renamed_group_dir(group: Group, sweep_dir, log) -> None:
    """A group whose id changed (vaejax names groups differently than when the sweep began)
    takes over the dir of its old id, checkpoints and all, when that dir's group.json names
    exactly its members and no process holds it: renamed, not copied or restarted."""
    groups_dir = pathlib.Path(sweep_dir) / "groups"
    if group.workdir(sweep_dir).exists() or not groups_dir.is_dir():
        return
    members = [r.name for r in group.runs]
    for record_path in sorted(groups_dir.glob(f"*/{GROUP_RECORD}")):
        old_dir = record_path.parent
        try:
            if records.read_json(record_path)["runs"] != members:
                continue
        except (records.DamagedRecordError, KeyError, TypeError):
            continue
        try:
            with locking.hold(old_dir, f"vaejax sweep (renaming group {old_dir.name})"):
                os.rename(old_dir, group.workdir(sweep_dir))
        except locking.DirectoryLockedError:
            return  # in use under its old id: this group starts its own dir
        log(f"sweep: group {group.id} was named {old_dir.name} when its checkpoints were "
            "written; its dir is renamed")
        return


def _start_run(run: Run, sweep_dir, group: Group, data_source: str) -> pathlib.Path:
    run_dir = run.workdir(sweep_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    records.write_run_record(run_dir, run.config, data_source=data_source)
    record = records.read_run_record(run_dir)
    record["sweep"] = {"workdir": str(pathlib.Path(sweep_dir).resolve()), "run": run.name,
                       "group": group.id, "overrides": run.overrides,
                       "members": [r.name for r in group.runs]}
    records.write_json(run_dir / records.RUN_RECORD, record)
    return run_dir


def train_group(group: Group, sweep_dir, *, splits: Splits, devices=None,
                compiled: dict | None = None, log=print, label: str = "") -> list[str]:
    """Trains the members of `group` as one vmapped program (the host loop of `vaejax.loop`,
    as for a single run), then evaluates each unfinished member into its run workdir.
    Returns the names of the runs it finished."""
    sweep_dir = pathlib.Path(sweep_dir)
    devices = list(jax.local_devices() if devices is None else devices)
    config = group.config
    label = label or group.id
    pending = [i for i, run in enumerate(group.runs) if not _finished(run.workdir(sweep_dir))]
    if not pending:
        return []
    key = (_group_key(config), len(group.runs), len(devices))
    compiled = {} if compiled is None else compiled
    if key not in compiled:
        program = Program.build(config, splits.image_shape, splits.train.num_examples, splits.train)
        compiled[key] = _group_functions(program, len(group.runs), devices)
    group_fns = compiled[key]
    _adopt_renamed_group_dir(group, sweep_dir, log)
    # One process owns a group at a time: its group dir and its unfinished runs' workdirs.
    with contextlib.ExitStack() as owned:
        for directory in [group.workdir(sweep_dir)] + [group.runs[i].workdir(sweep_dir)
                                                        for i in pending]:
            directory.mkdir(parents=True, exist_ok=True)
            owned.enter_context(locking.hold(directory, f"vaejax sweep (group {group.id})"))
        group_dir = _prepare_group_dir(group, sweep_dir, log)
        if not (group_dir / locking.LOCK_FILE).exists():  # moved aside: hold the new one
            owned.enter_context(locking.hold(group_dir, f"vaejax sweep (group {group.id})"))
        trained = _train_members(group, sweep_dir, group_dir, pending, group_fns, splits,
                                 devices, log, label)
        prune_group_checkpoints(group, sweep_dir, log)
        return trained


def prune_group_checkpoints(group: Group, sweep_dir, log=print) -> int:
    """Once every member of `group` is finished with its results (none diverged or damaged),
    the group keeps only its last checkpoint (and those `train.keep_every` keeps): each member
    holds its own slice of it, and the earlier ones, kept for resuming, are of no more use.
    A diverged member's last good state lives only in the group's checkpoints: while there
    is one, all are kept. Returns the bytes freed. (The latent sweep's 5 groups held 2 GB.)"""
    runs = [run.workdir(sweep_dir) for run in group.runs]
    if not all((w / records.RESULTS).exists() and not (w / records.DIVERGED).exists()
               and not (w / records.DAMAGED).exists() for w in runs):
        return 0
    config = group.config.train
    manager = checkpoints.Manager(group.workdir(sweep_dir), keep=config.keep_checkpoints,
                                  keep_every=config.keep_every, shared=False)
    try:
        epochs = manager.epochs()
        spare = [e for e in epochs[:-1] if not (config.keep_every and e % config.keep_every == 0)]
        freed = manager.delete(spare)
    finally:
        manager.close()
    if spare:
        log(f"sweep: group {group.id}: all {len(runs)} runs finished; its checkpoints of epochs "
            f"{', '.join(map(str, spare))} deleted ({freed / 1e6:.0f} MB), the last one kept")
    return freed


def _train_members(group, sweep_dir, group_dir, pending, group_fns, splits, devices, log, label):
    """Trains `group` from its latest checkpoint to its last epoch, writing the workdirs of
    its `pending` members (indices), then gives each of them that trained to the end its own
    checkpoint and evaluation; returns their run names."""
    config = group.config
    program = group_fns.program
    splits = program.model_data(splits)
    workdirs = [_start_run(run, sweep_dir, group, splits.source) if i in pending else None
                for i, run in enumerate(group.runs)]
    hypers = _stack([program.hyper(run.config) for run in group.runs])
    train_x, val_x = splits.train, splits.validation if config.train.validate else None
    if group_fns.shardings is not None:
        hypers, train_x, val_x = placement.shard_members(
            group_fns.shardings, hypers, train_x, val_x, log=log, label=label,
            num_members=len(group.runs))

    def place(program, state, hypers, train_x, val_x):
        if group_fns.shardings is None:
            # Restored arrays are committed to a device; commit fresh ones too, so that a
            # resumed group lowers to the same program (and hits a compilation cache).
            state, hypers = jax.device_put((state, hypers), devices[0])
        return program, group_fns.fns, state, hypers, train_x, val_x

    _, program, state, hypers, diverged = loop.train_from_checkpoint(
        program, group_fns.init(hypers), hypers, train_x, val_x, checkpoint_dir=group_dir,
        train_config=config.train, workdirs=workdirs, place=place, shared=False,
        label=f"sweep: {label}", log=log)

    host_state = jax.device_get(state)
    alive = [i for i in pending
             if i not in diverged and not (workdirs[i] / records.DAMAGED).exists()]
    _save_member_checkpoints(config, host_state, {i: workdirs[i] for i in alive})
    if not alive:
        return []
    _evaluate_members(group, program, evaluation_params(state), hypers, host_state, splits,
                      {i: workdirs[i] for i in alive}, group_fns.shardings, group_dir, log)
    return [group.runs[i].name for i in alive]


def _save_member_checkpoints(config, host_state, workdirs: dict) -> None:
    """Saves each member's slice of the group's final `host_state` (numpy, stacked along the
    member axis) as the last-epoch checkpoint of its run workdir ({member index: workdir}),
    unless it is there already, so that `vaejax eval/sample --workdir <run>` work."""
    epochs = config.train.epochs
    for i, workdir in workdirs.items():
        run_manager = checkpoints.Manager(workdir, keep=config.train.keep_checkpoints,
                                          keep_every=config.train.keep_every, shared=False)
        if run_manager.latest_epoch() != epochs:
            run_manager.save(epochs, jax.tree.map(lambda x: jnp.asarray(x[i]), host_state))
        run_manager.close()


def _evaluate_members(group, program, params, hypers, host_state, splits, workdirs: dict,
                      shardings, group_dir, log) -> None:
    """Evaluates the group's stacked `params` on the test set (vmapped over the members, from
    the partial file of `group_dir` if interrupted), then writes each member's figures and
    results.json into its run workdir ({member index: workdir})."""
    config = group.config
    test_x = splits.test.take(slice(None, config.eval.num_test_examples or None))
    if shardings is not None:
        test_x = jax.device_put(test_x, shardings[1])
    results = evaluate.test_metrics(program, params, hypers, test_x, config.eval,
                                    num_members=len(group.runs), log=log,
                                    partial_file=evaluate.partial_eval_file(group_dir))
    for i, workdir in workdirs.items():
        run = group.runs[i]
        member = jax.tree.map(lambda x: jnp.asarray(x[i]), (evaluation_params(host_state), hypers))
        evaluate.finish_member(workdir, program, *member, results[i], splits.test, run.config,
                               log=log, name=run.name, grid=splits.grid)


def _check_runs(groups: Sequence[Group], sweep_dir, log) -> None:
    """Unfinished runs must resume with their recorded config; finished ones are kept."""
    problems, kept, kept_keys = [], [], set()
    for group in groups:
        for run in group.runs:
            run_dir = run.workdir(sweep_dir)
            if not (run_dir / records.RUN_RECORD).exists():
                continue
            if (run_dir / records.DAMAGED).exists():
                log(f"sweep: {run.name} is marked damaged ({run_dir / records.DAMAGED}); "
                    "skipped. Delete its workdir to train it again.")
                continue
            try:
                recorded = records.read_run_record(run_dir)["config"]
            except records.DamagedRecordError as error:
                records.mark_damaged(run_dir, error, log=log)
                continue
            diff = records.config_differences(recorded, config_lib.to_dict(run.config))
            if _finished(run_dir):
                # a finished run is what it is; settings that change none of its numbers
                # (progress_every, keep_every, ...) are not worth a word
                diff = [k for k in diff if k == "train.epochs"
                        or k not in records.RESUMABLE_CHANGES]
                if diff:
                    kept.append(run.name)
                    kept_keys.update(diff)
            elif [k for k in diff if k not in records.RESUMABLE_CHANGES]:
                problems.append(f"{run.name}: {diff}")
    if kept:
        log(f"sweep: {len(kept)} finished runs (e.g. {kept[0]}) were trained with another config "
            f"(differs in {sorted(kept_keys)}); they are kept as they are. Use a new --workdir "
            f"to train them again.")
    if problems:
        raise config_lib.ConfigError(
            f"{sweep_dir} holds unfinished runs started with another config (a resumed run "
            f"may change only {list(records.RESUMABLE_CHANGES)}); use a new --workdir:\n  "
            + "\n  ".join(problems))


def run_sweep(sweep_file, workdir, *, overrides: Sequence[str] = (), max_group_size: int = 16,
              dry_run: bool = False, shard: str = "0/1", log=print) -> dict:
    """Trains this shard's groups of `sweep_file` in `workdir`, then writes the report.

    Finished runs are skipped and unfinished groups resume from their checkpoints. Returns
    {"plan": Plan, "groups": this shard's groups, "trained": run names finished now,
    "skipped": run names finished before}.

    Each process of a multi-process job (`vaejax.distributed`, joined here first) takes its
    own share of this shard's groups (`process_shard`); process 0 writes the report once
    every process has trained its share.
    """
    parse_shard(shard)
    if not dry_run and distributed.initialize("vaejax sweep") and distributed.multiprocess():
        index, count = jax.process_index(), jax.process_count()
        shard = process_shard(shard, index, count)
        log = _labelled(log, f"[process {index} of {count}] ")
    plan = make_plan(sweep_file, overrides=overrides, max_group_size=max_group_size)
    mine = shard_groups(plan.groups, shard)
    sweep_dir = pathlib.Path(workdir)
    _check_runs(mine, sweep_dir, log)
    if dry_run:
        describe_plan(plan, mine, shard, sweep_dir, log=log)
        return {"plan": plan, "groups": mine, "trained": [], "skipped": []}

    trained, skipped = _train_shard(plan, mine, shard, sweep_dir, log)
    if distributed.multiprocess():
        log(f"sweep: shard {shard} done; waiting for the other processes of the job")
    distributed.barrier("sweep trained")
    if distributed.is_primary():
        report(sweep_dir, log=log)
    distributed.finish()
    return {"plan": plan, "groups": mine, "trained": trained, "skipped": skipped}


def _train_shard(plan, mine: Sequence[Group], shard: str, sweep_dir: pathlib.Path, log):
    """Writes the sweep's record, then trains the groups `mine` (this process's share of
    `shard`) one after another, skipping their finished runs; returns (the names of the runs
    finished now, those finished before)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    records.write_json(sweep_dir / SWEEP_RECORD, plan.record())
    devices = jax.local_devices()
    log(f"sweep: {len(plan.runs)} runs in {len(plan.groups)} groups; shard {shard}: "
        f"{len(mine)} groups on {len(devices)} {devices[0].platform} device(s) -> {sweep_dir}")
    splits_cache, compiled = _SplitsCache(log), {}
    trained, skipped = [], []
    for n, group in enumerate(mine, 1):
        finished = [r.name for r in group.runs if _finished(r.workdir(sweep_dir))]
        skipped += finished
        if len(finished) == len(group.runs):
            log(f"sweep: [{n}/{len(mine)}] {group.id}: all {len(finished)} runs finished; skipped")
            _prune_unless_held(group, sweep_dir, log)
            continue
        if finished:
            log(f"sweep: [{n}/{len(mine)}] {group.id}: {len(finished)} runs already finished "
                f"(kept); the group trains all {len(group.runs)} and writes only the others")
        trained += train_group(group, sweep_dir, splits=splits_cache.get(group.config),
                               devices=devices, compiled=compiled, log=log,
                               label=f"[{n}/{len(mine)}] {group.id}")
    return trained, skipped


def _prune_unless_held(group: Group, sweep_dir: pathlib.Path, log) -> None:
    """`prune_group_checkpoints` of a finished group that has checkpoints, unless another
    process holds its directory."""
    with contextlib.suppress(locking.DirectoryLockedError):  # held: another process's
        if (group.workdir(sweep_dir) / checkpoints.CHECKPOINTS).is_dir():
            with locking.hold(group.workdir(sweep_dir), f"vaejax sweep (group {group.id})"):
                prune_group_checkpoints(group, sweep_dir, log)


def _labelled(log, prefix: str):
    """`log` with each line after its first word (`sweep:`) naming this process."""
    def labelled(*args):
        text = " ".join(str(a) for a in args)
        head, _, tail = text.partition(" ")
        log(f"{head} {prefix}{tail}" if tail else text)
    return labelled
