"""TensorBoard event files in each run's workdir, written without TensorFlow (tensorboardX).

    tensorboard --logdir runs/default --host 127.0.0.1       # one run
    tensorboard --logdir sweeps/latent_kl --host 127.0.0.1   # every member of a sweep

A workdir gets `events.out.tfevents.*` files holding
- each metrics.jsonl line as scalars under the same names (`train/loss`, `val/neg_elbo`, `lr`,
  `beta`, `examples_per_sec`, ...), at step = epoch;
- the test results (`test/nll`, `test/neg_elbo`, `test/rate`, `test/distortion`,
  `test/active_units`) and the figures as images, at the epoch evaluated;
- the run's config as hyperparameters, for TensorBoard's HParams tab, where the members of a
  sweep (one run each) sit side by side.

A resumed run purges the events of the epochs it trains again (`purge_step`), as
metrics.jsonl drops their lines.
"""

from __future__ import annotations

import os
import pathlib
import secrets
from typing import Iterable, Mapping

import numpy as np

from vaejax import config as config_lib
from vaejax.trackers.base import TRACKERS, scalars, test_scalars

# What the HParams tab shows per run (tags written as scalars).
HPARAM_METRICS = ("train/loss", "val/neg_elbo", "test/nll", "test/neg_elbo", "test/rate",
                  "test/distortion", "test/active_units")


def _writer(workdir, kind: str, *, purge_step: int | None = None):
    """A writer of a new events file. tensorboardX names files by the second and the host
    alone, so two writers opened within a second would share (and truncate) one file: the
    suffix tells them apart."""
    from tensorboardX import SummaryWriter  # noqa: PLC0415  (imports protobuf: only when writing)

    suffix = f".{kind}.{os.getpid()}.{secrets.token_hex(3)}"
    return SummaryWriter(str(workdir), purge_step=purge_step, flush_secs=30,
                         filename_suffix=suffix)


@TRACKERS.register("tensorboard")
class TensorBoard:
    """Event files in the workdir. Its identity is {}: TensorBoard finds a run by its folder."""

    package = "tensorboardX"
    extra = None  # a core dependency

    def __init__(self, workdir, run: dict, identity: dict | None):
        self.workdir = pathlib.Path(workdir)
        self._epochs = None
        if identity is None and run["config"]:  # the run's first open: its config (HParams tab)
            write_hparams(self.workdir, run["config"])

    def identity(self) -> dict:
        return {}

    def epoch(self, record: Mapping[str, object]) -> None:
        """One metrics.jsonl line (`loop.epoch_record`), flushed: a watcher sees it at once.
        The first line of a process purges the events of an interrupted attempt at that epoch
        and later ones, which TensorBoard then drops."""
        epoch = int(record["epoch"])
        if self._epochs is None:
            self._epochs = _writer(self.workdir, "epochs", purge_step=epoch if epoch > 1 else None)
        for name, value in scalars(record).items():
            self._epochs.add_scalar(name, value, epoch)
        self._epochs.flush()

    def results(self, epoch: int, results: Mapping[str, object],
                figures: Iterable[pathlib.Path] = ()) -> None:
        """A run's test results as scalars and its PNG figures as images, at `epoch`."""
        import matplotlib.image  # noqa: PLC0415

        writer = _writer(self.workdir, "results")
        try:
            for name, value in test_scalars(results).items():
                writer.add_scalar(name, value, epoch)
            for path in figures:
                image = matplotlib.image.imread(path)  # (H, W, 3 or 4) floats in [0, 1]
                writer.add_image(f"figures/{pathlib.Path(path).stem}",
                                 np.asarray(image[..., :3], np.float32), epoch, dataformats="HWC")
        finally:
            writer.close()

    def close(self) -> None:
        if self._epochs is not None:
            self._epochs.close()


def write_hparams(workdir, config) -> None:
    """The run's config (flattened, `model.latent_dim`: 20) for TensorBoard's HParams tab."""
    from tensorboardX.summary import hparams  # noqa: PLC0415

    values = {}
    for name, value in config_lib.flatten(config).items():
        if isinstance(value, (bool, int, float, str)):
            values[name] = value
        elif value is not None:  # tuples (hidden sizes), as run.json's lists or as tuples
            values[name] = str(_tuples(value))
    # Only the metric *names* go in here; their values are the scalars written above.
    experiment, session_start, _ = hparams(values, dict.fromkeys(HPARAM_METRICS, 0.0))
    writer = _writer(workdir, "hparams")
    try:
        for summary in (experiment, session_start):
            writer.file_writer.add_summary(summary)
    finally:
        writer.close()


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
