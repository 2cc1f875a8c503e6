"""Published results as records: what a study page shows, kept small and checkable.

A study is a folder `docs/<study>/` holding

    report.py             render(records, out_dir) -> README blocks: writes results.md and figures;
                          KNOWN_ROWS, the row names it knows (optional: another row is refused)
    records/<row>/        one per reported run, copied from its workdir by `vaejax record`:
        command.json      {"experiment": "experiments/x.py", "overrides": ["a.b=v", ...], "argv": [...]}
        run.json          the workdir's: resolved config, seed, versions, commit, hardware
        results.json      the final evaluation (absent while the run trains)
        evals/*.json      evaluations of kept checkpoints (learning-curve points)
        train.json        the training curve thinned to <= 200 epochs, its time and epoch count

`vaejax report docs/<study>` regenerates the page, its figures and the README's blocks from
the records alone; `vaejax report --check docs/<study>` fails, naming what differs, when

- the documented command resolved today (the experiment file plus the record's overrides)
  gives another config than the recorded one (every differing key, with both values);
- the committed page, a figure's content (`plots.content_digest`) or a README block differ
  from what the records generate;
- a record is missing a file or a field, or cannot be read.

Checkpoints and datasets are never records: a record is a few JSON files.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import pathlib
import re
import shutil
import tempfile
from typing import Any

import numpy as np

from vaejax import config as config_lib
from vaejax import plots, records

RECORDS = "records"
COMMAND = "command.json"
TRAIN = "train.json"
PAGE = "results.md"
README = "README.md"
TRAIN_CURVE_POINTS = 200

# Fields every record must have: run.json's, and each evaluation's (results.json, evals/*.json).
RUN_FIELDS = ("config", "seed", "command", "versions", "git", "hardware")
EVAL_FIELDS = ("epoch", "test/neg_elbo", "num_test_examples", "active_units", "latent_dim")
NLL_FIELDS = ("test/nll", "test/nll_stderr", "iwae_samples")  # with an IWAE estimate
TRAIN_FIELDS = ("epochs", "train_seconds", "median_epoch_seconds", "curve")
# Settings that change where a run was trained or shown, not what it computed.
MACHINE_KEYS = ("experiment_dir", "train.trackers", "train.tracker_project",
                "train.mlflow_tracking_uri")


class RecordError(ValueError):
    """A record that is missing a file or a field, or cannot be read."""


@dataclasses.dataclass(frozen=True)
class Record:
    """One reported run: `run` (run.json), `results` (None while training), `evals` (sorted
    by epoch), `train` (train.json) and `command` (command.json)."""

    name: str
    path: pathlib.Path
    command: dict
    run: dict
    results: dict | None
    evals: list[dict]
    train: dict

    @property
    def config(self) -> dict:
        return self.run["config"]

    def curve(self, **match) -> list[dict]:
        """The evaluations (kept checkpoints, then the final one) whose fields equal `match`
        (e.g. iwae_samples=5000), one per epoch, sorted by epoch."""
        points = {e["epoch"]: e for e in self.evals if all(e.get(k) == v for k, v in match.items())}
        if self.results is not None and all(self.results.get(k) == v for k, v in match.items()):
            points[self.results["epoch"]] = self.results
        return [points[e] for e in sorted(points)]


# -- writing a record from a workdir --------------------------------------------------------

def documented_command(run: dict, repo: pathlib.Path) -> dict:
    """{"experiment", "overrides", "argv"} of a run.json: the experiment file (relative to
    `repo`) and the overrides that, applied to its get_config(), gave the run's config."""
    argv = [str(a) for a in run["command"]]
    sweep = run.get("sweep")
    if sweep is not None:  # vaejax sweep FILE ...: the file, then this run's point of the sweep
        file = next(a for a in argv[2:] if not a.startswith("-") and a.endswith(".py"))
        overrides = [a.removeprefix("--config.") for a in argv if a.startswith("--config.")]
        overrides += [f"{k}={v}" for k, v in sweep["overrides"].items()]
    else:  # vaejax train --config FILE [--config.a.b=v ...]
        if "--config" not in argv:
            raise RecordError("the run was started without --config (resumed from its own "
                              "record): its documented command is not known")
        file = argv[argv.index("--config") + 1]
        overrides = [a.removeprefix("--config.") for a in argv if a.startswith("--config.")]
    path = pathlib.Path(file)
    if path.is_absolute():
        try:
            path = path.relative_to(repo)
        except ValueError:
            pass
    return {"experiment": str(path), "overrides": overrides, "argv": argv}


