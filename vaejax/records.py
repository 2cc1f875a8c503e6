"""What a workdir records: `run.json` (config, seed, versions, backend, git commit),
`metrics.jsonl` (one line per epoch) and `results.json` (evaluation). All writes are atomic.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

import jax

from vaejax import config as config_lib
from vaejax.files import atomic_write_text

RUN_RECORD = "run.json"
METRICS = "metrics.jsonl"
RESULTS = "results.json"
DIVERGED = "diverged.json"  # written by the loop when a member's loss becomes NaN/Inf
DAMAGED = "damaged.json"  # written by a sweep for a member whose records cannot be read back
# Config keys a resumed run may change: they do not alter the training trajectory.
# (experiment_dir: where the experiment file was read from, which moves with the checkout.)
RESUMABLE_CHANGES = ("train.epochs", "train.checkpoint_every", "train.keep_checkpoints",
                     "train.keep_every", "train.progress_every", "experiment_dir",
                     # where the numbers are shown, not what they are (`vaejax.trackers`)
                     "train.trackers", "train.tracker_project", "train.mlflow_tracking_uri")


def write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


class DamagedRecordError(ValueError):
    """A record that cannot be read back as written: the message names the file and line."""


def read_json(path):
    """The JSON object in `path`; a damaged file raises `DamagedRecordError` naming it."""
    path = pathlib.Path(path)
    text = path.read_text()
    try:
        return json.loads(text)
    except ValueError as error:
        raise DamagedRecordError(
            f"{path} is damaged ({len(text)} bytes; {error}). Restore it from a copy."
        ) from None


def missing_figures(workdir) -> list[str] | None:
    """None if `workdir` has no readable results.json; else the figures its results.json
    lists (`figures`; it is written after them) that are missing or cut short on disk:
    empty when the evaluation is complete."""
    path = pathlib.Path(workdir) / RESULTS
    try:
        results = read_json(path)
    except (FileNotFoundError, DamagedRecordError):
        return None
    return [name for name in results.get("figures", [])
            if not _whole_png(pathlib.Path(workdir) / "figures" / name)]


def _whole_png(path: pathlib.Path) -> bool:
    """The file exists and ends with PNG's IEND chunk (a cut file does not)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 12))
            return f.read().startswith(b"\x00\x00\x00\x00IEND")
    except OSError:
        return False


def evaluated(workdir) -> bool:
    """results.json is readable and every figure it lists is on disk."""
    return missing_figures(workdir) == []


def mark_damaged(workdir, error: DamagedRecordError, *, log=print, label="sweep") -> None:
    """Marks a sweep run whose records cannot be read back (`damaged.json`, with the reason):
    it is left as it is, reported as damaged, and the other runs carry on."""
    write_json(pathlib.Path(workdir) / DAMAGED, {"message": str(error)})
    log(f"{label}: {pathlib.Path(workdir).name}: damaged, left as it is ({DAMAGED}): {error}")


def set_aside_if_damaged(path, *, log=print) -> None:
    """Moves a JSON record that does not read back to `<name>.damaged-<time>`, never deleting it."""
    path = pathlib.Path(path)
    try:
        if path.exists():
            read_json(path)
    except DamagedRecordError as error:
        aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(path, aside)
        log(f"records: {error} Moved to {aside}; it is written again.")


def package_versions() -> dict[str, str]:
    names = ["vaejax", "jax", "jaxlib", "flax", "optax", "chex", "orbax-checkpoint", "numpy",
             "ml_collections"]
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> dict | None:
    """The commit of the code that runs (the vaejax checkout), and whether it had edits."""
    root = pathlib.Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def hardware() -> dict:
    """This machine's CPU model and cores (and the cores this process may use)."""
    model = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(),
            "cores_used": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}


def environment() -> dict:
    devices = jax.devices()
    return {
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "process_count": jax.process_count(),
        "platform": platform.platform(),
        "hardware": hardware(),
        "versions": package_versions(),
        "git": git_commit(),
    }


def config_differences(a: dict, b: dict) -> list[str]:
    """The flattened keys where two recorded configs differ, each read in today's layout
    (`config.upgrade`), so a setting added since `a` was recorded is not a difference."""
    fa, fb = config_lib.flatten(config_lib.upgrade(a)), config_lib.flatten(config_lib.upgrade(b))
    keys = sorted(set(fa) | set(fb))
    return [k for k in keys if _normalize(fa.get(k)) != _normalize(fb.get(k))]


