"""`vaejax.loop`: one host loop for one model and for a vmapped group."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaejax import checkpoints, loop, progress, records
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


def test_progress_callback_reports_steps_and_changes_nothing():
    """The callback inside the scan sees steps every, 2*every, ...; once per group, not per
    member; and the epoch's state and metrics are bitwise those of an epoch without it."""
    config = tiny_config("train.progress_every=3")
    program = Program.build(config, IMAGE_SHAPE, 64)  # 8 steps per epoch
    data = jnp.asarray(images(64))
    seen = []

    def on_steps(n):
        seen.append(int(n))

    with_cb = jax.jit(lambda s, h: program.train_epoch(s, h, data, 0, on_steps=on_steps, every=3))
    without = jax.jit(lambda s, h: program.train_epoch(s, h, data, 0))
    hyper = program.hyper(config)
    (a, ma), (b, mb) = with_cb(program.init_state(hyper), hyper), without(program.init_state(hyper), hyper)
    jax.effects_barrier()
    assert seen == [3, 6]
    for x, y in zip(jax.tree.leaves((a, ma)), jax.tree.leaves((b, mb))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))

    seen.clear()
    hypers = _stack([hyper, hyper, hyper])
    group = jax.jit(jax.vmap(lambda s, h: program.train_epoch(s, h, data, 0, on_steps=on_steps,
                                                              every=3)))
    jax.block_until_ready(group(jax.vmap(program.init_state)(hypers), hypers))
    jax.effects_barrier()
    assert seen == [3, 6]


def test_an_epoch_shorter_than_the_progress_interval_compiles_no_callback():
    """Only an epoch that can reach `every` steps carries the host callback, which keeps a
    program out of JAX's persistent compilation cache."""
    config = tiny_config("train.progress_every=3")
    program = Program.build(config, IMAGE_SHAPE, 64)  # 8 steps per epoch
    data = jnp.asarray(images(64))
    hyper = program.hyper(config)

    def compiled_text(every):
        epoch = jax.jit(lambda s, h: program.train_epoch(s, h, data, 0, on_steps=print, every=every))
        return epoch.lower(program.init_state(hyper), hyper).as_text()

    assert "callback" in compiled_text(8) and "callback" not in compiled_text(9)


def test_progress_lines_inside_an_epoch(tmp_path, monkeypatch):
    """With the interval at 0 every callback prints: steps, percent, rate and time left."""
    monkeypatch.setattr(progress, "PROGRESS_INTERVAL", 0.0)
    config = tiny_config("train.progress_every=4")
    program = Program.build(config, IMAGE_SHAPE, 64)
    hyper = program.hyper(config)
    (tmp_path / "run").mkdir()
    manager = checkpoints.Manager(tmp_path / "run", keep=1)
    log = []
    loop.fit(program, loop.epoch_functions(program), program.init_state(hyper), hyper,
             jnp.asarray(images(64)), None, workdirs=[tmp_path / "run"], manager=manager,
             start_epoch=0, epochs=2, checkpoint_every=1, log=log.append)
    jax.effects_barrier()
    manager.close()
    inside = [line for line in log if ": step " in line]
    assert [line.split(": step ")[1].split(" ")[0] for line in inside] == ["4/8", "8/8"] * 2
    assert inside[0].startswith("train: epoch 1/2: step 4/8 (50%), ")
    assert "examples/s, epoch ends in " in inside[0] and ", training in " in inside[0]
    assert any(line.startswith("train: epoch 1/2, ") and "training done in " in line for line in log)


def test_time_left_is_the_recent_median_so_one_stalled_epoch_does_not_move_it():
    times = [2.0] * 49 + [600.0]  # one epoch held up by SIGSTOP or a busy machine
    assert loop.time_left(times, epochs_left=100) == 200.0
    # the window: only the last 50 epochs count, so a change of speed shows within 26 epochs
    assert loop.time_left([2.0] * 100 + [4.0] * 26, epochs_left=10) == 40.0
    assert loop.time_left([], epochs_left=10) == 0.0
