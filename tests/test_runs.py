"""`vaejax.load_run`: one way to load a run, for notebooks, eval and figures."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vaejax
from vaejax import checkpoints, config as config_lib


def test_load_run_gives_model_params_config_of_the_latest_checkpoint(trained):
    workdir, config, _ = trained
    model, params, loaded = vaejax.load_run(workdir, log=lambda *_: None)
    assert loaded.model.to_dict() == config.model.to_dict()
    manager = checkpoints.Manager(workdir)
    assert vaejax.load_run(workdir, log=lambda *_: None).epoch == manager.latest_epoch() == 3
    manager.close()
    x = jnp.zeros(model.data_shape)
    q = model.posterior(params, x)
    assert model.likelihood(params, q.mean()).mean().shape == model.data_shape
    # Other eval settings replace the record's; the model and its params stay.
    other = config_lib.apply_overrides(loaded, ["eval.iwae_samples=7"])
    run = vaejax.load_run(workdir, config=other, log=lambda *_: None)
    assert run.config.eval.iwae_samples == 7
    jax.tree.map(np.testing.assert_array_equal, run.params, params)


def test_load_run_without_a_checkpoint_says_what_to_do(trained, tmp_path):
    workdir, _, _ = trained
    (tmp_path / "run.json").write_bytes((workdir / "run.json").read_bytes())
    with pytest.raises(FileNotFoundError, match="No checkpoint .* train first"):
        vaejax.load_run(tmp_path, log=lambda *_: None)
