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


def test_dry_run_compiles_each_group_shape_once_and_prints_as_it_goes(tmp_path, monkeypatch):
    """Groups split into parts (or differing only in vmapped scalars) share one compiled step:
    the Locatello study's 36 groups are 6 shapes. Each group's line reaches the log when its
    estimate is known, not in one block at the end."""
    calls, log = [], Log()
    real = memory_lib.memory_estimate

    def counted(config, image_shape, num_members):
        calls.append((config.model.latent_dim, num_members, len(log)))
        return real(config, image_shape, num_members)

    monkeypatch.setattr(memory_lib, "memory_estimate", counted)
    out = sweep.run_sweep(SMOKE, tmp_path / "sweep", dry_run=True, max_group_size=2, log=log)
    assert len(out["groups"]) == 4 and [c[:2] for c in calls] == [(2, 2), (4, 2)]
    # the second compile happened after the first group's lines were logged
    assert any("part=1of2" in line for line in log[:calls[1][2]])
    assert sum("part=" in line and " 2 " in line for line in log) == 4
