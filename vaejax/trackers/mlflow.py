"""MLflow: one MLflow run per vaejax run, in the experiment `train.tracker_project`.

    config.train.trackers = ("tensorboard", "mlflow")
    config.train.mlflow_tracking_uri = "sqlite:///mlflow.db"   # or http://host:5000; "" = MLflow's
                                                                # default (MLFLOW_TRACKING_URI)

The run id and the tracking URI are kept in <workdir>/trackers.json, so a resumed run (and a
later `vaejax eval`) logs to the same MLflow run. What it logs, through `MlflowClient` (no
active-run state of MLflow's fluent API, so a sweep's members log side by side):
- the resolved config as params (flattened keys, `model.latent_dim`), once;
- every metrics.jsonl line as metrics at step = epoch;
- the test results as metrics at the epoch evaluated, and the figures as artifacts under
  `figures/`;
- a sweep's member is tagged `vaejax.sweep` and `vaejax.group`.
A resumed run logs again the epochs it trains again: MLflow keeps both values, and the later
one is metrics.jsonl's.
"""

from __future__ import annotations

import pathlib
import time
from typing import Iterable, Mapping

from vaejax import config as config_lib
from vaejax.trackers.base import TRACKERS, scalars, settings, test_scalars

MAX_PARAM = 6000   # characters of a param's value MLflow stores
BATCH = 100        # params per log_batch call MLflow accepts


@TRACKERS.register("mlflow")
class MLflow:
    package = "mlflow"
    extra = "mlflow"

    def __init__(self, workdir, run: dict, identity: dict | None):
        from mlflow.tracking import MlflowClient  # noqa: PLC0415  (optional: vaejax[mlflow])

        self.workdir = pathlib.Path(workdir)
        chosen = settings(run["config"])
        uri = identity["tracking_uri"] if identity else chosen["mlflow_tracking_uri"] or None
        self._client = MlflowClient(tracking_uri=uri)
        self._uri = self._client.tracking_uri
        if identity:
            self._run_id = identity["run_id"]
            return
        name = chosen["tracker_project"]
        experiment = self._client.get_experiment_by_name(name)
        experiment_id = (experiment.experiment_id if experiment is not None
                         else self._client.create_experiment(
                             name, artifact_location=_local_artifacts(self._uri, name)))
        sweep = run.get("sweep") or {}
        tags = {"vaejax.workdir": str(self.workdir.resolve())}
        if sweep:
            tags |= {"vaejax.sweep": sweep["workdir"], "vaejax.group": sweep["group"]}
        created = self._client.create_run(experiment_id, run_name=sweep.get("run", self.workdir.name),
                                          tags=tags)
        self._run_id = created.info.run_id
        self._log_params(run["config"])

    def _log_params(self, config: dict) -> None:
        from mlflow.entities import Param  # noqa: PLC0415

        params = [Param(key, str(value)[:MAX_PARAM])
                  for key, value in sorted(config_lib.flatten(config).items())]
        for i in range(0, len(params), BATCH):
            self._client.log_batch(self._run_id, params=params[i:i + BATCH])

    def identity(self) -> dict:
        return {"run_id": self._run_id, "tracking_uri": self._uri}

    def _log(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric  # noqa: PLC0415

        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value in values.items()]
        for i in range(0, len(metrics), BATCH):
            self._client.log_batch(self._run_id, metrics=metrics[i:i + BATCH])

    def epoch(self, record: Mapping[str, object]) -> None:
        self._log(scalars(record), int(record["epoch"]))

    def results(self, epoch: int, results: Mapping[str, object],
                figures: Iterable[pathlib.Path] = ()) -> None:
        self._log(test_scalars(results), int(epoch))
        for path in figures:
            self._client.log_artifact(self._run_id, str(path), artifact_path="figures")

    def close(self) -> None:
        """Each log call is sent as it is made; the run stays open for a resume to add to."""


def _local_artifacts(uri: str, experiment: str) -> str | None:
    """Beside a local SQLite store, `<its folder>/mlartifacts/<experiment>`: MLflow's own
    default is ./mlruns in whatever folder the process runs in. Other stores (a tracking
    server) place artifacts themselves (None)."""
    if not uri.startswith("sqlite:///"):
        return None
    database = pathlib.Path(uri.removeprefix("sqlite:///"))
    return (database.resolve().parent / "mlartifacts" / experiment).as_uri()
