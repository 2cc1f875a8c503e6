"""Sweep reports: the tables and figures of the trained smoke sweep, and `sweep-report`.

`smoke` is the fixture of test_sweeps_group.py: the smoke sweep is trained once per process.
"""

import math

import jax
import numpy as np
import pytest
from PIL import Image
from test_sweeps_group import (  # noqa: F401  (fixtures)
    GROUP_2,
    csvreader,
    smoke,
)

import vaejax
from vaejax import checkpoints, cli, records
from vaejax.program import Program
from vaejax.sweeps.results import FIGURES


@pytest.mark.slow
def test_smoke_sweep_end_to_end(smoke):
    workdir, out, log = smoke
    assert sorted(out["trained"]) == sorted(r.name for r in out["plan"].runs)
    rows = list(csvreader(workdir / "results.csv"))
    assert len(rows) == 8 and {r["status"] for r in rows} == {"finished"}
    for row in rows:
        for key in ("test/neg_elbo", "test/nll", "test/rate", "test/distortion", "wall_time"):
            assert math.isfinite(float(row[key])), (row["name"], key)
        assert 0 <= int(row["active_units"]) <= int(row["latent_dim"])
    md = (workdir / "results.md").read_text()
    assert "| latent_dim=4,beta=2,seed=1 | 4 | 2.00 | 1 |" in md and "Mean ± std over seeds" in md
    for name in FIGURES:
        with Image.open(workdir / "figures" / name) as image:
            assert image.size[0] > 100 and image.size[1] > 100
    record = records.read_json(workdir / "sweep.json")
    assert len(record["runs"]) == 8 and record["groups"][0]["runs"] == GROUP_2
    assert any("epoch 2/2, 4 members" in line for line in log)

    # Each run is a `vaejax train` workdir; its checkpoint is its slice of the group's.
    run_dir = workdir / "runs" / GROUP_2[3]
    assert len(records.read_metrics(run_dir)) == 2
    assert records.read_run_record(run_dir)["sweep"]["group"] == "latent_dim=2"
    config = records.run_config(run_dir)
    assert config.objective.beta == 2.0 and config.seed == 1
    program = Program.build(config, (28, 28, 1), 512)
    run = vaejax.load_run(run_dir, log=lambda *_: None)
    params, epoch = run.params, run.epoch
    group_manager = checkpoints.Manager(workdir / "groups" / "latent_dim=2")
    like = jax.eval_shape(jax.vmap(program.init_state), jax.tree.map(
        lambda *x: np.stack(x), *[program.hyper(config)] * 4))
    stacked = group_manager.restore(2, like)
    group_manager.close()
    assert epoch == 2
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b[3]), params, stacked.params)

    # sweep-report rebuilds the tables from the run workdirs.
    (workdir / "results.csv").unlink()
    assert cli.main(["sweep-report", str(workdir)]) == 0
    rebuilt = list(csvreader(workdir / "results.csv"))
    assert [r["test/nll"] for r in rebuilt] == [r["test/nll"] for r in rows]
