"""Orbax checkpoints of a `TrainState`, one per saved epoch, the last few kept.

Layout: `<workdir>/checkpoints/<epoch>/`. Saves are synchronous and atomic (orbax writes
to a temporary folder and renames it), so a killed run leaves only whole checkpoints.
A checkpoint damaged afterwards (a truncated array file, an empty `_METADATA` or
manifest) is found when it fails to restore: `restore_latest` moves it aside to
`<workdir>/checkpoints.damaged/` (never deletes it), says why, and restores the one before.

In a multi-process job (`vaejax.distributed`) every checkpoint is written by ONE process,
with orbax's options for process-local storage (`MultiprocessingOptions(primary_host=None,
active_processes={this process})`: no barrier across processes), so processes save at their
own times. A `shared` manager (`vaejax train`: one model that every process trains, its state
replicated) is written by process 0 alone; `restore_latest` runs there, and the others
restore the epoch it chose. An unshared one (a sweep group, a run of it) belongs to the
process that trains it. orbax refuses to write an array held by one process when there are
several (`Cannot serialize host local jax.Array ... in multi-host setting`) and writes numpy
arrays on process 0 only, so `_ProcessLocalArrayHandler` hands it each array as replicated
over this process's device and, nominally, one device of each other process, with this
process's copy as the replica orbax writes (no data moves). The files are the same as a
one-process run's: either restores the other's checkpoints.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import inspect
import logging
import pathlib
import shutil
import sys
import threading
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

from vaejax import distributed

CHECKPOINTS = "checkpoints"  # <workdir>/checkpoints/<epoch>/: orbax's
DAMAGED = "checkpoints.damaged"


class NoCheckpointError(FileNotFoundError):
    """A workdir holds no checkpoint that restores."""


class Manager:
    """Saves and restores `TrainState`s (any pytree) keyed by epoch."""

    def __init__(self, workdir, *, keep: int = 3, keep_every: int = 0, shared: bool = True):
        """Keeps the last `keep` checkpoints, and for good every one whose epoch `keep_every`
        divides (0: none), e.g. for a learning curve evaluated afterwards.

        `shared` matters only in a multi-process job: the checkpoints of a model that every
        process trains (written by process 0), rather than this process's own."""
        self.directory = pathlib.Path(workdir).resolve() / CHECKPOINTS
        self._options = dict(max_to_keep=keep, keep_period=keep_every or None,
                             enable_async_checkpointing=False)
        self._local = distributed.multiprocess()  # orbax's process-local path
        # Process 0 of a shared manager leads: it chooses what to restore, and writes; the
        # others follow: they restore what it chose and write nothing.
        self._leader = self._local and shared and distributed.is_primary()
        self._follower = self._local and shared and not distributed.is_primary()
        self._restored = None  # a follower's latest_epoch: the epoch process 0 chose
        self._orbax = None if self._follower else self._open()

    def _open(self) -> ocp.CheckpointManager:
        if not self._local:
            return ocp.CheckpointManager(self.directory, options=ocp.CheckpointManagerOptions(
                create=True, **self._options))
        options = ocp.options.MultiprocessingOptions(primary_host=None,
                                                     active_processes={jax.process_index()})
        if not self._follower:
            self.directory.mkdir(parents=True, exist_ok=True)  # orbax's create=True needs all
        registry = ocp.type_handlers.create_type_handler_registry(
            (jax.Array, _ProcessLocalArrayHandler()))
        handler = ocp.PyTreeCheckpointHandler(multiprocessing_options=options,
                                              type_handler_registry=registry)
        return ocp.CheckpointManager(self.directory, item_handlers=handler,
                                     options=ocp.CheckpointManagerOptions(
                                         create=False, multiprocessing_options=options,
                                         **self._options))

    @property
    def _manager(self) -> ocp.CheckpointManager:
        if self._orbax is None:  # a follower reads what process 0 wrote, once there is some
            self._orbax = self._open()
        return self._orbax

    def latest_epoch(self) -> int | None:
        if self._follower:
            return self._restored
        return self._manager.latest_step()

    def epochs(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, epoch: int, state) -> None:
        """Saves synchronously; a failure (a full disk) raises one error and leaves only
        orbax's temporary folder, which the next save cleans up. A follower writes nothing."""
        if self._follower:
            return
        args = (ocp.args.PyTreeSave(state) if self._local else ocp.args.StandardSave(state))
        with _quiet_background_errors():
            self._manager.save(epoch, args=args)
            self._manager.wait_until_finished()

    def restore(self, epoch: int, like):
        """Restores the checkpoint of `epoch` into the structure, shapes, dtypes and
        shardings of `like`; where `like` has no sharding (abstract shapes), onto this
        process's first device (not the sharding the checkpoint was saved with, which may
        name devices of another topology)."""
        this = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

        def target(x):
            x = ocp.utils.to_shape_dtype_struct(x)
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding or this)

        abstract = jax.tree.map(target, like)
        if not self._local:
            return self._manager.restore(epoch, args=ocp.args.StandardRestore(abstract))
        restore_args = jax.tree.map(
            lambda a: ocp.ArrayRestoreArgs(sharding=a.sharding, global_shape=a.shape,
                                           dtype=a.dtype), abstract)
        with _quiet_background_errors():
            return self._manager.restore(epoch, args=ocp.args.PyTreeRestore(
                abstract, restore_args=restore_args))

    def restore_latest(self, like, *, log=print) -> tuple[int | None, object]:
        """(epoch, state) of the newest checkpoint that restores into `like`; (None, like)
        when there is none. Each newer one that fails is moved aside (`set_aside`) and
        named in the log with the reason. A shared manager in a multi-process job chooses on
        process 0, and the others restore the epoch it chose."""
        if self._follower:
            self._restored = distributed.receive("restore")
            if self._restored is None:
                return None, like
            return self._restored, self.restore(self._restored, like)
        try:
            epoch, state = self._restore_latest(like, log=log)
        except Exception as error:
            if self._leader:
                distributed.publish("restore", error=error)
            raise
        if self._leader:
            distributed.publish("restore", epoch)
        return epoch, state

    def resume(self, fresh, *, label: str, log=print) -> tuple[int, object]:
        """(epoch, state) to train on from: the newest checkpoint that restores into `fresh`
        (a newly initialized state, its template), logged as `<label>: resumed ...`, else
        (0, fresh). The one resume path of `vaejax train` and of a sweep's groups."""
        epoch, state = self.restore_latest(fresh, log=log)
        if not epoch:
            return 0, fresh
        log(f"{label}: resumed from the checkpoint of epoch {epoch} "
            f"(step {int(np.max(jax.device_get(state.step)))})")
        return epoch, state

    def _restore_latest(self, like, *, log) -> tuple[int | None, object]:
        for epoch in reversed(self.epochs()):
            try:
                with _quiet_background_errors():
                    return epoch, self.restore(epoch, like)
            except Exception as error:  # noqa: BLE001  (orbax and TensorStore raise many kinds)
                _drop_failed_restore_noise()
                reason = _reason(error)
            _collect_quietly()  # the failed restore's leftovers, unreferenced now
            if not (self.directory / str(epoch)).exists():  # removed by its writer meanwhile
                self._manager.reload()
                continue
            aside = self.set_aside(epoch)
            log(f"checkpoints: the checkpoint of epoch {epoch} is damaged and was skipped "
                f"({reason}); moved to {aside}")
        return None, like

    def delete(self, epochs) -> int:
        """Deletes the checkpoints of `epochs`; returns the bytes freed."""
        freed = 0
        for epoch in epochs:
            freed += sum(f.stat().st_size for f in (self.directory / str(epoch)).rglob("*")
                         if f.is_file())
            self._manager.delete(epoch)
        return freed

    def set_aside(self, epoch: int) -> pathlib.Path:
        """Moves the checkpoint of `epoch` to `<workdir>/checkpoints.damaged/<epoch>-<time>`."""
        aside = (self.directory.parent / DAMAGED
                 / f"{epoch}-{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 10**6}")
        aside.parent.mkdir(exist_ok=True)
        shutil.move(str(self.directory / str(epoch)), aside)
        self._manager.reload()
        return aside

    def close(self) -> None:
        if self._orbax is not None:
            self._orbax.close()


