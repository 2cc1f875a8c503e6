"""`vaejax.train` end to end on real MNIST: training, resume, NaN stop, workdir protection,
several devices. Every run is the real default config shrunk, as the flax examples test `main`.
"""

import json
import pathlib
import stat

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaejax import checkpoints, loop, records, train
from vaejax import files as files_lib
from vaejax.program import Program

from run_helpers import REPO, comparable, final_params, killed_before_checkpoint, small_config


def test_short_run_lowers_validation_loss_and_writes_everything(trained):
    workdir, config, result = trained
    rows = records.read_metrics(workdir)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["val/neg_elbo"] < rows[0]["val/neg_elbo"] - 5.0
    for key in ("train/neg_elbo", "train/rate", "train/distortion", "val/neg_elbo", "val/rate",
                "val/distortion", "lr", "examples_per_sec", "epoch_time"):
        assert np.isfinite(rows[-1][key]), key
    assert rows[-1]["train/neg_elbo"] == pytest.approx(
        rows[-1]["train/rate"] + rows[-1]["train/distortion"], rel=1e-6)
    assert checkpoints.Manager(workdir).epochs() == [1, 2, 3]
    run = records.read_run_record(workdir)
    assert run["seed"] == 0 and run["backend"] == jax.default_backend()
    assert run["versions"]["jax"] == jax.__version__ and run["device_kind"]
    assert run["config"]["model"]["latent_dim"] == 2


def test_same_seed_same_metrics_other_seed_differs(tmp_path, mnist_dir):
    config = small_config(mnist_dir, **{"train.epochs": 1})
    a = train.train(config, tmp_path / "a", evaluate_at_end=False, log=lambda *_: None)
    b = train.train(config, tmp_path / "b", evaluate_at_end=False, log=lambda *_: None)
    other = small_config(mnist_dir, **{"train.epochs": 1, "seed": 1})
    c = train.train(other, tmp_path / "c", evaluate_at_end=False, log=lambda *_: None)
    assert comparable([a]) == comparable([b])
    assert a["val/neg_elbo"] != c["val/neg_elbo"] and a["train/loss"] != c["train/loss"]


def test_killed_and_resumed_equals_uninterrupted(tmp_path, mnist_dir, monkeypatch):
    config = small_config(mnist_dir, **{"train.epochs": 3})
    train.train(config, tmp_path / "whole", evaluate_at_end=False, log=lambda *_: None)

    killed_before_checkpoint(monkeypatch, config, tmp_path / "killed", epoch=2)
    assert [r["epoch"] for r in records.read_metrics(tmp_path / "killed")] == [1, 2]

    train.train(config, tmp_path / "killed", resume=True, evaluate_at_end=False,
                log=lambda *_: None)
    whole = records.read_metrics(tmp_path / "whole")
    resumed = records.read_metrics(tmp_path / "killed")
    assert comparable(whole) == comparable(resumed)
    pa, pb = final_params(tmp_path / "whole", config), final_params(tmp_path / "killed", config)
    for a, b in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # bitwise


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path, mnist_dir, monkeypatch):
    config = small_config(mnist_dir, **{"train.epochs": 3})  # 16 steps per epoch
    original_step = Program.train_step

    def poisoned_step(self, state, hyper, x, keys):
        state, metrics = original_step(self, state, hyper, x, keys)
        bad = state.step >= 20  # the 20th step (in epoch 2) yields NaN
        metrics["loss"] = jnp.where(bad, jnp.nan, metrics["loss"])
        return state, metrics

    monkeypatch.setattr(Program, "train_step", poisoned_step)
    with pytest.raises(loop.TrainingDiverged, match=r"step 20 \(epoch 2\).*epoch 1"):
        train.train(config, tmp_path / "run", evaluate_at_end=False, log=lambda *_: None)
    assert checkpoints.Manager(tmp_path / "run").epochs() == [1]
    assert [r["epoch"] for r in records.read_metrics(tmp_path / "run")] == [1]


def test_existing_workdir_is_never_overwritten(tmp_path, mnist_dir):
    config = small_config(mnist_dir, **{"train.epochs": 1})
    workdir = tmp_path / "run"
    train.train(config, workdir, evaluate_at_end=False, log=lambda *_: None)
    before = (workdir / "metrics.jsonl").read_text()
    with pytest.raises(train.WorkdirExistsError, match="--resume"):
        train.train(config, workdir, evaluate_at_end=False, log=lambda *_: None)
    assert (workdir / "metrics.jsonl").read_text() == before
    # A resumed run with another architecture is refused, naming the key.
    changed = small_config(mnist_dir, **{"train.epochs": 1, "model.latent_dim": 3})
    with pytest.raises(ValueError, match="model.latent_dim"):
        train.train(changed, workdir, resume=True, evaluate_at_end=False, log=lambda *_: None)
    # --overwrite moves the old run aside: nothing is lost.
    train.train(config, workdir, overwrite=True, evaluate_at_end=False, log=lambda *_: None)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert len(aside) == 1 and (aside[0] / "metrics.jsonl").read_text() == before


def test_resuming_a_finished_run_changes_nothing(trained):
    workdir, config, _ = trained
    files = ["results.json", "metrics.jsonl"]
    before = {f: ((workdir / f).read_bytes(), (workdir / f).stat().st_mtime_ns) for f in files}
    result = train.train(config, workdir, resume=True, log=lambda *_: None)
    after = {f: ((workdir / f).read_bytes(), (workdir / f).stat().st_mtime_ns) for f in files}
    assert before == after
    assert result["results"]["test/nll"] == json.loads(before["results.json"][0])["test/nll"]


def test_eight_cpu_devices_match_one(tmp_path, mnist_dir):
    """Batches sharded over a mesh axis "data" of 8 devices give one device's numbers."""
    import os
    import subprocess
    import sys

    overrides = {"train.epochs": 2, "eval.iwae_samples": 10}
    config = small_config(mnist_dir, **overrides)
    train.train(config, tmp_path / "one", log=lambda *_: None)
    code = (
        "import jax, json, sys\n"
        "assert jax.device_count() == 8\n"
        "sys.path.insert(0, {tests!r})\n"
        "from run_helpers import small_config\n"
        "from vaejax import train\n"
        "config = small_config({mnist!r}, **{overrides!r})\n"
        "train.train(config, {workdir!r})\n"
    ).format(tests=str(REPO / "tests"), mnist=str(mnist_dir), overrides=overrides,
             workdir=str(tmp_path / "eight"))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sharded over 8 devices" in proc.stdout
    one, eight = (comparable(records.read_metrics(tmp_path / w)) for w in ("one", "eight"))
    assert len(one) == len(eight) == 2
    for a, b in zip(one, eight):
        for key, value in a.items():
            assert b[key] == pytest.approx(value, rel=1e-4), key
    ra, rb = (json.loads((tmp_path / w / "results.json").read_text()) for w in ("one", "eight"))
    for key in ("test/neg_elbo", "test/nll", "test/rate", "test/distortion"):
        assert rb[key] == pytest.approx(ra[key], rel=1e-4), key


def test_every_file_of_a_run_is_as_readable_as_the_umask_allows(trained):
    """Records, checkpoints, figures and the lock: 0666 less the umask, like orbax's files
    (a sweep directory shared by a team stays readable by the group)."""
    workdir, _, _ = trained
    files = [p for p in pathlib.Path(workdir).rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"run.json", "metrics.jsonl", "results.json", "training_curves.png"} <= names
    modes = {str(p.relative_to(workdir)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {oct(0o666 & ~files_lib.umask())}, modes
