"""The `vaejax` command line: train, eval, sample, and one readable line for bad settings."""

import json

from vaejax import cli

from run_helpers import REPO


def test_cli_train_eval_sample_and_errors(tmp_path, mnist_dir, capsys):
    workdir = str(tmp_path / "cli")
    args = ["train", "--config", str(REPO / "experiments" / "default.py"), "--workdir", workdir,
            "--config.data.name=mnist", f"--config.data.data_dir={mnist_dir}",
            "--config.data.num_train=512", "--config.train.epochs=1", "--config.model.hidden_sizes=(32,)",
            "--config.eval.iwae_samples=5", "--config.eval.num_test_examples=100",
            "--config.eval.figures=false"]
    assert cli.main(args) == 0
    assert (tmp_path / "cli" / "results.json").exists()
    assert cli.main(args) == 2  # the workdir exists
    assert "--resume" in capsys.readouterr().err
    assert cli.main(["eval", "--workdir", workdir, "--config.eval.iwae_samples=10"]) == 0
    assert json.loads((tmp_path / "cli" / "results.json").read_text())["iwae_samples"] == 10
    assert cli.main(["sample", "--workdir", workdir]) == 0
    assert (tmp_path / "cli" / "figures" / "prior_samples.png").exists()
    assert cli.main(args[:3] + ["--workdir", str(tmp_path / "x"), "--config.model.latent_dims=3"]) == 2
    err = capsys.readouterr().err
    assert "Unknown config key 'model.latent_dims'" in err and "model.latent_dim" in err


def test_cli_bad_settings_are_one_readable_line(tmp_path, capsys):
    args = ["train", "--config", str(REPO / "experiments" / "default.py"),
            "--workdir", str(tmp_path / "x")]
    assert cli.main(args + ["--config.data.name=imagenet"]) == 2
    assert "Unknown dataset 'imagenet'" in capsys.readouterr().err
