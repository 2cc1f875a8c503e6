"""Sweeps: many models in one compiled program, many programs across machines.

A sweep file is an experiment file with `get_sweep()` beside `get_config()`:

    def get_sweep():
        return product(latent_dim=[2, 5, 10, 20, 50], beta=[0.25, 0.5, 1, 2, 4], seed=[0, 1, 2])

Each run is the base config, then the command line's overrides, then the run's overrides.
Runs whose configs differ only in the fields of `train.Hyper` (seed, objective.beta,
optimizer.learning_rate) share shapes and a `TrainProgram`, so they form a *group* that
trains as ONE jitted program: `jax.vmap(program.train_epoch, in_axes=(0, 0, None, None))`
over the stacked `TrainState`s and `Hyper`s of its members. Groups larger than
`max_group_size` are split into near-equal parts.

Workdir layout:

    <workdir>/sweep.json                 the plan: sweep file, base config, runs, groups
    <workdir>/runs/<run>/                one `vaejax train` workdir per run (run.json,
                                         metrics.jsonl, checkpoints/, results.json)
    <workdir>/groups/<group>/            group.json and checkpoints/ of the stacked state
    <workdir>/results.csv, results.md    one row per run (`report`)
    <workdir>/figures/                   rate_distortion, nll_vs_latent_dim, active_units_vs_beta

A run is finished when its results.json exists (or diverged.json: its loss became NaN);
a finished run is never trained, evaluated or written again. An unfinished group resumes
from its latest checkpoint, and since keys fold in the step, a resumed group equals an
uninterrupted one bit for bit. `--shard i/n` gives process i every n-th group in plan
order, so independent processes (a SLURM array, several hosts) split a sweep with no
coordinator; `report` merges whatever run workdirs exist.

Evaluation is vmapped over the members too (`evaluate.test_metrics` with stacked params). A member's numbers
equal `vaejax train` of its config to float rounding, not bit for bit: XLA's batched
matmuls round differently (on CPU, relative differences of ~4e-7 in metrics.jsonl).
With several local devices, a group's member axis is sharded over a `Mesh` axis "model"
of gcd(members, devices) devices; results equal one device's within float tolerance.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import io
import itertools
import json
import math
import os
import pathlib
import re
import shutil
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vaejax import checkpoints, evaluate, objectives, records
from vaejax import config as config_lib
from vaejax import data as data_lib
from vaejax import train as train_lib

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
# The config keys behind the fields of `train.Hyper`: members of a group may differ only here.
VMAPPED_KEYS = ("seed", "objective.beta", "optimizer.learning_rate")

SWEEP_RECORD = "sweep.json"
GROUP_RECORD = "group.json"
DIVERGED = "diverged.json"
RESULT_COLUMNS = ("test/neg_elbo", "test/nll", "test/rate", "test/distortion", "active_units")
FIGURES = ("rate_distortion.png", "nll_vs_latent_dim.png", "active_units_vs_beta.png")
# Activation memory: bytes per float x (forward value, its gradient, pre-activation, slack).
ACTIVATION_FACTOR = 4
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
        """The config every member shares, up to the `VMAPPED_KEYS`."""
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
    flat = {k: v for k, v in config_lib.flatten(config).items() if k not in VMAPPED_KEYS}
    return json.dumps(flat, sort_keys=True, default=str)


def group_runs(runs: list[Run], base_config, *, max_group_size: int = 16) -> list[Group]:
    """Groups of runs that differ only in `VMAPPED_KEYS`, in order of first appearance.

    A group's id names what sets it apart from the base config (`latent_dim=2`, or `all`);
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
        diff = [k for k in flat if k not in VMAPPED_KEYS and _plain(flat[k]) != _plain(base.get(k))]
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
    for fn in ("get_config", "get_sweep"):
        if not hasattr(module, fn):
            raise config_lib.ConfigError(f"{sweep_file} has no {fn}() function.")
    base = config_lib.apply_overrides(module.get_config(), overrides)
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


