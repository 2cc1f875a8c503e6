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
import tempfile
import time

import jax

from vaejax import config as config_lib

RUN_RECORD = "run.json"
METRICS = "metrics.jsonl"
RESULTS = "results.json"
DIVERGED = "diverged.json"  # written by the loop when a member's loss becomes NaN/Inf
# Config keys a resumed run may change: they do not alter the training trajectory.
# (experiment_dir: where the experiment file was read from, which moves with the checkout.)
RESUMABLE_CHANGES = ("train.epochs", "train.checkpoint_every", "train.keep_checkpoints",
                     "experiment_dir")


def atomic_write_text(path, text: str) -> None:
    """Writes `text` to `path` via a temporary file and a rename: never a half-written file."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path):
    return json.loads(pathlib.Path(path).read_text())


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


def environment() -> dict:
    devices = jax.devices()
    return {
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "process_count": jax.process_count(),
        "platform": platform.platform(),
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
    return list(value) if isinstance(value, tuple) else value


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


def read_metrics(workdir) -> list[dict]:
    path = pathlib.Path(workdir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def last_metrics(workdir) -> dict | None:
    rows = read_metrics(workdir)
    return rows[-1] if rows else None


def append_metrics(workdir, record: dict) -> None:
    """Appends one epoch's record (rewritten atomically: small file, never torn)."""
    rows = read_metrics(workdir) + [record]
    atomic_write_text(pathlib.Path(workdir) / METRICS,
                      "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def truncate_metrics(workdir, last_epoch: int) -> None:
    """Drops records after `last_epoch` (epochs that a resumed run will train again)."""
    rows = read_metrics(workdir)
    kept = [r for r in rows if r["epoch"] <= last_epoch]
    if len(kept) != len(rows):
        atomic_write_text(pathlib.Path(workdir) / METRICS,
                          "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
