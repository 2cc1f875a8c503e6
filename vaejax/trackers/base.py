"""The tracker interface, its registry, and the one object the loop, evaluation and sweeps use.

A tracker is a class registered in `TRACKERS` (or a user's `"module:attribute"`), built as
`Tracker(workdir, run, identity)` with

    run         the workdir's run.json (run["config"] is the resolved config; run["sweep"]
                names the sweep and group of a sweep's member)
    identity    what the tracker returned from `identity()` the last time the run was opened
                (<workdir>/trackers.json), or None the first time: a resumed run continues the
                same tracker run, and the config is logged once

and the methods

    identity() -> dict                      what to find this tracker run by next time
    epoch(record)                           one metrics.jsonl line, at step record["epoch"]
    results(epoch, results, figures)        results.json's numbers and the PNG figures
    close()

and the class attributes `package` (the module it imports) and `extra` (the pip extra that
installs it, or None). `Trackers` fans one call out to every tracker of `train.trackers`.
"""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib
from typing import Iterable, Mapping

import numpy as np

from vaejax import registry, records

TRACKERS = registry.Registry("tracker", "train.trackers")
DEFAULT = ("tensorboard",)
IDENTITIES = "trackers.json"  # <workdir>/trackers.json: {tracker name: its identity}
# Tracker settings of config.train, and the trackers that read each (`check` refuses one
# set away from its default when none of them is on).
SETTINGS = {"tracker_project": ("wandb", "mlflow"), "mlflow_tracking_uri": ("mlflow",)}
DEFAULTS = {"trackers": DEFAULT, "tracker_project": "vaejax", "mlflow_tracking_uri": ""}
# Not scalars to plot: the x axis itself.
AXES = ("epoch", "step")


def settings(config) -> dict:
    """`train.trackers` and the trackers' settings of a config (ConfigDict or a run.json's
    dict), with the defaults for a config recorded before they existed."""
    train = config.get("train") or {}
    return {key: train.get(key, default) for key, default in DEFAULTS.items()}


def check(config) -> None:
    """Refuses, before a run writes anything: an unknown tracker, one whose package is not
    installed (saying what to install), and a tracker setting that no chosen tracker reads."""
    chosen = settings(config)
    names = tuple(chosen["trackers"])
    if isinstance(chosen["trackers"], str) or len(set(names)) != len(names):
        raise ValueError(f"train.trackers={chosen['trackers']!r} must be a tuple of distinct "
                         f"names, e.g. ('tensorboard', 'wandb'); known: {TRACKERS.names()}.")
    for name in names:
        tracker = TRACKERS.get(name, search_path=config.get("experiment_dir"))
        package = getattr(tracker, "package", None)
        if package and importlib.util.find_spec(package) is None:
            extra = getattr(tracker, "extra", None)
            how = f"pip install 'vaejax[{extra}]'" if extra else f"pip install {package}"
            raise ValueError(f"train.trackers includes {name!r}, but {package} is not installed: "
                             f"{how}, or leave {name!r} out.")
    for key, readers in SETTINGS.items():
        if chosen[key] != DEFAULTS[key] and not set(readers) & set(names):
            raise ValueError(f"Refused, nothing was written: train.{key}={chosen[key]!r} is read "
                             f"only by the trackers {list(readers)}, and train.trackers={names!r} "
                             f"has none of them: add one or leave train.{key} out.")


def is_number(value) -> bool:
    return (isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
            and math.isfinite(float(value)))


def scalars(record: Mapping[str, object]) -> dict[str, float]:
    """The finite numbers of a metrics.jsonl line or results.json, but the axes (epoch, step)."""
    return {name: float(value) for name, value in record.items()
            if name not in AXES and is_number(value)}


def test_scalars(results: Mapping[str, object]) -> dict[str, float]:
    """The `test/*` numbers of a results.json, with `active_units` as `test/active_units`."""
    out = {name: value for name, value in scalars(results).items() if name.startswith("test/")}
    if is_number(results.get("active_units")):
        out["test/active_units"] = float(results["active_units"])
    return out


class Trackers:
    """Every tracker of one run's `train.trackers`, opened on its workdir: what the loop,
    evaluation and sweeps call, none of them knowing which trackers are on. A context manager;
    `close()` closes each."""

    def __init__(self, workdir):
        self.workdir = pathlib.Path(workdir)
        # a workdir the loop writes without a run record (a library caller's) gets the defaults
        has_run = (self.workdir / records.RUN_RECORD).exists()
        run = records.read_run_record(self.workdir) if has_run else {"config": {}}
        path = self.workdir / IDENTITIES
        saved = json.loads(path.read_text()) if path.exists() else {}
        self._trackers = {}
        for name in settings(run["config"])["trackers"]:
            tracker = TRACKERS.get(name, search_path=run["config"].get("experiment_dir"))
            self._trackers[name] = tracker(self.workdir, run, saved.get(name))
        identities = {**saved, **{name: t.identity() for name, t in self._trackers.items()}}
        if identities != saved:
            records.write_json(path, identities)

    @property
    def names(self) -> list[str]:
        return list(self._trackers)

    def epoch(self, record: Mapping[str, object]) -> None:
        for tracker in self._trackers.values():
            tracker.epoch(record)

    def results(self, epoch: int, results: Mapping[str, object],
                figures: Iterable[pathlib.Path] = ()) -> None:
        figures = list(figures)
        for tracker in self._trackers.values():
            tracker.results(epoch, results, figures)

    def close(self) -> None:
        for tracker in self._trackers.values():
            tracker.close()

    def __enter__(self) -> "Trackers":
        return self

    def __exit__(self, *_) -> None:
        self.close()


def open_run(workdir) -> Trackers:
    """The trackers of the run in `workdir` (its run.json says which), ready to log."""
    return Trackers(workdir)
