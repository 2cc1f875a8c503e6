"""docs/burda2015/report.py: the two-layer seed table, read on constructed records whose
answers are known."""

import types

from vaejax import config as config_lib

from run_helpers import REPO

report = config_lib.load_module(REPO / "docs" / "burda2015" / "report.py")


def record(nll):
    return types.SimpleNamespace(
        results={"test/nll": nll, "test/nll_stderr": 0.2, "test/neg_elbo": nll + 5.0,
                 "active_units": 100, "latent_dim": 150},
        train={"train_seconds": 3600.0, "epochs": 160, "median_epoch_seconds": 20.0},
        run={"hardware": {"cpu": "some CPU", "cores": 2}})


def test_each_model_with_seeds_gets_its_rows_mean_and_its_comparison_with_the_vae():
    vae = {f"two_layer_vae_k1_e160_seed{s}": record(88.0 + s) for s in range(3)}
    iwae = {f"two_layer_iwae_k5_e160_seed{s}": record(86.0 + s) for s in range(3)}
    lines = report._seed_table({**vae, **iwae}, rows=[])
    assert "| IWAE (k=5), bottom-up inference, mean ± sd over 3 seeds | 87.00 ± 1.00 | | |" in lines
    assert any(line.startswith("IWAE (k=5) against the VAE (k=1), both bottom-up, at this "
                               "budget: -2.00 nats") and line.endswith("at 3280 epochs: -1.44.")
               for line in lines)
    assert not any(line.startswith("Ladder inference") for line in lines)  # no ladder records
    assert report._seed_table({}, rows=[]) == []
