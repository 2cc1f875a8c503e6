"""The report: one table and five figures from whatever run workdirs exist.

`report` (and `vaejax sweep-report`) writes <workdir>/results.csv and results.md, one row per
run with its swept values, test metrics (`RESULT_COLUMNS`), wall time and status (finished,
diverged, damaged, epoch k, pending; a run whose records cannot be read back is reported
damaged, with the file and line, and the others are reported as usual), a mean ± std over
seeds where runs differ only in their seed, the epochs done and the time left (`progress`:
run it on a sweep that is still training), and <workdir>/figures/ (`FIGURES`:
rate_distortion, nll_vs_latent_dim, active_units_vs_beta, kl_per_unit, nll_by_run). It reads the run
workdirs, not a process's memory, so it merges the runs of every shard of a sweep.
"""

from __future__ import annotations

import csv
import io
import json
import pathlib
from typing import Sequence

import numpy as np

from vaejax import config as config_lib
from vaejax import records
from vaejax.sweep.plan import SWEEP_RECORD, short_names

RESULT_COLUMNS = ("test/neg_elbo", "test/nll", "test/rate", "test/distortion", "active_units")
# With eval.disentanglement, these scores join the tables (results.csv has every score).
DISENTANGLEMENT_COLUMNS = ("disentanglement/mig", "disentanglement/dci_disentanglement",
                           "disentanglement/sap", "disentanglement/modularity",
                           "disentanglement/beta_vae_eval_accuracy",
                           "disentanglement/factor_vae_eval_accuracy")
FIGURES = ("rate_distortion.png", "nll_vs_latent_dim.png", "active_units_vs_beta.png",
           "kl_per_unit.png", "nll_by_run.png")


def _result_columns(rows: list[dict], *, every_score: bool = False) -> list[str]:
    """RESULT_COLUMNS, then the disentanglement scores some run has (all of them, or the
    headline ones)."""
    scores = sorted({k for row in rows for k in row if k.startswith("disentanglement/")})
    if not every_score:
        scores = [k for k in DISENTANGLEMENT_COLUMNS if k in scores]
    return [*RESULT_COLUMNS, *scores]


def _wall_time(metrics: list[dict], results: dict | None) -> float | None:
    if not metrics:
        return None
    total = sum(r.get("epoch_time", 0.0) + r.get("compile_time", 0.0) for r in metrics)
    return total + ((results or {}).get("eval_time") or 0.0)


def _read_json_or_none(path: pathlib.Path):
    return records.read_json(path) if path.exists() else None


def collect(workdir, log=print) -> tuple[list[dict], list[str]]:
    """One row per run of the sweep in `workdir` (planned, or present under runs/), and the
    short names of the swept keys. Rows of runs not started have status "pending"."""
    sweep_dir = pathlib.Path(workdir)
    plan = _read_json_or_none(sweep_dir / SWEEP_RECORD)
    planned = {r["name"]: r for r in (plan or {}).get("runs", [])}
    names = list(planned)
    runs_dir = sweep_dir / "runs"
    if runs_dir.is_dir():
        names += sorted(p.name for p in runs_dir.iterdir() if p.name not in planned
                        and (p / records.RUN_RECORD).exists())
    rows, swept = [], {}
    for name in names:
        row, overrides = _row(name, runs_dir / name, plan, planned, log)
        swept.update(dict.fromkeys(overrides))
        rows.append(row)
    extra = [k for k in swept if k not in ("model.latent_dim", "objective.beta", "seed")]
    labels = short_names(extra)
    for row in rows:
        flat = row.pop("_config")
        row.update({labels[key]: flat.get(key) for key in extra})
    return rows, [labels[k] for k in extra]


