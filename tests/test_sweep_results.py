"""`vaejax.sweep.results`: tables and figures from run workdirs, without training anything.

Run workdirs are written by hand here (run.json, metrics.jsonl, results.json, diverged.json),
as the loop and evaluation write them; the trained end to end case is in test_sweep_group.py.
"""

import csv
import json

from PIL import Image

from vaejax import records
from vaejax.sweep import report
from vaejax.sweep.plan import SWEEP_RECORD
from vaejax.sweep.results import FIGURES


def _run(sweep_dir, name, latent_dim, beta, seed, *, nll=None, diverged=False, epochs=2,
         planned_epochs=None, epoch_time=1.5):
    run_dir = sweep_dir / "runs" / name
    run_dir.mkdir(parents=True)
    config = {"seed": seed, "model": {"latent_dim": latent_dim, "kind": "mlp"},
              "objective": {"beta": beta}}
    if planned_epochs is not None:
        config["train"] = {"epochs": planned_epochs}
    overrides = {"model.latent_dim": latent_dim, "objective.beta": beta, "seed": seed}
    records.write_json(run_dir / records.RUN_RECORD, {
        "config": config, "sweep": {"group": f"latent_dim={latent_dim}", "overrides": overrides}})
    for epoch in range(1, epochs + 1):
        records.append_metrics(run_dir, {"epoch": epoch, "step": 10 * epoch,
                                         "epoch_time": epoch_time})
    if diverged:
        records.write_json(run_dir / records.DIVERGED, {"epoch": 1, "step": 3, "message": "nan"})
    elif nll is not None:
        records.write_json(run_dir / records.RESULTS, {
            "test/neg_elbo": nll + 2.0, "test/nll": nll, "test/rate": 10.0 / beta,
            "test/distortion": nll - 10.0 / beta, "active_units": latent_dim, "eval_time": 3.0})


def test_report_tables_statuses_and_figures(tmp_path):
    for seed, nll in ((0, 100.0), (1, 102.0)):
        _run(tmp_path, f"latent_dim=2,beta=1,seed={seed}", 2, 1.0, seed, nll=nll)
        _run(tmp_path, f"latent_dim=4,beta=0.5,seed={seed}", 4, 0.5, seed, nll=nll - 5)
    _run(tmp_path, "latent_dim=4,beta=4,seed=0", 4, 4.0, 0, diverged=True)
    _run(tmp_path, "latent_dim=4,beta=4,seed=1", 4, 4.0, 1, epochs=1)  # still training
    planned = {"runs": [{"name": "latent_dim=8,beta=1,seed=0", "group": "latent_dim=8",
                         "overrides": {"model.latent_dim": 8, "objective.beta": 1.0, "seed": 0}}],
               "base_config": {"seed": 0, "model": {"latent_dim": 8}, "objective": {"beta": 1.0}}}
    (tmp_path / SWEEP_RECORD).write_text(json.dumps(planned))
    log = []
    rows = report(tmp_path, log=log.append)

    status = {r["name"]: r["status"] for r in rows}
    assert status == {"latent_dim=8,beta=1,seed=0": "pending",
                      "latent_dim=2,beta=1,seed=0": "finished", "latent_dim=2,beta=1,seed=1": "finished",
                      "latent_dim=4,beta=0.5,seed=0": "finished", "latent_dim=4,beta=0.5,seed=1": "finished",
                      "latent_dim=4,beta=4,seed=0": "diverged", "latent_dim=4,beta=4,seed=1": "epoch 1"}
    assert "4 of 7 runs finished, 1 in progress, 1 diverged, 1 not started" in log[-1]
    with open(tmp_path / "results.csv") as f:
        table = {r["name"]: r for r in csv.DictReader(f)}
    assert float(table["latent_dim=2,beta=1,seed=1"]["test/nll"]) == 102.0
    assert float(table["latent_dim=2,beta=1,seed=0"]["wall_time"]) == 1.5 * 2 + 3.0  # training + eval
    md = (tmp_path / "results.md").read_text()
    assert "| 2 | 1.00 | 2 | 103.00 ± 1.00 | 101.00 ± 1.00 |" in md  # mean ± std over the 2 seeds
    for name in FIGURES:
        with Image.open(tmp_path / "figures" / name) as image:
            assert image.size[0] > 100 and image.size[1] > 100


def test_report_on_a_running_sweep_says_how_far_it_is_and_the_time_left(tmp_path):
    """Group 2 is finished (2 s epochs, 3 s evaluations), group 4 is at epoch 1 of 4 (5 s
    epochs), group 8 has not started: 3 x 5 s + 4 x 3.5 s (the median epoch so far) + two
    evaluations of 3 s (one per group: its members are evaluated together) = 35 s left."""
    for seed in (0, 1):
        _run(tmp_path, f"latent_dim=2,beta=1,seed={seed}", 2, 1.0, seed, nll=100.0, epochs=4,
             planned_epochs=4, epoch_time=2.0)
        _run(tmp_path, f"latent_dim=4,beta=1,seed={seed}", 4, 1.0, seed, epochs=1,
             planned_epochs=4, epoch_time=5.0)
    planned = {"runs": [{"name": "latent_dim=8,beta=1,seed=0", "group": "latent_dim=8",
                         "overrides": {"model.latent_dim": 8, "objective.beta": 1.0, "seed": 0}}],
               "base_config": {"seed": 0, "model": {"latent_dim": 8}, "objective": {"beta": 1.0},
                               "train": {"epochs": 4}}}
    (tmp_path / SWEEP_RECORD).write_text(json.dumps(planned))
    log = []
    report(tmp_path, log=log.append)
    assert "2 of 5 runs finished, 2 in progress, 1 not started; 10 of 20 epochs, about 35 s " \
           "left at the speed so far" in log[-1]
    assert "10 of 20 epochs, about 35 s left" in (tmp_path / "results.md").read_text()
