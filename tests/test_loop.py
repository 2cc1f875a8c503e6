"""`vaejax.loop`: one host loop for one model and for a vmapped group."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaejax import checkpoints, loop, records
from vaejax.program import Program

from tiny import IMAGE_SHAPE, images, tiny_config  # noqa: E402


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def test_group_member_that_diverges_is_written_off_and_the_others_go_on(tmp_path):
    """Member 1's learning rate is huge: its loss turns non-finite; member 0 trains on, and
    the loop records, checkpoints and reports exactly that."""
    config = tiny_config("train.epochs=3")
    program = Program.build(config, IMAGE_SHAPE, 64)
    hypers = _stack([program.hyper(config), program.hyper(config)])
    hypers["learning_rate"] = jnp.asarray([1e-3, 1e30], jnp.float32)
    state = jax.jit(jax.vmap(program.init_state))(hypers)
    workdirs = [tmp_path / "ok", tmp_path / "bad"]
    for w in workdirs:
        w.mkdir()
    manager = checkpoints.Manager(tmp_path / "group", keep=3)
    log = []
    state, diverged = loop.fit(
        program, loop.epoch_functions(program, num_members=2), state, hypers,
        jnp.asarray(images(64)), jnp.asarray(images(16, seed=1)), workdirs=workdirs,
        manager=manager, start_epoch=0, epochs=3, checkpoint_every=1, log=log.append)
    manager.close()
    assert list(diverged) == [1] and "Lower optimizer.learning_rate" in diverged[1]
    assert records.read_json(tmp_path / "bad" / records.DIVERGED)["epoch"] >= 1
    assert [r["epoch"] for r in records.read_metrics(tmp_path / "ok")] == [1, 2, 3]
    assert all(np.isfinite(r["val/neg_elbo"]) for r in records.read_metrics(tmp_path / "ok"))
    assert any("epoch 3/3, 1 members" in line for line in log)


def test_epoch_record_means_and_last_values():
    metrics = {"loss": np.array([3.0, 1.0]), "rate": np.array([1.0, 2.0]),
               "distortion": np.array([4.0, 6.0]), "beta": np.array([0.5, 1.0]),
               "lr": np.array([1e-3, 5e-4])}
    record = loop.epoch_record(2, 16, metrics, {"neg_elbo": 7.0}, 2.0, 128, ("lr", "beta"))
    assert record == pytest.approx({
        "epoch": 2, "step": 16, "train/loss": 2.0, "train/rate": 1.5, "train/distortion": 5.0,
        "train/neg_elbo": 6.5, "beta": 1.0, "lr": 5e-4, "val/neg_elbo": 7.0, "epoch_time": 2.0,
        "examples_per_sec": 64.0})
