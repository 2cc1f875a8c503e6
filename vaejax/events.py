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

metrics.jsonl stays the record; these files are a view of it. A resumed run purges the events
of the epochs it trains again (`purge_step`), as metrics.jsonl drops their lines.
"""

from __future__ import annotations

import math
import os
import pathlib
import secrets
from typing import Iterable, Mapping

import numpy as np

from vaejax import config as config_lib

# Not scalars to plot: the x axis itself.
_AXES = ("epoch", "step")
# What the HParams tab shows per run (tags written as scalars above).
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


class EpochWriter:
    """The scalars of one run's metrics.jsonl lines, as they are written."""

    def __init__(self, workdir, *, start_epoch: int = 0):
        # Events from an interrupted attempt at epochs > start_epoch are dropped by TensorBoard.
        self._writer = _writer(workdir, "epochs",
                               purge_step=start_epoch + 1 if start_epoch else None)

    def write(self, record: Mapping[str, object]) -> None:
        """One metrics.jsonl line (`loop.epoch_record`), flushed: a watcher sees it at once."""
        epoch = int(record["epoch"])
        for name, value in record.items():
            if name not in _AXES and _is_number(value):
                self._writer.add_scalar(name, float(value), epoch)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def write_results(workdir, epoch: int, results: Mapping[str, object],
                  figure_paths: Iterable[pathlib.Path] = ()) -> None:
    """A run's test results as scalars and its PNG figures as images, at `epoch`."""
    import matplotlib.image  # noqa: PLC0415

    writer = _writer(workdir, "results")
    try:
        for name, value in results.items():
            if name.startswith("test/") and _is_number(value):
                writer.add_scalar(name, float(value), epoch)
        if _is_number(results.get("active_units")):
            writer.add_scalar("test/active_units", float(results["active_units"]), epoch)
        for path in figure_paths:
            image = matplotlib.image.imread(path)  # (H, W, 3 or 4) floats in [0, 1]
            writer.add_image(f"figures/{pathlib.Path(path).stem}",
                             np.asarray(image[..., :3], np.float32), epoch, dataformats="HWC")
    finally:
        writer.close()


def write_hparams(workdir, config) -> None:
    """The run's config (flattened, `model.latent_dim`: 20) for TensorBoard's HParams tab."""
    from tensorboardX.summary import hparams  # noqa: PLC0415

    values = {}
    for name, value in config_lib.flatten(config).items():
        if isinstance(value, (bool, int, float, str)):
            values[name] = value
        elif value is not None:
            values[name] = str(value)  # tuples (hidden sizes), ...
    # Only the metric *names* go in here; their values are the scalars written above.
    experiment, session_start, _ = hparams(values, dict.fromkeys(HPARAM_METRICS, 0.0))
    writer = _writer(workdir, "hparams")
    try:
        for summary in (experiment, session_start):
            writer.file_writer.add_summary(summary)
    finally:
        writer.close()


def _is_number(value) -> bool:
    return (isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
            and math.isfinite(float(value)))