def shard_groups(groups: Sequence[Group], shard: str) -> list[Group]:
    """Process i of n takes groups i, i + n, i + 2n, ... of the plan: deterministic, disjoint."""
    i, n = parse_shard(shard)
    return list(groups[i::n])


# -- memory ------------------------------------------------------------------------------


def _layer_widths(module, params, x) -> int:
    """Floats per example in the outputs of every layer of `module` applied to `x`."""
    def apply(params, x):
        return module.apply({"params": params}, x, capture_intermediates=True,
                            mutable=["intermediates"])[1]["intermediates"]
    shapes = jax.eval_shape(apply, params, x)
    shapes = {k: v for k, v in shapes.items() if k != "__call__"}  # the module's own output
    return sum(math.prod(s.shape) for s in jax.tree.leaves(shapes))


def memory_estimate(config, data_shape: Sequence[int], num_members: int) -> dict:
    """Bytes a group of `num_members` runs of `config` needs while training, roughly:

        params_bytes      = 4 B x 3 (params, Adam mu, nu) x P x M
        activations_bytes = 4 B x batch x (D + W_enc + K x W_dec) x M x ACTIVATION_FACTOR

    P: parameters per member; D: floats per example; W_enc, W_dec: floats per example in
    the outputs of every encoder / decoder layer; K: objective.num_samples; M: members.
    ACTIVATION_FACTOR = 4 covers each layer's value and gradient, pre-activations and
    XLA's temporaries. Not counted: the uint8 images (on the device once, shared by groups).
    """
    from vaejax.models import make_vae  # noqa: PLC0415

    m = config.model
    data_shape = tuple(int(d) for d in data_shape)
    vae = make_vae(m.kind, data_shape=data_shape, latent_dim=m.latent_dim,
                   hidden_sizes=m.hidden_sizes, activation=m.activation,
                   likelihood=config.likelihood, gaussian_logvar=m.gaussian_logvar)
    params = jax.eval_shape(lambda: vae.init(jax.random.key(0)))
    num_params = sum(math.prod(p.shape) for p in jax.tree.leaves(params))
    d = math.prod(data_shape)
    w_enc = _layer_widths(vae.encoder, params["encoder"],
                          jax.ShapeDtypeStruct(data_shape, jnp.float32))
    w_dec = _layer_widths(vae.decoder, params["decoder"],
                          jax.ShapeDtypeStruct((m.latent_dim,), jnp.float32))
    widths = d + w_enc + config.objective.num_samples * w_dec
    params_bytes = 4 * 3 * num_params * num_members
    activations_bytes = 4 * config.train.batch_size * widths * num_members * ACTIVATION_FACTOR
    return {
        "members": num_members,
        "params_per_member": num_params,
        "layer_widths": widths,
        "params_bytes": params_bytes,
        "activations_bytes": activations_bytes,
        "total_bytes": params_bytes + activations_bytes,
    }


def _mb(num_bytes) -> float:
    return num_bytes / 2**20


# -- several devices, several hosts -------------------------------------------------------