def _row(name: str, run_dir: pathlib.Path, plan: dict | None, planned: dict, log):
    """The row of run `name` from its workdir `run_dir` (or, not started, from the sweep's
    `plan`), with its flat config under "_config"; returns (row, the run's swept overrides)."""
    record_damage = None
    try:
        record = _read_json_or_none(run_dir / records.RUN_RECORD)
    except records.DamagedRecordError as error:
        record, record_damage = None, {"message": str(error)}
    info = (record or {}).get("sweep") or planned.get(name, {})
    overrides = info.get("overrides", {})
    if record is not None:
        flat = config_lib.flatten(record["config"])
    else:
        flat = config_lib.flatten((plan or {}).get("base_config", {})) | dict(overrides)
    results, metrics, damage = _outcome(run_dir, record_damage, log)
    status = _status(run_dir, damage, results, metrics)
    if status == "damaged":
        log(f"sweep: {name}: damaged, left out of the table: {damage['message']}")
    row = {"name": name, "latent_dim": flat.get("model.latent_dim"),
           "beta": flat.get("objective.beta"), "seed": flat.get("seed"), "_config": flat}
    row.update({key: (results or {}).get(key) for key in RESULT_COLUMNS})
    row.update({k: v for k, v in (results or {}).items() if k.startswith("disentanglement/")})
    row["kl_per_dim"] = (results or {}).get("kl_per_dim")  # for the figures, not the table
    group = planned.get(name, {}).get("group") or info.get("group")  # the plan's names
    row.update(wall_time=_wall_time(metrics, results), status=status, group=group)
    row["_progress"] = _progress_of(status, metrics, results, flat.get("train.epochs") or 0)
    return row, overrides


def _outcome(run_dir: pathlib.Path, damage: dict | None, log):
    """A run's results.json (None if not there) and metrics.jsonl records, unless it is
    damaged already (`damage`, or its damaged.json); returns (results, metrics, damage), with
    damage {"message": ...} or None."""
    results, metrics = None, []
    damage = damage or _read_json_or_none(run_dir / records.DAMAGED)
    if damage is None:
        try:
            results = _read_json_or_none(run_dir / records.RESULTS)
            metrics = records.read_metrics(run_dir, log=log) if run_dir.is_dir() else []
        except records.DamagedRecordError as error:
            damage = {"message": str(error)}
    return results, metrics, damage


def _status(run_dir: pathlib.Path, damage, results, metrics) -> str:
    """"damaged", "finished", "diverged", "epoch <k>" (under way) or "pending"."""
    if damage is not None:
        return "damaged"
    if results is not None:
        return "finished"
    if (run_dir / records.DIVERGED).exists():
        return "diverged"
    if metrics:
        return f"epoch {metrics[-1]['epoch']}"
    return "pending"


def _progress_of(status: str, metrics: list[dict], results: dict | None, epochs: int) -> dict:
    """What `progress` reads of a run: epochs done of `epochs`, its median epoch time and its
    evaluation time (seconds; None where not measured), and whether it is damaged."""
    return {
        "done": epochs if status in ("finished", "diverged") else
                (metrics[-1]["epoch"] if metrics else 0),
        "epochs": epochs,
        "epoch_time": float(np.median([m["epoch_time"] for m in metrics])) if metrics else None,
        "eval_time": (results or {}).get("eval_time"),
        "damaged": status == "damaged"}


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.2f}"
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    return str(value)


