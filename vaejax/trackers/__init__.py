"""Where a run's numbers are shown besides its own files: `train.trackers`.

    config.train.trackers = ("tensorboard",)                    # the default
    config.train.trackers = ("tensorboard", "wandb", "mlflow")  # vaejax[wandb], vaejax[mlflow]

metrics.jsonl and results.json stay the record; a tracker is a view of them. The loop,
evaluation and sweeps call one `Trackers` (`open_run(workdir)`) and none of them knows which
trackers are on. A tracker of your own is a class given as `"module:attribute"` (see
`vaejax.trackers.base` for the interface).
"""

from vaejax.trackers import mlflow as _mlflow  # noqa: F401  (registers "mlflow")
from vaejax.trackers import tensorboard as _tensorboard  # noqa: F401  (registers "tensorboard")
from vaejax.trackers import wandb as _wandb  # noqa: F401  (registers "wandb")
from vaejax.trackers.base import DEFAULTS, TRACKERS, Trackers, check, open_run, settings

__all__ = ["DEFAULTS", "TRACKERS", "Trackers", "check", "open_run", "settings"]
