"""Weights & Biases: one W&B run per vaejax run, grouped by sweep and group.

    config.train.trackers = ("tensorboard", "wandb")
    config.train.tracker_project = "vaejax"        # the W&B project
    WANDB_MODE=offline vaejax train ...             # no network or account: `wandb sync` later

The run's id is kept in <workdir>/trackers.json, so a resumed run (and a later `vaejax eval`)
continues the same W&B run: each process that opens it adds a segment, which `wandb sync`
merges. The W&B files go under <workdir>/wandb. What it logs:
- the resolved config (flattened keys, `model.latent_dim`), once;
- every metrics.jsonl line, with `epoch` as the x axis of every chart (`define_metric`);
- the test results in the run's summary and as a point at the epoch evaluated, and each
  figure as an image (`figures/<name>`).
A sweep's members share the W&B group (the sweep's folder name), and the job type names their
vmapped group. W&B's own settings (entity, mode, base URL) come from its WANDB_* variables.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from typing import Iterable, Mapping

from vaejax import config as config_lib
from vaejax.trackers.base import TRACKERS, scalars, settings, test_scalars


@TRACKERS.register("wandb")
class WandB:
    package = "wandb"
    extra = "wandb"

    def __init__(self, workdir, run: dict, identity: dict | None):
        import wandb  # noqa: PLC0415  (optional: `pip install 'vaejax[wandb]'`)

        self.workdir = pathlib.Path(workdir)
        sweep = run.get("sweep") or {}
        first = identity is None
        run_id = identity["id"] if identity else _run_id(self.workdir, run)
        self._run = wandb.init(
            project=settings(run["config"])["tracker_project"], id=run_id,
            # offline, a run is resumed by `wandb sync` (by its id), not by `init`
            resume="allow" if identity and os.environ.get("WANDB_MODE") != "offline" else None,
            dir=str(self.workdir), name=sweep.get("run", self.workdir.name),
            group=pathlib.Path(sweep["workdir"]).name if sweep else None,
            job_type=sweep.get("group"), reinit="create_new",
            config=_flat_config(run["config"]) if first else None,
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True))
        self._run.define_metric("epoch")
        self._run.define_metric("*", step_metric="epoch")

    def identity(self) -> dict:
        return {"id": self._run.id}

    def epoch(self, record: Mapping[str, object]) -> None:
        self._run.log({**scalars(record), "epoch": int(record["epoch"])})

    def results(self, epoch: int, results: Mapping[str, object],
                figures: Iterable[pathlib.Path] = ()) -> None:
        import wandb  # noqa: PLC0415

        values = test_scalars(results)
        images = {f"figures/{pathlib.Path(p).stem}": wandb.Image(str(p)) for p in figures}
        self._run.log({**values, **images, "epoch": int(epoch)})
        self._run.summary.update(values)

    def close(self) -> None:
        self._run.finish()


def _run_id(workdir: pathlib.Path, run: dict) -> str:
    """A W&B run id of 12 hex digits from the workdir's path and its run's start time."""
    key = f"{workdir.resolve()}|{run.get('started', '')}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _flat_config(config: dict) -> dict:
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in config_lib.flatten(config).items()}