def write_record(workdir, dest, *, repo=None, log=print) -> pathlib.Path:
    """Copies what a page needs of `workdir` into the record folder `dest`: run.json (with the
    CPU added where the run predates recording it), results.json, evals/, command.json and
    train.json. Updating the record of the same run (more epochs, more curve points) is the
    normal case; a record of another run (another config or seed) is refused."""
    workdir, dest = pathlib.Path(workdir), pathlib.Path(dest)
    repo = pathlib.Path(repo) if repo else pathlib.Path.cwd()
    run = records.read_run_record(workdir)
    if "hardware" not in run:  # a run.json from before vaejax recorded it: this machine's CPU,
        # but not the cores the training could use (this process's affinity is not the run's)
        run["hardware"] = {**records.hardware(), "cores_used": None}
    if (dest / records.RUN_RECORD).exists():
        old = records.read_json(dest / records.RUN_RECORD)
        diff = _differences(old["config"], run["config"])
        if diff or old.get("seed") != run.get("seed"):
            raise RecordError(f"{dest} records another run (differences: {diff or 'seed'}); "
                              "give the new one its own folder, or remove the old one first.")
    metrics = records.read_metrics(workdir, log=log)
    if not metrics:
        raise RecordError(f"{workdir} has no training epochs yet: nothing to record.")
    dest.mkdir(parents=True, exist_ok=True)
    records.write_json(dest / COMMAND, documented_command(run, repo))
    records.write_json(dest / records.RUN_RECORD, run)
    records.write_json(dest / TRAIN, train_summary(metrics))
    if (workdir / records.RESULTS).exists():
        records.write_json(dest / records.RESULTS, records.read_json(workdir / records.RESULTS))
    evals = sorted((workdir / "evals").glob("*.json")) if (workdir / "evals").is_dir() else []
    for path in evals:
        (dest / "evals").mkdir(exist_ok=True)
        shutil.copyfile(path, dest / "evals" / path.name)
    log(f"record: {workdir} -> {dest} (epoch {metrics[-1]['epoch']}, {len(evals)} curve points"
        f"{', final results' if (workdir / records.RESULTS).exists() else ''})")
    return dest


def train_summary(metrics: list[dict]) -> dict:
    """The training metrics of every epoch, reduced to what a page shows: the epoch count, the
    training time (seconds, compilation included), the median epoch time, and the curve at
    <= TRAIN_CURVE_POINTS epochs, log-spaced (every epoch of a short run)."""
    epochs = np.array([m["epoch"] for m in metrics])
    keep = np.unique(np.geomspace(1, len(metrics), TRAIN_CURVE_POINTS).astype(int) - 1)
    fields = ("epoch", "train/loss", "train/rate", "train/distortion", "lr")
    return {
        "epochs": int(epochs[-1]),
        "train_seconds": float(sum(m["epoch_time"] + m.get("compile_time", 0.0) for m in metrics)),
        "median_epoch_seconds": float(np.median([m["epoch_time"] for m in metrics])),
        "curve": [{k: metrics[i][k] for k in fields if k in metrics[i]} for i in keep],
    }


# -- reading and checking ---------------------------------------------------------------------

def _read(path: pathlib.Path, fields=()) -> Any:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RecordError(f"{path}: cannot be read ({error})") from None
    if fields == EVAL_FIELDS and any(f in value for f in NLL_FIELDS):
        fields = EVAL_FIELDS + NLL_FIELDS
    missing = [f for f in fields if f not in value]
    if missing:
        raise RecordError(f"{path}: missing field(s) {missing}")
    return value


def read_record(path) -> Record:
    """The record in folder `path`; a RecordError names the file and field that is wrong."""
    path = pathlib.Path(path)
    for name in (COMMAND, records.RUN_RECORD, TRAIN):
        if not (path / name).exists():
            raise RecordError(f"{path / name}: missing")
    results = path / records.RESULTS
    evals = sorted((path / "evals").glob("*.json")) if (path / "evals").is_dir() else []
    return Record(
        name=path.name, path=path,
        command=_read(path / COMMAND, ("experiment", "overrides", "argv")),
        run=_read(path / records.RUN_RECORD, RUN_FIELDS),
        results=_read(results, EVAL_FIELDS) if results.exists() else None,
        evals=sorted((_read(e, EVAL_FIELDS) for e in evals), key=lambda e: e["epoch"]),
        train=_read(path / TRAIN, TRAIN_FIELDS))


