"""Experiment configs: Python files with `get_config()`, and dotted command-line overrides.

An experiment file returns an `ml_collections.ConfigDict`. Overrides are strings
`"model.latent_dim=8"` (the CLI takes `--config.model.latent_dim=8`); the value is parsed
as the type of the field it replaces, and an unknown key or a wrong type is rejected with
the valid keys listed.
"""

from __future__ import annotations

import ast
import importlib.util
import pathlib
from typing import Any, Iterable

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

    Sets `experiment_dir` to the file's folder (unless the file sets it): `"module:attribute"`
    models and objectives are imported from there.
    """
    module = load_module(path)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path} has no get_config() function.")
    config = module.get_config()
    if not config.get("experiment_dir"):
        config.experiment_dir = str(pathlib.Path(path).resolve().parent)
    return apply_overrides(config, overrides)


# Settings added since runs were first recorded, with the value that reproduces older runs.
_ADDED_OBJECTIVE_FIELDS = {"gradient_estimator": "reparam", "num_groups": 1, "alpha": 1.0, "gamma": 1.0,
                           "sampling": "mws"}


def upgrade(config: dict) -> dict:
    """A config recorded by an older vaejax, in today's layout: the top-level `likelihood`
    moved into `model` (it is part of the model since models became plug-ins), and objective
    settings added later get the value the older run used."""
    config = dict(config)
    if "likelihood" in config:
        config["model"] = {**config["model"], "likelihood": config.pop("likelihood")}
    if "objective" in config:
        config["objective"] = {**_ADDED_OBJECTIVE_FIELDS, **config["objective"]}
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
