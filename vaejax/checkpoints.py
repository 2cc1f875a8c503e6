"""Orbax checkpoints of a `TrainState`, one per saved epoch, the last few kept.

Layout: `<workdir>/checkpoints/<epoch>/`. Saves are synchronous and atomic (orbax writes
to a temporary folder and renames it), so a killed run leaves only whole checkpoints.
A checkpoint damaged afterwards (a truncated array file, an empty `_METADATA` or
manifest) is found when it fails to restore: `restore_latest` moves it aside to
`<workdir>/checkpoints.damaged/` (never deletes it), says why, and restores the one before.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import pathlib
import shutil
import sys
import threading
import time

import jax
import orbax.checkpoint as ocp

DAMAGED = "checkpoints.damaged"


class NoCheckpointError(FileNotFoundError):
    """A workdir holds no checkpoint that restores."""


class Manager:
    """Saves and restores `TrainState`s (any pytree) keyed by epoch."""

    def __init__(self, workdir, *, keep: int = 3, keep_every: int = 0):
        """Keeps the last `keep` checkpoints, and for good every one whose epoch `keep_every`
        divides (0: none), e.g. for a learning curve evaluated afterwards."""
        self.directory = pathlib.Path(workdir).resolve() / "checkpoints"
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, keep_period=keep_every or None,
                                                 create=True, enable_async_checkpointing=False),
        )

    def latest_epoch(self) -> int | None:
        return self._manager.latest_step()

    def epochs(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, epoch: int, state) -> None:
        """Saves synchronously; a failure (a full disk) raises one error and leaves only
        orbax's temporary folder, which the next save cleans up."""
        with _quiet_background_errors():
            self._manager.save(epoch, args=ocp.args.StandardSave(state))
            self._manager.wait_until_finished()

    def restore(self, epoch: int, like):
        """Restores the checkpoint of `epoch` into the structure, shapes and dtypes of `like`."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        return self._manager.restore(epoch, args=ocp.args.StandardRestore(abstract))

    def restore_latest(self, like, *, log=print) -> tuple[int | None, object]:
        """(epoch, state) of the newest checkpoint that restores into `like`; (None, like)
        when there is none. Each newer one that fails is moved aside (`set_aside`) and
        named in the log with the reason."""
        for epoch in reversed(self.epochs()):
            try:
                with _quiet_background_errors():
                    return epoch, self.restore(epoch, like)
            except Exception as error:  # noqa: BLE001  (orbax and TensorStore raise many kinds)
                _drop_failed_restore_noise()
                if not (self.directory / str(epoch)).exists():  # removed by its writer meanwhile
                    self._manager.reload()
                    continue
                aside = self.set_aside(epoch)
                log(f"checkpoints: the checkpoint of epoch {epoch} is damaged and was skipped "
                    f"({_reason(error)}); moved to {aside}")
        return None, like

    def set_aside(self, epoch: int) -> pathlib.Path:
        """Moves the checkpoint of `epoch` to `<workdir>/checkpoints.damaged/<epoch>-<time>`."""
        aside = (self.directory.parent / DAMAGED
                 / f"{epoch}-{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 10**6}")
        aside.parent.mkdir(exist_ok=True)
        shutil.move(str(self.directory / str(epoch)), aside)
        self._manager.reload()
        return aside

    def close(self) -> None:
        self._manager.close()


def _closed_loop_noise(error) -> bool:
    return isinstance(error, RuntimeError) and "Event loop is closed" in str(error)


@functools.cache
def _drop_failed_restore_noise() -> None:
    """After a failed restore, TensorStore reads still in flight finish later, even at exit,
    and each reports to the closed event loop of the restore: "Event loop is closed" and
    "Task exception was never retrieved", dozens of tracebacks. Installed once, after the
    first failed restore, these filters drop exactly those messages and pass on the rest."""
    unraisable, thread = sys.unraisablehook, threading.excepthook
    sys.unraisablehook = lambda u: None if _closed_loop_noise(u.exc_value) else unraisable(u)
    threading.excepthook = lambda a: None if _closed_loop_noise(a.exc_value) else thread(a)
    logging.getLogger("asyncio").addFilter(
        lambda record: not record.getMessage().startswith("Task exception was never retrieved"))


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
    finally:
        gc.collect()  # the failed call's coroutines are finalized here, quietly
        sys.unraisablehook, threading.excepthook = hooks
        absl.setLevel(level)


def _reason(error: BaseException) -> str:
    """The first line of an error, shortened: orbax's messages run to hundreds of lines."""
    lines = str(error).strip().splitlines()
    text = lines[0].split(" See full TensorStore details")[0] if lines else ""
    text = text if len(text) <= 200 else text[:200] + "..."
    return f"{type(error).__name__}: {text}"