# -- what every study page writes the same way ---------------------------------------------

def hardware_name(hardware: dict) -> str:
    """A run.json's hardware as a page states it: "CPU (N cores)", or "(N cores, M used)"."""
    used = hardware.get("cores_used")
    return f"{hardware['cpu']} ({hardware['cores']} cores" + (f", {used} used)" if used else ")")


def hardware_of(records: dict[str, Record]) -> str:
    """The machines `records` were trained on, one entry per CPU and core count, joined by
    "; ": "CPU (N cores)", with the cores the runs used where run.json recorded them ("N
    cores, 1 used"; "... where recorded" when some older records did not)."""
    machines: dict[tuple, set] = {}
    for record in records.values():
        hardware = record.run["hardware"]
        machines.setdefault((hardware["cpu"], hardware["cores"]), set()).add(hardware.get("cores_used"))
    entries = []
    for (cpu, cores), used in sorted(machines.items()):
        known = sorted(u for u in used if u)
        where = " where recorded" if known and len(known) < len(used) else ""
        entries.append(f"{cpu} ({cores} cores" + (f", {'/'.join(map(str, known))} used{where})"
                                                  if known else ")"))
    return "; ".join(entries)


def nll_cell(results: dict) -> str:
    """'85.65 ± 0.22': a results.json's (or curve point's) test NLL ± its standard error."""
    return f"{results['test/nll']:.2f} ± {results['test/nll_stderr']:.2f}"


def active_units_cell(results: dict) -> str:
    """'109/150 (z1 100, z2 9)': active units in all, and per latent variable when several."""
    by = results.get("active_units_by_variable") or {}
    per = f" ({', '.join(f'{k} {v}' for k, v in by.items())})" if len(by) > 1 else ""
    return f"{results['active_units']}/{results['latent_dim']}{per}"


def read_records(study) -> dict[str, Record]:
    """Every record of a study, by row name (sorted)."""
    folder = pathlib.Path(study) / RECORDS
    if not folder.is_dir():
        raise RecordError(f"{folder}: missing (a study's page is generated from its records)")
    return {p.name: read_record(p) for p in sorted(folder.iterdir()) if p.is_dir()}


def _differences(recorded: dict, resolved: dict) -> list[str]:
    return [k for k in records.config_differences(recorded, resolved)
            if k not in MACHINE_KEYS]


def config_drift(record: Record, repo) -> list[str]:
    """'key: recorded X, resolved today Y' for every key where the documented command, resolved
    today, gives another config than the record's."""
    repo = pathlib.Path(repo)
    command = record.command
    config = config_lib.load_config(repo / command["experiment"], command["overrides"])
    resolved = config_lib.to_dict(config)
    flat_old = config_lib.flatten(config_lib.upgrade(record.config))
    flat_new = config_lib.flatten(config_lib.upgrade(resolved))
    return [f"{key}: recorded {flat_old.get(key, '(absent)')!r}, resolved today "
            f"{flat_new.get(key, '(absent)')!r}" for key in _differences(record.config, resolved)]


def _load_report(study: pathlib.Path):
    path = study / "report.py"
    spec = importlib.util.spec_from_file_location(f"vaejax_study_{study.name}", path)
    if spec is None or not path.exists():
        raise RecordError(f"{path}: missing (it defines render(records, out_dir))")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render(study, out_dir=None) -> tuple[list[pathlib.Path], dict[str, str]]:
    """Runs the study's `render(records, out_dir)`: the files it wrote (relative to out_dir,
    the study folder by default) and its README blocks ({name: markdown})."""
    study = pathlib.Path(study)
    out_dir = study if out_dir is None else pathlib.Path(out_dir)
    before = {p: p.stat().st_mtime_ns for p in out_dir.rglob("*") if p.is_file()}
    report = _load_report(study)
    records = read_records(study)
    unknown = sorted(set(records) - set(getattr(report, "KNOWN_ROWS", records)))
    if unknown:
        raise RecordError(f"{study / RECORDS}: rows {unknown} are not among the rows that "
                          f"{study / 'report.py'} knows (KNOWN_ROWS): add them there or remove "
                          "their records")
    blocks = report.render(records, out_dir) or {}
    written = sorted(p.relative_to(out_dir) for p in out_dir.rglob("*") if p.is_file()
                     and RECORDS not in p.relative_to(out_dir).parts
                     and before.get(p) != p.stat().st_mtime_ns)
    return written, blocks