def _normalize(value):
    """Tuples (as configs hold them, nested too) and lists (as JSON reads them) alike."""
    return [_normalize(v) for v in value] if isinstance(value, (tuple, list)) else value


def write_run_record(workdir, config, *, data_source: str) -> None:
    """Writes run.json for a new run; for a resumed run, checks the config is the same."""
    path = pathlib.Path(workdir) / RUN_RECORD
    resolved = config_lib.to_dict(config)
    if path.exists():
        record = read_json(path)
        diff = [k for k in config_differences(record["config"], resolved)
                if k not in RESUMABLE_CHANGES]
        if diff:
            raise ValueError(
                f"{workdir} was started with another config; these keys differ: {diff}. "
                f"A resumed run may change only {list(RESUMABLE_CHANGES)}. Use a new --workdir.")
        record["config"] = resolved
        record.setdefault("resumed", []).append(time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    else:
        record = {
            "config": resolved,
            "seed": config.seed,
            "data_source": data_source,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": sys.argv,
            **environment(),
        }
    write_json(path, record)


def read_run_record(workdir) -> dict:
    path = pathlib.Path(workdir) / RUN_RECORD
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {workdir} a vaejax workdir?")
    return read_json(path)


def run_config(workdir):
    """The resolved config a workdir was trained with."""
    return config_lib.from_dict(config_lib.upgrade(read_run_record(workdir)["config"]))


def _read_metrics(path: pathlib.Path) -> tuple[list[dict], str | None]:
    """The epoch records of `path` and, if its last line is torn, a message saying so."""
    if not path.exists():
        return [], None
    lines = path.read_text().split("\n")
    last = max((n for n, line in enumerate(lines, 1) if line.strip()), default=0)
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as error:
            if n == last:  # what a kill in the middle of a write leaves: droppable
                return rows, (f"records: {path}:{n}: the last line is torn ({error}), as an "
                              "interrupted write leaves it; it is dropped and its epoch is "
                              "trained again")
            raise DamagedRecordError(
                f"{path}:{n}: not a JSON record ({error}); the other lines are intact. Repair "
                f"or remove line {n}, or restart the run with --overwrite (the old run is "
                "moved aside).") from None
        expected = rows[-1]["epoch"] + 1 if rows else 1
        if not isinstance(row, dict) or row.get("epoch") != expected:
            found = row.get("epoch") if isinstance(row, dict) else row
            raise DamagedRecordError(
                f"{path}:{n}: holds epoch {found} where epoch {expected} belongs: records are "
                f"missing or repeated. Restore the file, or restart the run with --overwrite "
                "(the old run is moved aside).")
        rows.append(row)
    return rows, None


def read_metrics(workdir, *, log=print) -> list[dict]:
    """The epoch records of a run, epochs 1, 2, ... in order. A torn last line is dropped
    (and said); any other damage, or a missing or repeated epoch, raises
    `DamagedRecordError` naming the file and line."""
    rows, torn = _read_metrics(pathlib.Path(workdir) / METRICS)
    if torn:
        log(torn)
    return rows


def last_metrics(workdir) -> dict | None:
    rows = read_metrics(workdir)
    return rows[-1] if rows else None


def _write_metrics(workdir, rows: list[dict]) -> None:
    atomic_write_text(pathlib.Path(workdir) / METRICS,
                      "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def append_metrics(workdir, record: dict) -> None:
    """Appends one epoch's record (rewritten atomically: small file, never torn)."""
    _write_metrics(workdir, read_metrics(workdir) + [record])


def truncate_metrics(workdir, last_epoch: int, *, log=print) -> None:
    """Keeps the records of epochs 1..`last_epoch` (a resumed run trains the later ones
    again), dropping a torn last line. Raises `DamagedRecordError` if the records stop
    before `last_epoch`, the epoch of the checkpoint the run resumes from."""
    path = pathlib.Path(workdir) / METRICS
    rows, torn = _read_metrics(path)
    kept = [r for r in rows if r["epoch"] <= last_epoch]
    if len(kept) < last_epoch:
        raise DamagedRecordError(
            f"{path} holds the records of epochs 1..{len(kept)}, but the run resumes from "
            f"the checkpoint of epoch {last_epoch}: the records of epochs {len(kept) + 1}.."
            f"{last_epoch} are lost. Restore the file, or restart the run with --overwrite "
            "(the old run is moved aside).")
    if torn:
        log(torn)
    if torn or len(kept) != len(rows):
        _write_metrics(workdir, kept)
