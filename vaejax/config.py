"""Experiment configs: Python files with `get_config()`, and dotted command-line overrides.

An experiment file returns an `ml_collections.ConfigDict`. Overrides are strings
`"model.latent_dim=8"` (the CLI takes `--config.model.latent_dim=8`); the value is parsed
as the type of the field it replaces, and an unknown key or a wrong type is rejected with
the valid keys listed.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import pathlib
from typing import Any, Iterable, NamedTuple

import ml_collections


class ConfigError(ValueError):
    """A config file or override that cannot be applied."""


def load_module(path: str | pathlib.Path):
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist (try experiments/default.py).")
    spec = importlib.util.spec_from_file_location(f"vaejax_experiment_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sibling(this_file: str, name: str):
    """Loads experiment `name` from the folder of `this_file`: experiments build on each other.

    `default = sibling(__file__, "default")` in experiments/x.py gives experiments/default.py.
    """
    return load_module(pathlib.Path(this_file).with_name(f"{name}.py"))


def load_config(path: str | pathlib.Path, overrides: Iterable[str] = ()) -> ml_collections.ConfigDict:
    """`get_config()` of the file at `path`, with `overrides` ("a.b=value") applied.

    Sets `experiment_dir` to the file's folder: `"module:attribute"` plug-ins are imported
    from there. The file named here decides, whatever configs its get_config() loads on the
    way (a user's experiment built on `load_config(".../experiments/default.py")` finds the
    plug-ins beside it); `--config.experiment_dir=...` overrides it. run.json records it, so
    `vaejax reproduce` looks in the same folder.
    """
    return config_of_module(load_module(path), path, overrides)


def config_of_module(module, path, overrides: Iterable[str] = ()) -> ml_collections.ConfigDict:
    """`load_config` of an experiment file already loaded as `module` (a sweep file is
    loaded once for both its `get_config()` and its `get_sweep()`)."""
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path} has no get_config() function.")
    config = module.get_config()
    config.experiment_dir = str(pathlib.Path(path).resolve().parent)
    return apply_overrides(config, overrides)


# Settings added since runs were first recorded, with the value that reproduces older runs.
# Settings added after runs were recorded, with the value those older runs used, by section.
_ADDED_FIELDS = {
    "objective": {"gradient_estimator": "reparam", "num_groups": 1, "alpha": 1.0, "gamma": 1.0,
                  "sampling": "mws", "dip_type": "i", "lambda_od": 1.0, "lambda_d_factor": 10.0,
                  "capacity_max": 25.0, "capacity_weight": 1000.0, "capacity_steps": 100_000,
                  "kl_balance": False},
    "eval": {"ais_steps": 0, "ais_chains": 16, "ais_num_examples": 100, "ais_batch_size": 10,
             "gap_steps": 0, "bdmc_examples": 0, "disentanglement": False,
             "disentanglement_examples": 10_000},
    "train": {"keep_every": 0, "progress_every": 0, "trackers": ("tensorboard",),
              "tracker_project": "vaejax", "mlflow_tracking_uri": "", "ema_decay": 0.0},
    "optimizer": {"skip_grad_norm": 0.0},
}

# Model settings added since, by model.kind: the value runs recorded before them used.
_ADDED_MODEL_FIELDS = {"hierarchical": {"normalization": "none"}, "ladder": {"normalization": "none"}}


def upgrade_eval_settings(settings: dict) -> dict:
    """A results.json's `eval_settings` written by an older vaejax, with the eval settings
    added since at the value that evaluation used (so it compares equal to today's)."""
    return {**_ADDED_FIELDS["eval"], **settings}


def upgrade(config: dict) -> dict:
    """A config recorded by an older vaejax, in today's layout: the top-level `likelihood`
    moved into `model` (it is part of the model since models became plug-ins), and settings
    added later get the value the older run used."""
    config = dict(config)
    if "likelihood" in config:
        config["model"] = {**config["model"], "likelihood": config.pop("likelihood")}
    for section, added in _ADDED_FIELDS.items():
        if section in config:
            config[section] = {**added, **config[section]}
    model = config.get("model")
    if isinstance(model, dict) and model.get("kind") in _ADDED_MODEL_FIELDS:
        config["model"] = {**_ADDED_MODEL_FIELDS[model["kind"]], **model}
    return config


def flatten(config: ml_collections.ConfigDict | dict, prefix: str = "") -> dict[str, Any]:
    """{"model.latent_dim": 20, ...} for every leaf of the config."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, (ml_collections.ConfigDict, dict)):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _parse(text: str, current: Any, key: str) -> Any:
    if isinstance(current, bool):
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"{key} is a bool; got {text!r} (use true or false).")
    if isinstance(current, str):
        return text
    if isinstance(current, tuple) and current and all(isinstance(v, str) for v in current):
        return _names(text)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ConfigError(
            f"{key} is {type(current).__name__} (currently {current!r}); cannot parse {text!r}."
        ) from None
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(current, tuple) and isinstance(value, (list, int)):
        value = tuple(value) if isinstance(value, list) else (value,)
    if current is not None and not isinstance(value, type(current)):
        raise ConfigError(
            f"{key} is {type(current).__name__} (currently {current!r}); got {text!r} "
            f"of type {type(value).__name__}."
        )
    return value


def _names(text: str) -> tuple[str, ...]:
    """A tuple of names as a command line gives it: `tensorboard,wandb`, `(tensorboard, wandb)`
    or `("tensorboard", "wandb")`."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = [part.strip().strip("'\"") for part in text.strip().strip("()[]").split(",")]
    value = (value,) if isinstance(value, str) else tuple(value)
    return tuple(v for v in value if v != "")


def apply_override(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
    """Sets `config.<key>` (dotted) to `value`, parsing strings by the field's type."""
    valid = flatten(config)
    if key not in valid:
        raise ConfigError(
            f"Unknown config key {key!r}. Valid keys:\n  " + "\n  ".join(sorted(valid))
        )
    current = valid[key]
    if isinstance(value, str):
        value = _parse(value, current, key)
    elif current is not None and not isinstance(value, type(current)):
        if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif isinstance(current, tuple) and isinstance(value, list):
            value = tuple(value)
        else:
            raise ConfigError(f"{key} is {type(current).__name__}; got {value!r}.")
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node[part]
    with node.unlocked():
        node[leaf] = value


def apply_overrides(config, overrides: Iterable[str]) -> ml_collections.ConfigDict:
    """Applies "a.b=value" strings (a leading "--config." or "config." is accepted)."""
    config = ml_collections.ConfigDict(to_dict(config))  # a copy: the caller's config is kept
    for item in overrides:
        text = item
        for prefix in ("--config.", "config."):
            if text.startswith(prefix):
                text = text[len(prefix):]
        if "=" not in text:
            raise ConfigError(f"Override {item!r} must look like --config.model.latent_dim=8.")
        key, value = text.split("=", 1)
        apply_override(config, key.strip(), value)
    return config


class Range(NamedTuple):
    """The allowed values of a numeric setting: [low, high], an end excluded where `open_*`,
    None for no bound; `what` the setting is, for the error message."""

    low: float
    high: float | None
    what: str
    open_low: bool = False
    open_high: bool = False

    def admits(self, v) -> bool:
        above = v > self.low if self.open_low else v >= self.low
        below = self.high is None or (v < self.high if self.open_high else v <= self.high)
        return above and below

    def describe(self) -> str:
        if self.high is None:
            return f"{'>' if self.open_low else '>='} {self.low}"
        return (f"in {'(' if self.open_low else '['}{self.low}, {self.high}"
                f"{')' if self.open_high else ']'}")


# The range of every numeric setting vaejax reads; `validate` checks them before a run
# writes anything.
RANGES = {
    "seed": Range(0, 2**31 - 1, "the run's seed (an int32)"),
    "data.num_validation": Range(0, None, "training images held out for validation"),
    "data.num_train": Range(0, None, "training images used (0 = all the rest)"),
    "objective.num_samples": Range(1, None, "K, draws per example"),
    "objective.num_groups": Range(1, None, "M, groups of K draws"),
    "objective.beta": Range(0.0, None, "the KL weight"),
    "objective.warmup_steps": Range(0, None, "steps of the linear beta warm-up"),
    "objective.cycle_steps": Range(0, None, "steps per cycle of the cyclical beta schedule"),
    "objective.free_bits": Range(0.0, None, "nats per latent dimension (per layer of a hierarchical model)"),
    "objective.alpha": Range(0.0, None, "tcvae's mutual-information weight"),
    "objective.gamma": Range(0.0, None, "tcvae's dimension-wise KL weight; factor_vae's TC weight"),
    "objective.lambda_od": Range(0.0, None, "dip_vae's off-diagonal covariance weight"),
    "objective.lambda_d_factor": Range(0.0, None, "dip_vae's diagonal weight / lambda_od"),
    "objective.capacity_max": Range(0.0, None, "annealed_vae's final capacity C_max (nats)"),
    "objective.capacity_weight": Range(0.0, None, "annealed_vae's weight of |KL - C|"),
    "objective.capacity_steps": Range(1, None, "annealed_vae's steps from 0 to C_max"),
    "optimizer.learning_rate": Range(0.0, None, "the peak learning rate", open_low=True),
    "optimizer.warmup_steps": Range(0, None, "steps of learning-rate warm-up"),
    "optimizer.weight_decay": Range(0.0, None, "adamw's weight decay"),
    "optimizer.grad_clip_norm": Range(0.0, None, "the global gradient norm clip (0 = none)"),
    "optimizer.skip_grad_norm": Range(0.0, None, "skip updates with a larger or non-finite gradient norm (0 = never)"),
    "train.ema_decay": Range(0.0, 1.0, "decay of the parameters' moving average (0 = none)", open_high=True),
    "optimizer.b1": Range(0.0, 1.0, "Adam's first-moment decay", open_high=True),
    "optimizer.b2": Range(0.0, 1.0, "Adam's second-moment decay", open_high=True),
    "optimizer.eps": Range(0.0, None, "Adam's epsilon"),
    "train.epochs": Range(1, None, "epochs to train"),
    "train.batch_size": Range(1, None, "examples per step"),
    "train.checkpoint_every": Range(1, None, "epochs between checkpoints"),
    "train.keep_checkpoints": Range(1, None, "checkpoints kept (resume, eval and sample need one)"),
    "train.keep_every": Range(0, None, "epochs between checkpoints kept for good (0 = none)"),
    "train.progress_every": Range(0, None, "steps between progress reports inside an epoch (0 = none)"),
    "eval.batch_size": Range(1, None, "examples per evaluation batch"),
    "eval.iwae_samples": Range(0, None, "K of the test NLL estimate (0 = no IWAE)"),
    "eval.iwae_chunk": Range(1, None, "IWAE samples per chunk"),
    "eval.iwae_batch_size": Range(1, None, "examples per IWAE chunk"),
    "eval.num_test_examples": Range(0, None, "test examples evaluated (0 = all)"),
    "eval.active_unit_threshold": Range(0.0, None, "the activity threshold of an active unit"),
    "eval.ais_steps": Range(0, None, "AIS's annealing steps (0 = no AIS)"),
    "eval.ais_chains": Range(1, None, "AIS chains per example"),
    "eval.ais_num_examples": Range(1, None, "test examples AIS evaluates (the first N)"),
    "eval.ais_batch_size": Range(1, None, "examples per AIS batch"),
    "eval.gap_steps": Range(0, None, "optimizer steps of each example's q* (0 = no gap split)"),
    "eval.bdmc_examples": Range(0, None, "examples simulated from the model for BDMC (0 = none)"),
    "eval.disentanglement_examples": Range(2, None, "images the disentanglement metrics score"),
}


def refuse_unread(eval_config, settings: dict, *, read: bool, only_with: str) -> None:
    """Refuses `eval.<name>` settings that nothing reads: with `read` False (the switch that
    reads them is off), any of `settings` ({name: default}) set away from its default.
    `only_with` names that switch in the message."""
    if read:
        return
    unread = [f"eval.{k}={eval_config[k]!r}" for k, v in settings.items()
              if k in eval_config and eval_config[k] != v]
    if unread:
        raise ValueError(f"Refused, nothing was written: {', '.join(unread)} is read only with "
                         f"{only_with}: set it or leave them out.")


def validate(config) -> None:
    """Checks every numeric setting against `RANGES` (every float must be finite) before
    anything is written. Raises one `ConfigError` listing every bad setting. A model's sizes
    are checked by its factory (`models.check_sizes`), which knows what each means."""
    flat = flatten(config)
    problems = []
    for key, value in flat.items():
        numbers = _numbers(value)
        if numbers is None:
            continue
        if not all(math.isfinite(v) for v in numbers):
            problems.append(f"{key}={value!r} must be a finite number")
            continue
        allowed = RANGES.get(key)
        if allowed is not None and not all(allowed.admits(v) for v in numbers):
            problems.append(f"{key}={value!r} must be {allowed.describe()} ({allowed.what})")
    if problems:
        raise ConfigError("Invalid settings, nothing was written: " + "; ".join(problems) + ".")


def _numbers(value) -> list | None:
    """The numbers of a numeric setting (a tuple of them, nested or not), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return [value]
    if isinstance(value, (tuple, list)) and value:
        parts = [_numbers(v) for v in value]
        if all(p is not None for p in parts):
            return [n for p in parts for n in p]
    return None


def to_dict(config) -> dict:
    return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def from_dict(d: dict) -> ml_collections.ConfigDict:
    """Inverse of `to_dict` for a config read back from JSON (lists become tuples)."""

    def fix(value):
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return tuple(fix(v) for v in value)
        return value

    return ml_collections.ConfigDict(fix(d))
