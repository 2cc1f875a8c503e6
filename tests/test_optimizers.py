"""`vaejax.optimizers`: directions and learning-rate shapes by name."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from vaejax import optimizers


def _opt(**kw):
    base = dict(name="adam", schedule="constant", warmup_steps=0, weight_decay=0.0,
                grad_clip_norm=0.0, b1=0.9, b2=0.999, eps=1e-8)
    return ml_collections.ConfigDict(base | kw)


def test_adam_direction_equals_optax_adam_at_rate_one():
    params, grads = {"w": jnp.array([1.0, -2.0])}, {"w": jnp.array([0.5, 3.0])}
    tx = optimizers.direction(_opt())
    direction, _ = tx.update(grads, tx.init(params), params)
    expected, _ = optax.adam(1.0).update(grads, optax.adam(1.0).init(params), params)
    np.testing.assert_allclose(direction["w"], -expected["w"], rtol=1e-6)


def test_adamw_decays_and_clipping_bounds_the_norm():
    params, zero = {"w": jnp.array([2.0])}, {"w": jnp.array([0.0])}
    tx = optimizers.direction(_opt(name="adamw", weight_decay=0.1))
    direction, _ = tx.update(zero, tx.init(params), params)
    np.testing.assert_allclose(direction["w"], [0.2], rtol=1e-6)  # decay only: 0.1 * w
    clipped = optimizers.direction(_opt(grad_clip_norm=1.0))
    big = {"w": jnp.array([300.0])}
    d_big, _ = clipped.update(big, clipped.init(params), params)
    d_one, _ = clipped.update({"w": jnp.array([1.0])}, clipped.init(params), params)
    np.testing.assert_allclose(d_big["w"], d_one["w"], rtol=1e-5)


def test_schedules_are_shapes_in_zero_one():
    cosine = optimizers.lr_shape(_opt(schedule="cosine"), 100, 10)
    assert float(cosine(0)) == pytest.approx(1.0) and float(cosine(100)) == pytest.approx(0.0)
    warm = optimizers.lr_shape(_opt(schedule="warmup_cosine", warmup_steps=10), 100, 10)
    assert float(warm(0)) == 0.0 and float(warm(10)) == pytest.approx(1.0)
    assert float(optimizers.lr_shape(_opt(), 100, 10)(50)) == 1.0


def test_burda_schedule_follows_the_papers_stages():
    """Stage i lasts 3^i epochs at 10^(-i/7): epochs 0 | 1-3 | 4-12 | 13-39 | ... | 1093-3279."""
    steps_per_epoch = 7
    shape = optimizers.lr_shape(_opt(schedule="burda"), 3280 * steps_per_epoch, steps_per_epoch)
    expected_stage = {0: 0, 1: 1, 3: 1, 4: 2, 12: 2, 13: 3, 39: 3, 40: 4, 1092: 6, 1093: 7, 3279: 7}
    for epoch, stage in expected_stage.items():
        for step in (epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch - 1):
            assert float(shape(step)) == pytest.approx(10 ** (-stage / 7), rel=1e-6), (epoch, step)
    # The paper's 3280 epochs spend sum(3^i, i < 8) epochs in stages 0..7.
    epochs = np.arange(3280)
    stages = np.round(-7 * np.log10([float(shape(e * steps_per_epoch)) for e in epochs])).astype(int)
    assert np.bincount(stages).tolist() == [3 ** i for i in range(8)]


def test_an_optimizer_and_a_schedule_of_ones_own_come_from_the_experiment_folder(tmp_path, mnist_dir):
    """optimizer.name and optimizer.schedule as "module:attribute" beside the experiment: each
    is called with the config.optimizer settings its signature names, and trains."""
    from run_helpers import small_config
    from vaejax import program, records, train

    (tmp_path / "my_optim.py").write_text(
        "import jax.numpy as jnp\n"
        "import optax\n"
        "def momentum_sgd(*, momentum=0.0):\n"
        "    return optax.trace(decay=momentum)\n"
        "def halving(total_steps, steps_per_epoch, *, every_epochs=1):\n"
        "    return lambda step: 0.5 ** (step // (steps_per_epoch * every_epochs))\n")
    config = small_config(mnist_dir, **{"train.epochs": 3, "eval.iwae_samples": 0,
                                        "optimizer.learning_rate": 0.01})
    config.experiment_dir = str(tmp_path)
    config.optimizer.name = "my_optim:momentum_sgd"
    config.optimizer.schedule = "my_optim:halving"
    config.optimizer.momentum = 0.9
    config.optimizer.every_epochs = 1
    program.check_new_run(config)
    train.train(config, tmp_path / "run", log=lambda *_: None)
    lrs = [m["lr"] for m in records.read_metrics(tmp_path / "run")]
    # the rate at each epoch's last step: 0.01 halved at every epoch boundary before it
    np.testing.assert_allclose(lrs, [0.01 * 0.5 ** 0, 0.01 * 0.5 ** 1, 0.01 * 0.5 ** 2], rtol=1e-6)
    config.optimizer.b1 = 0.5  # Adam's setting, which momentum_sgd does not read
    with pytest.raises(ValueError, match="optimizer.b1=0.5 does nothing with "
                                         "optimizer.name='my_optim:momentum_sgd'"):
        program.check_new_run(config)
