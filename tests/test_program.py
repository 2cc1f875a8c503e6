"""`vaejax.program`: what a config fixes: hyperparameters, traced scalars, the step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaejax import program as program_lib
from vaejax.data import Examples
from vaejax.program import Program, vmapped_keys

from tiny import IMAGE_SHAPE, images, tiny_config  # noqa: E402


def test_hyper_holds_the_objectives_scalars():
    elbo = Program.build(tiny_config("objective.beta=0.5"), IMAGE_SHAPE, 64)
    assert elbo.scalars == ("beta",) and elbo.data_shape == (16,)
    assert set(elbo.hyper(tiny_config("objective.beta=0.5"))) == {"seed", "learning_rate", "beta"}
    assert vmapped_keys(tiny_config()) == ("seed", "optimizer.learning_rate", "objective.beta")
    iwae = tiny_config("objective.kind=iwae", "objective.num_samples=3")
    assert Program.build(iwae, IMAGE_SHAPE, 64).scalars == ()
    assert vmapped_keys(iwae) == ("seed", "optimizer.learning_rate")


def test_beta_schedule_reads_its_settings_by_name():
    config = tiny_config("objective.beta_schedule=linear", "objective.warmup_steps=10",
                         "objective.beta=2.0")
    program = Program.build(config, IMAGE_SHAPE, 64)
    hyper = program.hyper(config)
    assert float(program.scalars_at(hyper, 5)["beta"]) == pytest.approx(1.0)
    assert float(program.scalars_at(hyper, 20)["beta"]) == pytest.approx(2.0)


def test_bad_names_fail_before_anything_runs():
    with pytest.raises(ValueError, match="Unknown objective.kind 'elb'"):
        Program.build(tiny_config("objective.kind=elb"), IMAGE_SHAPE, 64)
    with pytest.raises(ValueError, match="Unknown optimizer.name 'sgdd'"):
        Program.build(tiny_config("optimizer.name=sgdd"), IMAGE_SHAPE, 64)
    with pytest.raises(ValueError, match="Unknown optimizer.schedule 'cosyne'"):
        Program.build(tiny_config("optimizer.schedule=cosyne"), IMAGE_SHAPE, 64)
    with pytest.raises(ValueError, match="Unknown objective.beta_schedule 'ramp'"):
        Program.build(tiny_config("objective.beta_schedule=ramp"), IMAGE_SHAPE, 64)
    with pytest.raises(ValueError, match="Unknown data.preprocessing 'blur'"):
        Program.build(tiny_config("data.preprocessing=blur"), IMAGE_SHAPE, 64)
    with pytest.raises(ValueError, match=r"train.batch_size=8 must be in \[1, 4\]"):
        Program.build(tiny_config(), IMAGE_SHAPE, 4)


def test_epoch_is_a_pure_function_of_seed_and_epoch():
    config = tiny_config()
    program = Program.build(config, IMAGE_SHAPE, 64)
    hyper, data = program.hyper(config), jnp.asarray(images(64))
    epoch = jax.jit(program.train_epoch)
    state = jax.jit(program.init_state)(hyper)
    a, metrics = epoch(state, hyper, data, jnp.int32(0))
    b, _ = epoch(state, hyper, data, jnp.int32(0))
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert int(a.step) == 8 and metrics["loss"].shape == (8,)
    assert set(metrics) == {"loss", "rate", "distortion", "beta", "lr"}
    c, _ = epoch(state, hyper, data, jnp.int32(1))  # another epoch: another batch order
    assert not np.array_equal(a.params["decoder"]["Dense_1"]["bias"], c.params["decoder"]["Dense_1"]["bias"])
    # another seed: another batch order and other noise, from the same state
    other = {**hyper, "seed": jnp.int32(1)}
    d, _ = epoch(state, other, data, jnp.int32(0))
    e, _ = epoch(state, other, data, jnp.int32(0))
    jax.tree.map(np.testing.assert_array_equal, d, e)
    assert not np.array_equal(a.params["decoder"]["Dense_1"]["bias"], d.params["decoder"]["Dense_1"]["bias"])
    # and the seed alone decides: a copy of the hyperparameters with seed 0 again gives `a`
    f, _ = epoch(state, {**other, "seed": jnp.int32(0)}, data, jnp.int32(0))
    jax.tree.map(np.testing.assert_array_equal, a, f)


def test_abstract_state_restores_without_data():
    config = tiny_config()
    program = Program.build(config, IMAGE_SHAPE, 64)
    real = jax.eval_shape(program.init_state, program.hyper(config))
    assert jax.tree.structure(program.abstract_state()) == jax.tree.structure(real)


def test_program_starts_the_output_bias_at_the_training_images_mean():
    config = tiny_config()
    config.model.output_bias = "mean_logit"  # as experiments/iwae_two_layer.py sets it
    train = images(64)
    program = Program.build(config, IMAGE_SHAPE, 64, Examples(train))
    state = jax.jit(program.init_state)(program.hyper(config))
    p = np.clip(train.reshape(64, -1).astype(np.float64).mean(0) / 255.0, 0.001, 0.999)
    np.testing.assert_allclose(state.params["decoder"]["Dense_1"]["bias"], np.log(p / (1 - p)), rtol=1e-5, atol=1e-5)
