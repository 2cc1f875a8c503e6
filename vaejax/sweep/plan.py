"""The plan: a sweep file's runs, their names, their groups, and a shard's share of them.

A sweep file is an experiment file with `get_sweep()` beside `get_config()`:

    def get_sweep():
        return product(latent_dim=[2, 5, 10, 20, 50], beta=[0.25, 0.5, 1, 2, 4], seed=[0, 1, 2])

`product` and `zip_` combine axes; keys are short names (`ALIASES`) or dotted config keys.
Each run is the base config, then the command line's overrides, then the run's overrides,
and is named after its overrides (`latent_dim=2,beta=0.5,seed=0`, filesystem safe).
Runs whose configs differ only in traced scalars (`program.vmapped_keys`: the seed, the
peak learning rate and the objective's scalars such as objective.beta) share shapes and a
`Program`, so they form a
*group* that trains as one jitted program (`vaejax.sweep.group`). Groups larger than
`max_group_size` are split into near-equal parts.

`--shard i/n` gives process i every n-th group in plan order (`shard_groups`), so
independent processes (a SLURM array, several hosts) split a sweep with no coordinator; the
processes of one multi-process job split their shard further (`process_shard`).
A run is finished when its results.json exists (or diverged.json: its loss became NaN).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import pathlib
import re
from typing import Any, Iterable, Mapping, Sequence

import ml_collections
import numpy as np

from vaejax import config as config_lib
from vaejax import records
from vaejax.program import check_new_run, vmapped_keys

# Short names accepted by `product`, `zip_` and sweep dicts, and used in run names.
ALIASES = {
    "latent_dim": "model.latent_dim",
    "beta": "objective.beta",
    "seed": "seed",
    "lr": "optimizer.learning_rate",
    "learning_rate": "optimizer.learning_rate",
}
SHORT_NAMES = {"model.latent_dim": "latent_dim", "objective.beta": "beta", "seed": "seed",
               "optimizer.learning_rate": "lr"}

SWEEP_RECORD = "sweep.json"
_MAX_NAME = 150


# -- defining sweeps ---------------------------------------------------------------------


def resolve_key(key: str) -> str:
    """`latent_dim` -> `model.latent_dim`; dotted keys pass through."""
    return ALIASES.get(key, key)


def _resolve(overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in overrides.items():
        full = resolve_key(key)
        if full in out:
            raise config_lib.ConfigError(f"{key!r} and another name both set {full!r}.")
        out[full] = value
    return out


def product(*sweeps: Sequence[Mapping[str, Any]], **axes: Sequence[Any]) -> list[dict]:
    """Every combination: `product(beta=[1, 2], seed=[0, 1])` is 4 runs, last axis fastest.

    Positional arguments are lists of override dicts (other sweeps) taken as axes too, so
    `product(zip_(beta=[1, 2], lr=[1e-3, 3e-4]), seed=[0, 1])` is 4 runs. Keys may be short
    names (`ALIASES`) or dotted config keys.
    """
    factors = [[_resolve(run) for run in sweep] for sweep in sweeps]
    for key, values in axes.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise TypeError(f"product({key}=...) takes a list of values, got {values!r}.")
        factors.append([{resolve_key(key): value} for value in values])
    runs = []
    for combination in itertools.product(*factors):
        run = {}
        for part in combination:
            clash = set(run) & set(part)
            if clash:
                raise config_lib.ConfigError(f"product: {sorted(clash)} set by two axes.")
            run.update(part)
        runs.append(run)
    return runs


def zip_(**axes: Sequence[Any]) -> list[dict]:
    """Axes in lockstep: `zip_(beta=[1, 2], seed=[0, 1])` is 2 runs. Lengths must agree."""
    lengths = {key: len(values) for key, values in axes.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"zip_ needs axes of equal length, got {lengths}.")
    return [{resolve_key(key): value for key, value in zip(axes, values)}
            for values in zip(*axes.values())]


# -- the plan ----------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    name: str
    overrides: dict            # dotted key -> value, as the sweep gave them
    config: ml_collections.ConfigDict
    group: str = ""

    def workdir(self, sweep_dir) -> pathlib.Path:
        return pathlib.Path(sweep_dir) / "runs" / self.name


@dataclasses.dataclass
class Group:
    id: str
    runs: list[Run]

    @property
    def config(self):
        """The config every member shares, up to `program.vmapped_keys`."""
        return self.runs[0].config

    def workdir(self, sweep_dir) -> pathlib.Path:
        return pathlib.Path(sweep_dir) / "groups" / self.id


@dataclasses.dataclass
class Plan:
    sweep_file: str
    overrides: list[str]
    base_config: ml_collections.ConfigDict
    runs: list[Run]
    groups: list[Group]
    max_group_size: int

    def record(self) -> dict:
        """sweep.json: the same for every shard, so concurrent writers agree."""
        return {
            "sweep_file": self.sweep_file,
            "overrides": list(self.overrides),
            "max_group_size": self.max_group_size,
            "base_config": config_lib.to_dict(self.base_config),
            "runs": [{"name": r.name, "group": r.group, "overrides": r.overrides,
                      "workdir": f"runs/{r.name}"} for r in self.runs],
            "groups": [{"id": g.id, "runs": [r.name for r in g.runs]} for g in self.groups],
        }


def _format_value(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        short = f"{value:g}"  # 0.5, 1, 0.0001, 1e+06
        return short if float(short) == value else repr(value)
    if isinstance(value, (tuple, list)):
        return "x".join(_format_value(v) for v in value) or "none"
    return str(value)


def _safe(text: str) -> str:
    """Filesystem-safe; over-long names keep a prefix and a hash of the whole."""
    text = re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)
    if len(text) > _MAX_NAME:
        text = f"{text[:_MAX_NAME - 9]}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"
    return text


def short_names(keys: Iterable[str]) -> dict[str, str]:
    """Dotted key -> the name shown in run names and tables: an alias, else the last
    component when no other key of the sweep shares it, else the dotted key."""
    keys = list(dict.fromkeys(keys))
    last = [k.rsplit(".", 1)[-1] for k in keys]
    taken = set(SHORT_NAMES.values())
    out = {}
    for key, tail in zip(keys, last):
        if key in SHORT_NAMES:
            out[key] = SHORT_NAMES[key]
        elif last.count(tail) == 1 and tail not in taken:
            out[key] = tail
        else:
            out[key] = key
    return out


def run_name(overrides: Mapping[str, Any], names: Mapping[str, str] | None = None) -> str:
    """`latent_dim=2,beta=0.5,seed=0`: the overrides in their order, filesystem safe."""
    names = names or short_names(overrides)
    if not overrides:
        return "base"
    return _safe(",".join(f"{names.get(k, k)}={_format_value(v)}" for k, v in overrides.items()))


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _group_key(config) -> str:
    vmapped = vmapped_keys(config)
    flat = {k: v for k, v in config_lib.flatten(config).items() if k not in vmapped}
    return json.dumps(flat, sort_keys=True, default=str)


def group_runs(runs: list[Run], base_config, *, max_group_size: int = 16) -> list[Group]:
    """Groups of runs that differ only in `program.vmapped_keys`, in order of first appearance.

    A group's id names its values of the keys its runs set that are not vmapped, and of any
    other key that differs from the base config (`latent_dim=2`; `all` when every run is in
    it; a key other runs of the sweep set is not named where it keeps its base value);
    one larger than `max_group_size` is split into near-equal parts (`...,part=1of2`).
    """
    if max_group_size < 1:
        raise ValueError(f"max_group_size must be >= 1, got {max_group_size}.")
    by_key: dict[str, list[Run]] = {}
    for run in runs:
        by_key.setdefault(_group_key(run.config), []).append(run)
    base = {k: v for k, v in config_lib.flatten(base_config).items()}
    swept = list(dict.fromkeys(k for run in runs for k in run.overrides))
    names = short_names(swept)
    groups = []
    for members in by_key.values():
        flat = config_lib.flatten(members[0].config)
        vmapped = vmapped_keys(members[0].config)
        own = {k for run in members for k in run.overrides}  # what these runs set themselves
        diff = [k for k in flat if k not in vmapped
                and (k in own or _plain(flat[k]) != _plain(base.get(k)))]
        diff.sort(key=lambda k: (swept.index(k) if k in swept else len(swept), k))
        label = ",".join(f"{names.get(k, k)}={_format_value(flat[k])}" for k in diff) or "all"
        num_parts = math.ceil(len(members) / max_group_size)
        for part, chunk in enumerate(np.array_split(np.arange(len(members)), num_parts)):
            suffix = f",part={part + 1}of{num_parts}" if num_parts > 1 else ""
            group = Group(_safe(label + suffix), [members[i] for i in chunk])
            for run in group.runs:
                run.group = group.id
            groups.append(group)
    return groups


def make_plan(sweep_file, *, overrides: Sequence[str] = (), max_group_size: int = 16) -> Plan:
    """Expands `sweep_file` into runs (base config + `overrides` + each run's) and groups."""
    module = config_lib.load_module(sweep_file)
    if not hasattr(module, "get_sweep"):
        raise config_lib.ConfigError(f"{sweep_file} has no get_sweep() function.")
    # experiment_dir is the sweep file's folder, as for `vaejax train`: plug-ins beside it import
    base = config_lib.config_of_module(module, sweep_file, overrides)
    sweep = [_resolve(run) for run in module.get_sweep()]
    if not sweep:
        raise config_lib.ConfigError(f"{sweep_file}: get_sweep() returned no runs.")
    names = short_names(k for run in sweep for k in run)
    runs, seen = [], {}
    for overrides_i in sweep:
        config = config_lib.apply_overrides(base, ())  # a copy
        for key, value in overrides_i.items():
            config_lib.apply_override(config, key, value)
        name = run_name(overrides_i, names)
        if name in seen:
            raise config_lib.ConfigError(
                f"{sweep_file}: two runs are both named {name!r} ({seen[name]} and "
                f"{overrides_i}); every run of a sweep must differ.")
        seen[name] = overrides_i
        try:
            config_lib.validate(config)
            check_new_run(config)
        except ValueError as error:  # ConfigError too
            raise config_lib.ConfigError(f"{sweep_file}: run {name}: {error}") from None
        runs.append(Run(name, overrides_i, config))
    groups = group_runs(runs, base, max_group_size=max_group_size)
    return Plan(str(pathlib.Path(sweep_file).resolve()), list(overrides), base, runs, groups,
                max_group_size)


def parse_shard(shard: str) -> tuple[int, int]:
    """"i/n" -> (i, n) with 0 <= i < n."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(shard))
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise config_lib.ConfigError(
            f"--shard must be i/n with 0 <= i < n, got {shard!r} (a SLURM array needs "
            f"--array=0-<n-1> and --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT).")
    return int(match[1]), int(match[2])


def process_shard(shard: str, index: int, count: int) -> str:
    """The share of process `index` of a `count`-process job in shard `shard`: shard i/n
    becomes (i * count + index)/(n * count), so the processes of each of n independent jobs
    (a SLURM array of multi-process steps) split that job's groups among them."""
    i, n = parse_shard(shard)
    if not 0 <= index < count:
        raise ValueError(f"process {index} of {count}: the index must be in [0, {count}).")
    return f"{i * count + index}/{n * count}"


def shard_groups(groups: Sequence[Group], shard: str) -> list[Group]:
    """Process i of n takes groups i, i + n, i + 2n, ... of the plan: deterministic, disjoint."""
    i, n = parse_shard(shard)
    return list(groups[i::n])


def _finished(run_dir: pathlib.Path) -> bool:
    """Done with: evaluated (results.json and the figures it lists), diverged, or marked
    damaged (records that cannot be read back)."""
    return records.evaluated(run_dir) or any(
        (run_dir / name).exists() for name in (records.DIVERGED, records.DAMAGED))
