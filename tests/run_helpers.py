"""Shared by the end-to-end tests: the real default config, shrunk, and a trained run."""

import pathlib

import vaejax
from vaejax import config as config_lib
from vaejax import loop

REPO = pathlib.Path(__file__).resolve().parents[1]


def _small(mnist_dir, overrides) -> dict:
    base = {
        "data.name": "mnist", "data.data_dir": str(mnist_dir), "data.num_train": 1024,
        "data.num_validation": 10_000, "model.hidden_sizes": (64,), "model.latent_dim": 2,
        "train.epochs": 2, "train.batch_size": 64, "eval.iwae_samples": 20,
        "eval.iwae_chunk": 10, "eval.num_test_examples": 200, "eval.batch_size": 100,
        "eval.figures": False,
    }
    return base | overrides


def small_config(mnist_dir, **overrides):
    config = config_lib.load_config(REPO / "experiments" / "default.py")
    for key, value in _small(mnist_dir, overrides).items():
        config_lib.apply_override(config, key, value)
    return config


def small_flags(mnist_dir, **overrides) -> list[str]:
    """`small_config` as `vaejax train` arguments."""
    return ["--config", str(REPO / "experiments" / "default.py")] + [
        f"--config.{key}={value!r}" if not isinstance(value, str) else f"--config.{key}={value}"
        for key, value in _small(mnist_dir, overrides).items()]


def killed_before_checkpoint(monkeypatch, config, workdir, epoch: int) -> None:
    """Trains `config` in `workdir` and kills it (KeyboardInterrupt) between writing epoch
    `epoch`'s metrics and its checkpoint: the worst moment, since metrics.jsonl is then ahead
    of the checkpoints."""
    import pytest  # noqa: PLC0415

    from vaejax import checkpoints, train  # noqa: PLC0415

    original_save = checkpoints.Manager.save

    def dying_save(self, saved_epoch, state):
        if saved_epoch == epoch:
            raise KeyboardInterrupt("killed")
        original_save(self, saved_epoch, state)

    with monkeypatch.context() as patch:
        patch.setattr(checkpoints.Manager, "save", dying_save)
        with pytest.raises(KeyboardInterrupt):
            train.train(config, workdir, log=lambda *_: None)


class Killed(Exception):
    """A kill, raised from inside a long evaluation by `dies_after`."""


def dies_after(batches: int):
    """A `progress` callback that raises `Killed` at its `batches`-th call: a kill between
    batches of an evaluation, after the batches before it were saved."""
    done = []

    def progress(n):
        done.append(n)
        if len(done) == batches:
            raise Killed

    return progress


def comparable(rows):
    return [{k: v for k, v in r.items() if k not in loop.TIMING_KEYS} for r in rows]


def final_params(workdir, config):
    _, params, _ = vaejax.load_run(workdir, log=lambda *_: None)
    return params