def _block_pattern(study: pathlib.Path, name: str) -> re.Pattern:
    tag = f"{study.as_posix().rstrip('/')}:{name}"
    return re.compile(rf"(<!-- report {re.escape(tag)} -->\n)(.*?)(<!-- /report -->)", re.S)


def block_pages(readme, repo=".") -> list[pathlib.Path]:
    """The pages that may hold a study's blocks: the README and the docs site's pages."""
    docs = pathlib.Path(repo) / "docs"
    pages = sorted(p for p in docs.rglob("*.md") if RECORDS not in p.relative_to(docs).parts) \
        if docs.is_dir() else []
    return [pathlib.Path(readme), *pages]


def update_blocks(pages, study, blocks: dict[str, str], *, check=False) -> list[str]:
    """Writes each block between `<!-- report docs/<study>:<name> -->` and `<!-- /report -->`
    wherever `pages` (the README, the docs pages) hold its marker (with check=True, only says
    which differ). A block with no marker in any page is an error: a page must say where it
    goes."""
    if not blocks:
        return []
    study, problems, placed = pathlib.Path(study), [], set()
    for page in map(pathlib.Path, pages):
        text = original = page.read_text()
        for name, block in blocks.items():
            for match in reversed(list(_block_pattern(study, name).finditer(text))):
                placed.add(name)
                if match.group(2) != block:
                    problems.append(f"{page}: block {study.as_posix()}:{name} differs from what "
                                    "the records generate")
                    text = text[:match.start(2)] + block + text[match.end(2):]
        if not check and text != original:
            records.atomic_write_text(page, text)
    problems += [f"{pages[0]}: no '<!-- report {study.as_posix()}:{name} -->' ... "
                 "'<!-- /report -->' block for it (in it or in a docs page)"
                 for name in blocks if name not in placed]
    return problems


def report(study, *, readme=README) -> list[pathlib.Path]:
    """`vaejax report docs/<study>`: the page, figures and README blocks from the records."""
    study = pathlib.Path(study)
    written, blocks = render(study)
    problems = [p for p in update_blocks(block_pages(readme), study, blocks) if "no '<!--" in p]
    if problems:
        raise RecordError("; ".join(problems))
    return written


def check(study, *, repo=".", readme=README) -> list[str]:
    """What `vaejax report --check` finds wrong with a study (empty: all current). `study` is
    the study's folder relative to `repo` (as the README's block markers name it)."""
    study, repo = pathlib.Path(study), pathlib.Path(repo)
    folder = study if study.is_absolute() else repo / study
    try:
        recs = read_records(folder)
    except RecordError as error:
        return [str(error)]
    if not recs:
        return [f"{study / RECORDS}: no records"]
    problems = []
    for name, record in recs.items():
        try:
            drift = config_drift(record, repo)
        except (config_lib.ConfigError, OSError, ValueError) as error:
            problems.append(f"{name}: the documented command does not resolve: {error}")
            continue
        if drift:
            problems.append(f"{name}: `{_shell(record.command)}` resolves today to another "
                            f"config than the record's:\n    " + "\n    ".join(drift))
    with tempfile.TemporaryDirectory() as tmp:
        written, blocks = render(folder, tmp)
        for rel in written:
            problems += _compare(folder / rel, pathlib.Path(tmp) / rel, study / rel)
    problems += update_blocks(block_pages(pathlib.Path(repo) / readme, repo), study, blocks,
                              check=True)
    return problems


def _compare(committed: pathlib.Path, generated: pathlib.Path, name) -> list[str]:
    if not committed.exists():
        return [f"{name}: missing (the records generate it)"]
    if committed.suffix == ".png":
        old, new = plots.read_content_digest(committed), plots.read_content_digest(generated)
        return [] if old == new else [f"{name}: the figure shows other content than the "
                                      "records generate"]
    if committed.read_bytes() != generated.read_bytes():
        return [f"{name}: differs from what the records generate"]
    return []


def _shell(command: dict) -> str:
    return " ".join([f"--config {command['experiment']}"]
                    + [f"--config.{o}" for o in command["overrides"]])
