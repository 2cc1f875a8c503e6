"""Progress output of long work: lines with the rate and the time left, at most one per
`PROGRESS_INTERVAL` seconds (a log file gets lines, not a redrawn bar).

`Progress` reports from inside a training epoch (`Program.train_epoch`'s `on_steps`
callback); `ProgressLines` is tqdm's `update`/`close` for an evaluation whose log is not a
terminal; `duration` writes a time left as people read it.
"""

from __future__ import annotations

import time

PROGRESS_INTERVAL = 30.0  # seconds: the least time between two progress lines inside an epoch


class Progress:
    """Lines from inside an epoch: the host side of `Program.train_epoch`'s `on_steps`
    callback (every `program.progress_every` steps), with the rate and the time left.

    At most one line per `interval` seconds, so epochs shorter than that print none (their
    one line per epoch is enough). `start` is called before each epoch.
    """

    def __init__(self, steps_per_epoch: int, batch_size: int, *, interval: float | None = None):
        self.steps_per_epoch, self.batch_size = steps_per_epoch, batch_size
        self.interval = PROGRESS_INTERVAL if interval is None else interval
        self.log, self.label, self.epoch, self.epochs = print, "train", 0, 1
        self._start = self._last = time.perf_counter()

    def start(self, label: str, epoch: int, epochs: int, log=print) -> None:
        self.label, self.epoch, self.epochs, self.log = label, epoch, epochs, log
        self._start = self._last = time.perf_counter()

    def __call__(self, steps_done) -> None:
        now = time.perf_counter()
        if now - self._last < self.interval:
            return
        self._last = now
        done, elapsed = int(steps_done), now - self._start
        per_step = elapsed / max(done, 1)
        epoch_left = per_step * (self.steps_per_epoch - done)
        run_left = epoch_left + per_step * self.steps_per_epoch * (self.epochs - self.epoch - 1)
        self.log(f"{self.label}: epoch {self.epoch + 1}/{self.epochs}: step {done}/"
                 f"{self.steps_per_epoch} ({100 * done // self.steps_per_epoch}%), "
                 f"{done * self.batch_size / elapsed:,.0f} examples/s, epoch ends in "
                 f"{duration(epoch_left)}, training in {duration(run_left)}")


def duration(seconds: float) -> str:
    """4 s, 3 min, 2.5 h: a time left, as people read it."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class ProgressLines:
    """tqdm's `update`/`close` for a log that is not a terminal: a line at most every
    `PROGRESS_INTERVAL` seconds, with the rate and the time left. The rate counts
    from the first update, so that the examples a resumed evaluation restored at once (its
    first update) do not inflate it."""

    def __init__(self, label: str, total: int, *, log=print):
        self.label, self.total, self.log = label, total, log
        self.done, self._last = 0, time.perf_counter()
        self._first = None  # (time, examples done) at the first update

    def update(self, n: int) -> None:
        self.done += int(n)
        now = time.perf_counter()
        if self._first is None:
            self._first = (now, self.done)
            return
        if now - self._last < PROGRESS_INTERVAL or self.done >= self.total:
            return
        self._last = now
        rate = max(self.done - self._first[1], 1) / max(now - self._first[0], 1e-9)
        self.log(f"{self.label}: {self.done:,}/{self.total:,} examples "
                 f"({100 * self.done // self.total}%), {rate:,.1f} examples/s, done in "
                 f"{duration((self.total - self.done) / rate)}")

    def close(self) -> None:
        pass
