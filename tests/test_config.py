"""Experiment configs and dotted overrides."""

import pathlib

import pytest

from vaejax import config as config_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT = REPO / "experiments" / "default.py"


def test_every_experiment_loads():
    for path in sorted((REPO / "experiments").glob("*.py")):
        config = config_lib.load_config(path)
        fields = config_lib.flatten(config)
        for key in ("seed", "data.name", "model.kind", "objective.beta", "train.epochs",
                    "train.batch_size"):
            assert key in fields, (path.name, key)
        # The size of the latent space: one vector, or one per stochastic layer (two_layer).
        assert "model.latent_dim" in fields or "model.latent_dims" in fields, path.name


def test_overrides_parse_by_field_type():
    config = config_lib.load_config(DEFAULT, [
        "--config.model.latent_dim=8", "config.objective.beta=4", "train.epochs=3",
        "--config.model.hidden_sizes=(64, 32)", "--config.data.name=mnist",
        "--config.train.validate=false", "--config.optimizer.learning_rate=3e-4"])
    assert config.model.latent_dim == 8 and isinstance(config.model.latent_dim, int)
    assert config.objective.beta == 4.0 and isinstance(config.objective.beta, float)
    assert config.train.epochs == 3
    assert config.model.hidden_sizes == (64, 32)
    assert config.data.name == "mnist"
    assert config.train.validate is False
    assert config.optimizer.learning_rate == pytest.approx(3e-4)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(config_lib.ConfigError, match="Unknown config key 'model.latent_dims'") as e:
        config_lib.load_config(DEFAULT, ["--config.model.latent_dims=8"])
    assert "model.latent_dim" in str(e.value) and "objective.beta" in str(e.value)


@pytest.mark.parametrize("override,match", [
    ("model.latent_dim=eight", "model.latent_dim is int"),
    ("model.latent_dim=2.5", "model.latent_dim is int"),
    ("train.validate=maybe", "is a bool"),
    ("objective.beta=[1, 2]", "objective.beta is float"),
    ("model.latent_dim", "must look like"),
])
def test_wrong_type_is_rejected(override, match):
    with pytest.raises(config_lib.ConfigError, match=match):
        config_lib.load_config(DEFAULT, [override])


def test_missing_file_is_a_clear_error():
    with pytest.raises(config_lib.ConfigError, match="does not exist"):
        config_lib.load_config(REPO / "experiments" / "nope.py")


def test_dict_round_trip_keeps_tuples():
    config = config_lib.load_config(DEFAULT)
    import json
    back = config_lib.from_dict(json.loads(json.dumps(config_lib.to_dict(config))))
    assert back.model.hidden_sizes == config.model.hidden_sizes
    assert config_lib.flatten(back) == config_lib.flatten(config)
