"""`vaejax reproduce`: retrain a run from its record and compare every metric.

On the same backend and device kind, a vaejax run is bitwise reproducible: every metric
in metrics.jsonl and results.json must match exactly. Timings (`loop.TIMING_KEYS`) are
measurements of the machine and are reported, not compared.
"""

from __future__ import annotations

import math
import pathlib

from vaejax import loop, records
from vaejax import train as train_lib


def _comparable(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in loop.TIMING_KEYS
            and not k.endswith("_time")}


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


def reproduce(original, workdir, *, log=print) -> dict:
    """Retrains `original`'s recorded config in `workdir`; returns and writes a report."""
    record = records.read_run_record(original)
    config = records.run_config(original)
    evaluate = (pathlib.Path(original) / records.RESULTS).exists()
    train_lib.train(config, workdir, evaluate_at_end=evaluate, log=log)
    replica = records.read_run_record(workdir)
    same_machine = all(record.get(k) == replica.get(k) for k in ("backend", "device_kind"))
    diffs = compare_runs(original, workdir)
    report = {
        "original": str(original),
        "replica": str(workdir),
        "match": not diffs,
        "differences": diffs,
        "same_backend": same_machine,
        "original_backend": f"{record.get('backend')} ({record.get('device_kind')})",
        "replica_backend": f"{replica.get('backend')} ({replica.get('device_kind')})",
    }
    records.write_json(pathlib.Path(workdir) / "reproduce.json", report)
    if diffs:
        log(f"reproduce: MISMATCH, {len(diffs)} differences (first: {diffs[0]})"
            + ("" if same_machine else "; the backends differ, so exact equality is not expected"))
    else:
        log(f"reproduce: every metric matches {original} exactly")
    return report