class _ProcessLocalArrayHandler(ocp.type_handlers.ArrayHandler):
    """orbax's ArrayHandler for a checkpoint that this process writes alone while other
    processes run (see the module's docstring): each array, whether this process holds it
    whole (a sweep group's state) or it is replicated over all processes (`vaejax train`'s
    state), goes to orbax as a copy on this process's first device that orbax may write."""

    def __init__(self):
        # No sharding file: the sharding orbax sees here is not one any reader could use.
        super().__init__(primary_host=None, replica_id=0, use_replica_parallel=False,
                         enable_write_sharding_file=False)

    async def serialize(self, values, infos, args=None):
        return await super().serialize([_written_here(v) for v in values], infos, args)


def _written_here(x):
    """`x` as a jax.Array replicated over [a device of this process, one device of each
    other process], whose copy on this process is replica 0, the one orbax writes. Only
    this process's copy exists; nothing reads the others, and no data moves."""
    if not isinstance(x, jax.Array):
        return x
    if x.is_fully_addressable:
        local = jax.device_put(x, jax.local_devices()[0])
    elif x.is_fully_replicated:
        local = x.addressable_data(0)
    else:
        raise ValueError(f"An array sharded over several processes ({x.sharding}) cannot be "
                         "checkpointed by one process.")
    mine = next(iter(local.devices()))
    others = [next(d for d in jax.devices() if d.process_index == p)
              for p in range(jax.process_count()) if p != jax.process_index()]
    mesh = jax.sharding.Mesh(np.asarray([mine, *others]), ("copies",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return jax.make_array_from_single_device_arrays(x.shape, sharding, [local])


def _closed_loop_noise(error) -> bool:
    return isinstance(error, RuntimeError) and "Event loop is closed" in str(error)


def _failed_read_noise(error) -> bool:
    """A TensorStore read of a restore that already failed, raising again as its coroutine
    is finalized (possibly long after, on another thread's loop): the same damage, reported."""
    return _closed_loop_noise(error) or str(error).startswith(_FAILED_READ)


_FAILED_READ = "Encountered error while reading array index"  # orbax's serialization.py
_FAILED_READ_COROUTINE = "_read_array_index_and_device_put"  # the read that raises it


@functools.cache
def _drop_failed_restore_noise() -> None:
    """After a failed restore, TensorStore reads still in flight finish later, even at exit,
    and each reports to the closed event loop of the restore: "Event loop is closed" and
    "Task exception was never retrieved", dozens of tracebacks. Installed once, after the
    first failed restore, these filters drop exactly those messages and pass on the rest.
    So do the reads' own errors when their coroutines are collected later: "Exception ignored
    in <coroutine _read_array_index_and_device_put>", the damage already reported once."""
    unraisable, thread = sys.unraisablehook, threading.excepthook
    sys.unraisablehook = lambda u: None if _failed_read_noise(u.exc_value) else unraisable(u)
    threading.excepthook = lambda a: None if _failed_read_noise(a.exc_value) else thread(a)
    logging.getLogger("asyncio").addFilter(
        lambda record: not record.getMessage().startswith("Task exception was never retrieved"))
    atexit.register(_close_failed_reads)


def _close_failed_reads() -> None:
    """At exit, closes the reads of failed restores still suspended, quietly. Left to the
    interpreter's shutdown, each would be closed after this module's globals are gone, when
    no filter above can run, and print its error."""
    with _quiet_background_errors():
        for leftover in gc.get_objects():
            if (inspect.iscoroutine(leftover) and leftover.cr_frame is not None
                    and leftover.cr_code.co_name == _FAILED_READ_COROUTINE):
                try:
                    leftover.close()
                except Exception:  # noqa: BLE001  (the read's own error, reported already)
                    pass


@contextlib.contextmanager
def _quiet_background_errors():
    """A failed orbax save or restore leaves coroutines and threads that raise again when
    collected, and logs the failure from each worker thread: hundreds of lines about the
    same damage or full disk. They are dropped during the call: the error that matters is
    the one the call raises, which vaejax reports."""
    hooks = sys.unraisablehook, threading.excepthook
    absl = logging.getLogger("absl")
    level = absl.level
    sys.unraisablehook = lambda unraisable: None
    threading.excepthook = lambda args: None
    absl.setLevel(logging.CRITICAL)  # orbax's worker threads log each failure again
    try:
        yield
    except BaseException:
        gc.collect()  # what of the failed call is already unreferenced is finalized quietly
        raise
    finally:
        sys.unraisablehook, threading.excepthook = hooks
        absl.setLevel(level)


def _collect_quietly() -> None:
    """Finalizes what a failed orbax call left behind once nothing refers to its error (the
    error's traceback keeps it alive until then), its noise dropped."""
    with _quiet_background_errors():
        gc.collect()


def _reason(error: BaseException) -> str:
    """The first line of an error, shortened: orbax's messages run to hundreds of lines."""
    lines = str(error).strip().splitlines()
    text = lines[0].split(" See full TensorStore details")[0] if lines else ""
    text = text if len(text) <= 200 else text[:200] + "..."
    return f"{type(error).__name__}: {text}"