def _markdown(rows: list[dict], columns: Sequence[str]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    out += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(out) + "\n"


def _over_seeds(rows: list[dict], keys: Sequence[str], results: Sequence[str]) -> list[dict]:
    """Mean and standard deviation over seeds of the finished runs with equal `keys`."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["status"] == "finished":
            key = tuple(json.dumps(row.get(k), default=str) for k in keys)
            groups.setdefault(key, []).append(row)
    out = []
    for members in groups.values():
        agg = {k: members[0].get(k) for k in keys}
        agg["seeds"] = len(members)
        for key in results:
            values = [m[key] for m in members if m.get(key) is not None]
            if values:
                agg[key] = f"{np.mean(values):.2f} ± {np.std(values):.2f}"
        out.append(agg)
    return out


def progress(rows: list[dict]) -> str:
    """How far a sweep has come, and the time left at the speed so far: "412 of 750 epochs,
    about 1.3 h left". Members of a group train together, so a group's time left is its
    slowest member's epochs left times its epoch time (measured, or else the median of the
    groups measured so far), plus one evaluation (its members are evaluated together,
    vmapped); groups run one after another (one process). "" when nothing has been measured yet."""
    from vaejax.progress import duration  # noqa: PLC0415

    counted = [r for r in rows if not r["_progress"]["damaged"]]
    done = sum(r["_progress"]["done"] for r in counted)
    total = sum(r["_progress"]["epochs"] for r in counted)
    times = [r["_progress"]["epoch_time"] for r in counted if r["_progress"]["epoch_time"]]
    evals = [r["_progress"]["eval_time"] for r in counted if r["_progress"]["eval_time"]]
    if not total:
        return ""
    text = f"{done} of {total} epochs"
    if not times or done == total:
        return text
    groups: dict = {}
    for row in counted:
        groups.setdefault(row.get("group") or row["name"], []).append(row["_progress"])
    typical = float(np.median(times))
    left = 0.0
    for members in groups.values():
        epochs_left = max(m["epochs"] - m["done"] for m in members)
        measured = [m["epoch_time"] for m in members if m["epoch_time"]]
        left += epochs_left * (float(np.median(measured)) if measured else typical)
    unfinished = sum(any(m["done"] < m["epochs"] for m in members)
                     for members in groups.values())
    left += unfinished * (float(np.median(evals)) if evals else 0.0)
    return (f"{text}, about {duration(left)} left at the speed so far"
            + ("" if evals else " (training only: no evaluation measured yet)"))


def report(workdir, log=print) -> list[dict]:
    """Writes `<workdir>`/results.csv, results.md and figures/ from the run workdirs that
    exist (every shard's); `vaejax sweep-report` calls it. Returns the rows."""
    sweep_dir = pathlib.Path(workdir)
    if not (sweep_dir / SWEEP_RECORD).exists() and not (sweep_dir / "runs").is_dir():
        raise FileNotFoundError(f"{sweep_dir} holds no sweep (no {SWEEP_RECORD}, no runs/).")
    rows, extra = collect(sweep_dir, log=log)
    columns = ["name", "latent_dim", "beta", "seed", *extra]
    after = ["wall_time", "status", "group"]
    _write_csv(sweep_dir / "results.csv", rows,
               columns + _result_columns(rows, every_score=True) + after)
    summary = _summary(rows)
    _write_markdown(sweep_dir, rows, columns + _result_columns(rows) + after, extra, summary)
    _draw_figures([r for r in rows if r["status"] == "finished"], sweep_dir / "figures")
    log(f"sweep: {summary} -> {sweep_dir / 'results.md'}, results.csv, figures/")
    return rows


def _write_csv(path: pathlib.Path, rows: list[dict], columns: Sequence[str]) -> None:
    """results.csv: the `columns` of every row ("" where a value is None)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row[c] for c in columns})
    records.atomic_write_text(path, buffer.getvalue())


def _summary(rows: list[dict]) -> str:
    """How many runs are finished, in progress, diverged, damaged and not started, and the
    epochs done and time left (`progress`): one line."""
    counts = {s: sum(r["status"] == s for r in rows)
              for s in ("finished", "diverged", "damaged", "pending")}
    running = len(rows) - sum(counts.values())
    summary = (f"{counts['finished']} of {len(rows)} runs finished"
               + (f", {running} in progress" if running else "")
               + (f", {counts['diverged']} diverged" if counts["diverged"] else "")
               + (f", {counts['damaged']} damaged" if counts["damaged"] else "")
               + (f", {counts['pending']} not started" if counts["pending"] else ""))
    so_far = progress(rows)
    summary += f"; {so_far}" if so_far else ""
    return summary


def _write_markdown(sweep_dir: pathlib.Path, rows: list[dict], columns: Sequence[str],
                    extra: Sequence[str], summary: str) -> None:
    """results.md: the `summary`, the mean ± std over seeds (where some setting has several),
    the table of runs and the figures."""
    text = [f"# Sweep {sweep_dir.name}\n", f"{summary}. Test metrics in nats per example; "
            "wall_time in seconds (a group's training and evaluation time, shared by its "
            "members, which train and are evaluated together).\n"]
    keys = ["latent_dim", "beta", *extra]
    results = _result_columns(rows)
    means = _over_seeds(rows, keys, results)
    if any(m["seeds"] > 1 for m in means):
        text += ["## Mean ± std over seeds\n", _markdown(means, [*keys, "seeds", *results])]
    text += ["## Runs\n", _markdown(rows, columns)]
    text += ["## Figures\n"] + [f"![{f}](figures/{f})\n" for f in FIGURES]
    records.atomic_write_text(sweep_dir / "results.md", "\n".join(text))


def _draw_figures(finished: list[dict], figures: pathlib.Path) -> None:
    """The `FIGURES` of the `finished` rows, in the folder `figures`."""
    from vaejax import plots  # noqa: PLC0415

    plots.rate_distortion(finished, figures / FIGURES[0])
    plots.nll_vs_latent_dim(finished, figures / FIGURES[1])
    plots.active_units_vs_beta(finished, figures / FIGURES[2])
    plots.kl_per_unit(finished, figures / FIGURES[3])
    plots.nll_by_run(finished, figures / FIGURES[4])
