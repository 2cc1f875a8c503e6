"""Sweep memory: the estimate's formula and the --dry-run table."""

from test_sweep_group import SMOKE, Log

from vaejax import config as config_lib
from vaejax import sweep
from vaejax.sweep import memory as memory_lib


def test_memory_estimate_counts_the_state_and_asks_xla_for_the_rest():
    config = config_lib.load_config(SMOKE, ["model.latent_dim=4"])
    est = memory_lib.memory_estimate(config, (28, 28, 1), 16)
    d, h, z = 784, 64, 4
    params = (d * h + h) + (h * 2 * z + 2 * z) + (z * h + h) + (h * d + d)  # 784-64-(2x4), 4-64-784
    assert est["params_per_member"] == params
    # params, Adam's mu and nu (float32), Adam's step count and the state's step (int32)
    assert est["params_bytes"] == (4 * 3 * params + 4 + 4) * 16
    # XLA's temporaries hold at least the batch's activations: input, hidden and output
    # floats of every example and member, forward.
    assert est["activations_bytes"] >= 4 * 100 * 16 * (d + h + h + d)
    bigger = memory_lib.memory_estimate(config_lib.apply_overrides(config, ["train.batch_size=200"]),
                                        (28, 28, 1), 16)
    assert bigger["activations_bytes"] > 1.5 * est["activations_bytes"]
    assert bigger["params_bytes"] == est["params_bytes"]


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    log = Log()
    out = sweep.run_sweep(SMOKE, tmp_path / "sweep", dry_run=True, shard="1/2", log=log)
    text = "\n".join(log)
    assert "8 runs in 2 groups" in text and "shard 1/2: 1 groups, 4 runs" in text
    assert "latent_dim=4,beta=2,seed=1" in text and "latent_dim=2,beta=2,seed=1" not in text
    assert "params+adam MB" in text and "XLA's temporaries of one compiled training step" in text
    assert [g.id for g in out["groups"]] == ["latent_dim=4"]
    assert not (tmp_path / "sweep").exists()