def initialize_distributed(environ: Mapping[str, str] | None = None) -> bool:
    """Calls `jax.distributed.initialize()` when this process is one of several in a job:
    `JAX_COORDINATOR_ADDRESS` is set, or SLURM started more than one task (srun -n N).

    Must run before any JAX computation. Each process then trains its own share of the
    groups on its local devices: `run_sweep` makes shard i/n of process p of P shard
    (i * P + p)/(n * P), so no computation spans processes.
    A SLURM *array* (one task per job) needs no initialization: pass --shard instead.
    """
    environ = os.environ if environ is None else environ
    if jax.distributed.is_initialized():
        return True
    explicit = bool(environ.get("JAX_COORDINATOR_ADDRESS"))
    slurm = (int(environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_STEP_NODELIST" in environ)
    if not (explicit or slurm):
        return False
    jax.distributed.initialize()
    return True


def member_shardings(num_members: int, devices: Sequence[Any]):
    """(members sharded over "model", replicated) on gcd(members, devices) devices, or None."""
    n = math.gcd(num_members, len(devices))
    if n <= 1:
        return None
    mesh = jax.sharding.Mesh(np.asarray(devices[:n]), ("model",))
    P = jax.sharding.PartitionSpec
    return jax.sharding.NamedSharding(mesh, P("model")), jax.sharding.NamedSharding(mesh, P())


# -- training a group --------------------------------------------------------------------


def _finished(run_dir: pathlib.Path) -> bool:
    return (run_dir / records.RESULTS).exists() or (run_dir / DIVERGED).exists()


@dataclasses.dataclass
class _Compiled:
    program: train_lib.TrainProgram
    init: Callable
    epoch: Callable
    validate: Callable
    shardings: Any
    compiled_epoch: Any = None  # the epoch function compiled for the first group of this shape


def _group_functions(program, num_members: int, devices) -> _Compiled:
    """The vmapped, jitted init / epoch / validate of a group (state donated)."""
    shardings = member_shardings(num_members, devices)
    jit_kw = {}
    if shardings is not None:
        members, _ = shardings
        jit_kw = {"out_shardings": members}
    init = jax.jit(jax.vmap(program.init_state), **jit_kw)
    epoch = jax.jit(jax.vmap(program.train_epoch, in_axes=(0, 0, None, None)),
                    donate_argnums=0, **jit_kw)
    validate = jax.jit(jax.vmap(program.validate, in_axes=(0, 0, None)), **jit_kw)
    return _Compiled(program, init, epoch, validate, shardings)


class _SplitsCache:
    """The data of the last config seen: consecutive groups usually share it."""

    def __init__(self, log):
        self.key, self.splits, self.log = None, None, log

    def get(self, config) -> train_lib.Splits:
        key = json.dumps(config_lib.to_dict(config.data), sort_keys=True)
        if key != self.key:
            self.splits = None
            self.splits = train_lib.load_splits(config, log=self.log)
            self.key = key
        return self.splits


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _prepare_group_dir(group: Group, sweep_dir, log) -> pathlib.Path:
    """group.json names the members; a group dir with other members is moved aside."""
    group_dir = group.workdir(sweep_dir)
    record = {"id": group.id, "runs": [r.name for r in group.runs],
              "config": config_lib.to_dict(group.config)}
    path = group_dir / GROUP_RECORD
    if path.exists() and records.read_json(path)["runs"] != record["runs"]:
        aside = group_dir.with_name(f"{group_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(str(group_dir), aside)
        log(f"sweep: group {group.id} had other members; its checkpoints moved to {aside}")
    group_dir.mkdir(parents=True, exist_ok=True)
    records.write_json(path, record)
    return group_dir


def _start_run(run: Run, sweep_dir, group: Group, data_source: str) -> pathlib.Path:
    run_dir = run.workdir(sweep_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    records.write_run_record(run_dir, run.config, data_source=data_source)
    record = records.read_run_record(run_dir)
    record["sweep"] = {"workdir": str(pathlib.Path(sweep_dir).resolve()), "run": run.name,
                       "group": group.id, "overrides": run.overrides,
                       "members": [r.name for r in group.runs]}
    records.write_json(run_dir / records.RUN_RECORD, record)
    return run_dir


def train_group(group: Group, sweep_dir, *, splits: train_lib.Splits, devices=None,
                compiled: dict | None = None, log=print, label: str = "") -> list[str]:
    """Trains the members of `group` as one vmapped program, then evaluates each unfinished
    member into its run workdir. Returns the names of the runs it finished."""
    sweep_dir = pathlib.Path(sweep_dir)
    devices = list(jax.local_devices() if devices is None else devices)
    config = group.config
    label = label or group.id
    pending = [i for i, run in enumerate(group.runs) if not _finished(run.workdir(sweep_dir))]
    if not pending:
        return []
    key = (_group_key(config), len(group.runs), len(devices))
    compiled = {} if compiled is None else compiled
    if key not in compiled:
        program = train_lib.TrainProgram.build(config, splits.train.shape[1:],
                                               splits.train.shape[0])
        compiled[key] = _group_functions(program, len(group.runs), devices)
    fns = compiled[key]
    program = fns.program

    run_dirs = {i: _start_run(group.runs[i], sweep_dir, group, splits.source) for i in pending}
    group_dir = _prepare_group_dir(group, sweep_dir, log)
    hypers = _stack([train_lib.Hyper.from_config(run.config) for run in group.runs])
    train_x, val_x = splits.train, splits.validation
    if fns.shardings is not None:
        members, replicated = fns.shardings
        hypers = jax.device_put(hypers, members)
        train_x = jax.device_put(train_x, replicated)
        val_x = None if val_x is None else jax.device_put(val_x, replicated)
        log(f"sweep: {label}: {len(group.runs)} members sharded over "
            f"{members.mesh.devices.size} devices (mesh axis 'model')")

    manager = checkpoints.Manager(group_dir, keep=config.train.keep_checkpoints)
    state = fns.init(hypers)
    start_epoch = manager.latest_epoch() or 0
    if start_epoch:
        state = manager.restore(start_epoch, state)
        log(f"sweep: {label}: resumed from the group checkpoint of epoch {start_epoch}")
    if fns.shardings is None:
        # Restored arrays are committed to a device; commit fresh ones too, so that a
        # resumed group lowers to the same program (and hits a compilation cache).
        state, hypers = jax.device_put((state, hypers), devices[0])
    for i in pending:
        records.truncate_metrics(run_dirs[i], start_epoch)

    epochs = config.train.epochs
    num_examples = program.steps_per_epoch * program.batch_size
    diverged: set[int] = set()
    validate = config.train.validate and val_x is not None
    try:
        for epoch in range(start_epoch, epochs):
            compile_time = None
            if fns.compiled_epoch is None:
                compile_start = time.perf_counter()
                fns.compiled_epoch = fns.epoch.lower(
                    state, hypers, train_x, jnp.int32(epoch)).compile()
                compile_time = time.perf_counter() - compile_start
            start = time.perf_counter()
            state, metrics = fns.compiled_epoch(state, hypers, train_x, jnp.int32(epoch))
            metrics = jax.device_get(metrics)
            epoch_time = time.perf_counter() - start
            val = jax.device_get(fns.validate(state.params, hypers, val_x)) if validate else None
            steps = np.asarray(jax.device_get(state.step))
            losses = []
            for i in pending:
                if i in diverged:
                    continue
                member = jax.tree.map(lambda x: x[i], metrics)
                bad = ~np.isfinite(member["loss"])
                if bad.any():
                    step = int(steps[i]) - program.steps_per_epoch + int(np.argmax(bad)) + 1
                    message = (f"The loss became {member['loss'][bad][0]} at step {step} (epoch "
                               f"{epoch + 1}); the other members of group {group.id} continue.")
                    records.write_json(run_dirs[i] / DIVERGED,
                                       {"epoch": epoch + 1, "step": step, "message": message})
                    log(f"sweep: {group.runs[i].name}: diverged: {message}")
                    diverged.add(i)
                    continue
                member_val = None if val is None else {k: v[i] for k, v in val.items()}
                record = train_lib.epoch_record(epoch + 1, int(steps[i]), member, member_val,
                                                 epoch_time, num_examples)
                if epoch == start_epoch:
                    record["compile_time"] = compile_time or 0.0
                records.append_metrics(run_dirs[i], record)
                losses.append(record.get("val/neg_elbo", record["train/neg_elbo"]))
            # Metrics first, then the checkpoint, as in `train.train`: a kill in between
            # re-runs the epoch on resume and `truncate_metrics` drops its lines.
            if (epoch + 1) % config.train.checkpoint_every == 0 or epoch + 1 == epochs:
                manager.save(epoch + 1, state)
            what = "val" if validate else "train"
            log(f"sweep: {label}: epoch {epoch + 1}/{epochs}, {len(group.runs)} members, "
                f"{epoch_time:.1f} s"
                + (f" (+{compile_time:.1f} s compile)" if compile_time is not None else "")
                + (f", {what} -ELBO {min(losses):.2f}..{max(losses):.2f}" if losses else ""))
    finally:
        manager.close()

    host_state = jax.device_get(state)
    alive = [i for i in pending if i not in diverged]
    for i in alive:  # each member's own checkpoint: `vaejax eval/sample --workdir <run>` work
        run_manager = checkpoints.Manager(run_dirs[i], keep=config.train.keep_checkpoints)
        if run_manager.latest_epoch() != epochs:
            run_manager.save(epochs, jax.tree.map(lambda x: jnp.asarray(x[i]), host_state))
        run_manager.close()
    if not alive:
        return []
    test_x = splits.test[: config.eval.num_test_examples or None]
    if fns.shardings is not None:
        test_x = jax.device_put(test_x, fns.shardings[1])
    results = evaluate.test_metrics(program, state.params, hypers, test_x, config.eval, log=log)
    done = []
    for i in alive:
        run, run_dir = group.runs[i], run_dirs[i]
        member_results = dict(results[i])
        last = records.last_metrics(run_dir)
        if last is not None:
            member_results["epoch"], member_results["step"] = last["epoch"], last["step"]
        records.write_json(run_dir / records.RESULTS, member_results)
        summary = ", ".join(f"{k} {member_results[k]:.2f}" for k in
                            ("test/neg_elbo", "test/nll", "test/rate", "test/distortion")
                            if k in member_results)
        log(f"eval: {run.name}: {summary}, active units {member_results['active_units']}/"
            f"{program.vae.latent_dim}")
        if run.config.eval.figures:
            from vaejax import sample  # noqa: PLC0415

            params = jax.tree.map(lambda x: jnp.asarray(x[i]), host_state.params)
            sample.draw_figures(run_dir, program, params, train_lib.Hyper.from_config(run.config),
                                splits.test, log=log)
        done.append(run.name)
    return done


# -- the sweep ---------------------------------------------------------------------------


def _check_runs(groups: Sequence[Group], sweep_dir, log) -> None:
    """Unfinished runs must resume with their recorded config; finished ones are kept."""
    problems, kept, kept_keys = [], [], set()
    for group in groups:
        for run in group.runs:
            run_dir = run.workdir(sweep_dir)
            if not (run_dir / records.RUN_RECORD).exists():
                continue
            recorded = records.read_run_record(run_dir)["config"]
            diff = records.config_differences(recorded, config_lib.to_dict(run.config))
            if _finished(run_dir):
                if diff:
                    kept.append(run.name)
                    kept_keys.update(diff)
            elif [k for k in diff if k not in records.RESUMABLE_CHANGES]:
                problems.append(f"{run.name}: {diff}")
    if kept:
        log(f"sweep: {len(kept)} finished runs (e.g. {kept[0]}) were trained with another config "
            f"(differs in {sorted(kept_keys)}); they are kept as they are. Use a new --workdir "
            f"to train them again.")
    if problems:
        raise config_lib.ConfigError(
            f"{sweep_dir} holds unfinished runs started with another config (a resumed run "
            f"may change only {list(records.RESUMABLE_CHANGES)}); use a new --workdir:\n  "
            + "\n  ".join(problems))


def describe_plan(plan: Plan, shard_groups_: Sequence[Group], shard: str, sweep_dir=None) -> str:
    """The --dry-run text: runs, groups, members and the memory estimate of each group."""
    shapes = {}
    lines = [f"sweep {plan.sweep_file}: {len(plan.runs)} runs in {len(plan.groups)} groups "
             f"(max_group_size {plan.max_group_size}); shard {shard}: "
             f"{len(shard_groups_)} groups, {sum(len(g.runs) for g in shard_groups_)} runs"]
    lines.append(f"{'group':<40} {'members':>7} {'params/member':>13} "
                 f"{'params+adam MB':>14} {'activations MB':>14} {'total MB':>9}")
    for group in shard_groups_:
        name, data_dir = group.config.data.name, group.config.data.data_dir or None
        if (name, data_dir) not in shapes:
            shapes[name, data_dir] = data_lib.image_shape(name, data_dir=data_dir)
        est = memory_estimate(group.config, shapes[name, data_dir], len(group.runs))
        lines.append(f"{group.id:<40} {len(group.runs):>7} {est['params_per_member']:>13,} "
                     f"{_mb(est['params_bytes']):>14.1f} {_mb(est['activations_bytes']):>14.1f} "
                     f"{_mb(est['total_bytes']):>9.1f}")
        for run in group.runs:
            state = ""
            if sweep_dir is not None and _finished(run.workdir(sweep_dir)):
                state = "  (finished)"
            lines.append(f"    {run.name}{state}")
    lines.append("memory per group = 4 B x 3 (params, Adam mu, nu) x params x members + 4 B x "
                 f"batch x sum of layer widths x members x {ACTIVATION_FACTOR} "
                 "(see sweep.memory_estimate); the uint8 data is shared.")
    return "\n".join(lines)


def run_sweep(sweep_file, workdir, *, overrides: Sequence[str] = (), max_group_size: int = 16,
              dry_run: bool = False, shard: str = "0/1", log=print) -> dict:
    """Trains this shard's groups of `sweep_file` in `workdir`, then writes the report.

    Finished runs are skipped and unfinished groups resume from their checkpoints. Returns
    {"plan": Plan, "groups": this shard's groups, "trained": run names finished now,
    "skipped": run names finished before}.
    """
    i, n = parse_shard(shard)
    if not dry_run and initialize_distributed() and jax.process_count() > 1:
        # Each process of a multi-process job takes its own share of this shard's groups.
        i, n = i * jax.process_count() + jax.process_index(), n * jax.process_count()
        shard = f"{i}/{n}"
    plan = make_plan(sweep_file, overrides=overrides, max_group_size=max_group_size)
    mine = shard_groups(plan.groups, shard)
    sweep_dir = pathlib.Path(workdir)
    _check_runs(mine, sweep_dir, log)
    if dry_run:
        log(describe_plan(plan, mine, shard, sweep_dir))
        return {"plan": plan, "groups": mine, "trained": [], "skipped": []}

    sweep_dir.mkdir(parents=True, exist_ok=True)
    records.write_json(sweep_dir / SWEEP_RECORD, plan.record())
    devices = jax.local_devices()
    log(f"sweep: {len(plan.runs)} runs in {len(plan.groups)} groups; shard {shard}: "
        f"{len(mine)} groups on {len(devices)} {devices[0].platform} device(s) -> {sweep_dir}")
    splits_cache, compiled = _SplitsCache(log), {}
    trained, skipped = [], []
    for n, group in enumerate(mine, 1):
        finished = [r.name for r in group.runs if _finished(r.workdir(sweep_dir))]
        skipped += finished
        if len(finished) == len(group.runs):
            log(f"sweep: [{n}/{len(mine)}] {group.id}: all {len(finished)} runs finished; skipped")
            continue
        if finished:
            log(f"sweep: [{n}/{len(mine)}] {group.id}: {len(finished)} runs already finished "
                f"(kept); the group trains all {len(group.runs)} and writes only the others")
        trained += train_group(group, sweep_dir, splits=splits_cache.get(group.config),
                               devices=devices, compiled=compiled, log=log,
                               label=f"[{n}/{len(mine)}] {group.id}")
    report(sweep_dir, log=log)
    return {"plan": plan, "groups": mine, "trained": trained, "skipped": skipped}


# -- the report --------------------------------------------------------------------------


def _wall_time(metrics: list[dict], results: dict | None) -> float | None:
    if not metrics:
        return None
    total = sum(r.get("epoch_time", 0.0) + r.get("compile_time", 0.0) for r in metrics)
    return total + ((results or {}).get("eval_time") or 0.0)


def _read_json_or_none(path: pathlib.Path):
    return records.read_json(path) if path.exists() else None


def collect(workdir) -> tuple[list[dict], list[str]]:
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
        run_dir = runs_dir / name
        record = _read_json_or_none(run_dir / records.RUN_RECORD)
        info = (record or {}).get("sweep") or planned.get(name, {})
        overrides = info.get("overrides", {})
        swept.update(dict.fromkeys(overrides))
        if record is not None:
            flat = config_lib.flatten(record["config"])
        else:
            flat = config_lib.flatten((plan or {}).get("base_config", {})) | dict(overrides)
        results = _read_json_or_none(run_dir / records.RESULTS)
        metrics = records.read_metrics(run_dir) if run_dir.is_dir() else []
        if results is not None:
            status = "finished"
        elif (run_dir / DIVERGED).exists():
            status = "diverged"
        elif metrics:
            status = f"epoch {metrics[-1]['epoch']}"
        else:
            status = "pending"
        row = {"name": name, "latent_dim": flat.get("model.latent_dim"),
               "beta": flat.get("objective.beta"), "seed": flat.get("seed"), "_config": flat}
        row.update({key: (results or {}).get(key) for key in RESULT_COLUMNS})
        row.update(wall_time=_wall_time(metrics, results), status=status, group=info.get("group"))
        rows.append(row)
    extra = [k for k in swept if k not in ("model.latent_dim", "objective.beta", "seed")]
    labels = short_names(extra)
    for row in rows:
        flat = row.pop("_config")
        row.update({labels[key]: flat.get(key) for key in extra})
    return rows, [labels[k] for k in extra]


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


def _over_seeds(rows: list[dict], keys: Sequence[str]) -> list[dict]:
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
        for key in RESULT_COLUMNS:
            values = [m[key] for m in members if m.get(key) is not None]
            if values:
                agg[key] = f"{np.mean(values):.2f} ± {np.std(values):.2f}"
        out.append(agg)
    return out


def report(workdir, log=print) -> list[dict]:
    """Writes `<workdir>`/results.csv, results.md and figures/ from the run workdirs that
    exist (every shard's); `vaejax sweep-report` calls it. Returns the rows."""
    from vaejax import plots  # noqa: PLC0415

    sweep_dir = pathlib.Path(workdir)
    if not (sweep_dir / SWEEP_RECORD).exists() and not (sweep_dir / "runs").is_dir():
        raise FileNotFoundError(f"{sweep_dir} holds no sweep (no {SWEEP_RECORD}, no runs/).")
    rows, extra = collect(sweep_dir)
    columns = ["name", "latent_dim", "beta", "seed", *extra, *RESULT_COLUMNS, "wall_time",
               "status", "group"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row[c] for c in columns})
    records.atomic_write_text(sweep_dir / "results.csv", buffer.getvalue())

    finished = [r for r in rows if r["status"] == "finished"]
    counts = {s: sum(r["status"] == s for r in rows) for s in ("finished", "diverged", "pending")}
    running = len(rows) - sum(counts.values())
    summary = (f"{counts['finished']} of {len(rows)} runs finished"
               + (f", {running} in progress" if running else "")
               + (f", {counts['diverged']} diverged" if counts["diverged"] else "")
               + (f", {counts['pending']} not started" if counts["pending"] else ""))
    text = [f"# Sweep {sweep_dir.name}\n", f"{summary}. Test metrics in nats per example; "
            "wall_time in seconds (a group's training time, shared by its members, plus the "
            "run's evaluation).\n"]
    keys = ["latent_dim", "beta", *extra]
    means = _over_seeds(rows, keys)
    if any(m["seeds"] > 1 for m in means):
        text += ["## Mean ± std over seeds\n", _markdown(means, [*keys, "seeds", *RESULT_COLUMNS])]
    text += ["## Runs\n", _markdown(rows, columns)]
    figures = sweep_dir / "figures"
    text += ["## Figures\n"] + [f"![{f}](figures/{f})\n" for f in FIGURES]
    records.atomic_write_text(sweep_dir / "results.md", "\n".join(text))

    plots.rate_distortion(finished, figures / FIGURES[0])
    plots.nll_vs_latent_dim(finished, figures / FIGURES[1])
    plots.active_units_vs_beta(finished, figures / FIGURES[2])
    log(f"sweep: {summary} -> {sweep_dir / 'results.md'}, results.csv, figures/")
    return rows
