"""`vaejax reproduce`: retrain a run from its record and compare every metric.

On the same backend and device kind, a vaejax run is bitwise reproducible: every metric
in metrics.jsonl and results.json must match exactly. Timings (`loop.TIMING_KEYS`) are
measurements of the machine and are reported, not compared.
"""

from __future__ import annotations

import math
import pathlib

from vaejax import config as config_lib
from vaejax import loop, records
from vaejax import train as train_lib


def _comparable(row: dict) -> dict:
    row = {k: v for k, v in row.items() if k not in loop.TIMING_KEYS and not k.endswith("_time")}
    if isinstance(row.get("eval_settings"), dict):  # recorded before a setting was added
        row["eval_settings"] = config_lib.upgrade_eval_settings(row["eval_settings"])
    return row


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def compare_runs(original, replica) -> list[str]:
    """Human-readable differences between the metrics and results of two workdirs."""
    diffs = []
    rows_a, rows_b = records.read_metrics(original), records.read_metrics(replica)
    if len(rows_a) != len(rows_b):
        diffs.append(f"metrics.jsonl: {len(rows_a)} epochs vs {len(rows_b)}")
    for a, b in zip(rows_a, rows_b):
        a, b = _comparable(a), _comparable(b)
        for key in sorted(set(a) | set(b)):
            if not _same(a.get(key), b.get(key)):
                diffs.append(f"epoch {a.get('epoch')}: {key} {a.get(key)!r} vs {b.get(key)!r}")
    paths = [pathlib.Path(w) / records.RESULTS for w in (original, replica)]
    if all(p.exists() for p in paths):
        a, b = (_comparable(records.read_json(p)) for p in paths)
        for key in sorted(set(a) | set(b)):
            if not _same(a.get(key), b.get(key)):
                diffs.append(f"results.json: {key} {a.get(key)!r} vs {b.get(key)!r}")
    elif any(p.exists() for p in paths):
        diffs.append("results.json exists in only one of the two runs")
    return diffs


def check_record(record: dict, path) -> None:
    """A run record must agree with itself: its top-level `seed` is its config's."""
    seed, config_seed = record.get("seed"), record.get("config", {}).get("seed")
    if seed != config_seed:
        raise ValueError(
            f"{path} contradicts itself: its seed is {seed!r} but its config.seed is "
            f"{config_seed!r}, so it does not say which run it records. Repair the file (the "
            "run's metrics were trained with config.seed).")


def setting_differences(record: dict, replica: dict) -> list[str]:
    """What differs between two run records before any metric: config keys, data source,
    backend and device, package versions and code commit."""
    diffs = [f"config: {key}" for key in records.config_differences(record["config"],
                                                                     replica["config"])
             if key not in records.RESUMABLE_CHANGES]
    for key in ("seed", "data_source", "backend", "device_kind", "device_count"):
        a, b = record.get(key), replica.get(key)
        if key == "data_source":  # where the cache lies is not a setting: where it came from is
            a, b = _origin(a), _origin(b)
        if a != b:
            diffs.append(f"{key}: {record.get(key)!r} vs {replica.get(key)!r}")
    versions_a, versions_b = record.get("versions") or {}, replica.get("versions") or {}
    for name in sorted(set(versions_a) | set(versions_b)):
        if versions_a.get(name) != versions_b.get(name):
            diffs.append(f"{name} version: {versions_a.get(name)} vs {versions_b.get(name)}")
    commit_a = (record.get("git") or {}).get("commit")
    commit_b = (replica.get("git") or {}).get("commit")
    if commit_a != commit_b:
        diffs.append(f"code commit: {commit_a} vs {commit_b}")
    return diffs


def _origin(data_source):
    """"cache:<file> (from idx:<folder>)" -> "idx:<folder>"; other sources as they are."""
    text = str(data_source)
    if text.startswith("cache:") and " (from " in text:
        return text.split(" (from ", 1)[1].rstrip(")")
    return text


def _evaluate_as_the_original(config, results: dict, *, log) -> None:
    """Sets `config.eval` to the settings the original's results.json was evaluated with: a
    `vaejax eval --config.eval.iwae_samples=5000` after training changes them, and the
    replica's results must be computed the same way to compare. Older results.json files
    name only K and the number of test images."""
    settings = results.get("eval_settings") or {
        key: results[key] for key in ("iwae_samples", "num_test_examples") if key in results}
    changed = {k: v for k, v in settings.items() if k in config.eval and config.eval[k] != v}
    for key, value in changed.items():
        config.eval[key] = tuple(value) if isinstance(value, list) else value
    if changed:
        log("reproduce: evaluating as the original's results.json was: "
            + ", ".join(f"eval.{k}={v!r}" for k, v in changed.items()))


def reproduce(original, workdir, *, log=print) -> dict:
    """Retrains `original`'s recorded config in `workdir`; returns and writes a report whose
    differences list the differing settings (config, machine, versions, commit) first,
    then the metrics."""
    record = records.read_run_record(original)
    check_record(record, pathlib.Path(original) / records.RUN_RECORD)
    config = records.run_config(original)
    evaluate = (pathlib.Path(original) / records.RESULTS).exists()
    if evaluate:
        _evaluate_as_the_original(config, records.read_json(pathlib.Path(original) / records.RESULTS),
                                  log=log)
    train_lib.train(config, workdir, evaluate_at_end=evaluate, log=log)
    replica = records.read_run_record(workdir)
    same_machine = all(record.get(k) == replica.get(k) for k in ("backend", "device_kind"))
    settings = setting_differences(record, replica)
    metrics = compare_runs(original, workdir)
    diffs = [f"setting {d}" for d in settings] + metrics if metrics else []
    report = {
        "original": str(original),
        "replica": str(workdir),
        "match": not metrics,
        "differences": diffs,
        "setting_differences": settings,
        "same_backend": same_machine,
        "original_backend": f"{record.get('backend')} ({record.get('device_kind')})",
        "replica_backend": f"{replica.get('backend')} ({replica.get('device_kind')})",
    }
    records.write_json(pathlib.Path(workdir) / "reproduce.json", report)
    if metrics:
        log("reproduce: MISMATCH. "
            + (f"Settings that differ: {'; '.join(settings)}. " if settings
               else "The records show no differing setting. ")
            + f"{len(metrics)} metrics differ (first: {metrics[0]})"
            + ("" if same_machine else "; the backends differ, so exact equality is not expected"))
    else:
        log(f"reproduce: every metric matches {original} exactly")
    return report
