"""Sweeps: expansion and names, a vmapped group equals separate runs, resume, shards, devices.

The end-to-end tests shrink experiments/smoke_sweep.py (512 training images, 2 epochs, IWAE
K=10 on 200 test images) and share one trained sweep (`smoke`). A persistent compilation
cache makes the programs that several tests compile again (same shapes) cost one compile.
"""

import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from vaejax import checkpoints, cli, records
from vaejax import config as config_lib
from vaejax import sweep
from vaejax import train as train_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE = REPO / "experiments" / "smoke_sweep.py"
SHRINK = ("data.num_train=512", "data.num_validation=500", "eval.iwae_samples=10",
          "eval.iwae_chunk=10", "eval.num_test_examples=200")
GROUP_2 = ["latent_dim=2,beta=0.5,seed=0", "latent_dim=2,beta=0.5,seed=1",
           "latent_dim=2,beta=2,seed=0", "latent_dim=2,beta=2,seed=1"]
NO_IWAE = ("eval.iwae_samples=0",)
RTOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def _compilation_cache(tmp_path_factory):
    """Identical programs compiled by several tests (or by train.train per run) hit a cache."""
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")
    old = {name: getattr(jax.config, name) for name in names}
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax-cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    yield
    for name, value in old.items():
        jax.config.update(name, value)


class Log(list):
    def __call__(self, *args):
        self.append(" ".join(str(a) for a in args))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, fashion_mnist_dir):
    workdir = tmp_path_factory.mktemp("smoke")
    log = Log()
    out = sweep.run_sweep(SMOKE, workdir, overrides=SHRINK, log=log)
    return workdir, out, log


def _comparable(row):
    return {k: v for k, v in row.items()
            if k not in train_lib.TIMING_KEYS and not k.endswith("_time")}


def _compare(a, b, *, rtol):
    """Asserts equal keys and values within `rtol`; returns the largest relative difference."""
    a, b = _comparable(a), _comparable(b)
    assert a.keys() == b.keys()
    worst = 0.0
    for key in a:
        x, y = np.asarray(a[key], np.float64), np.asarray(b[key], np.float64)
        np.testing.assert_allclose(x, y, rtol=rtol, atol=0, err_msg=key)
        if x.size:
            worst = max(worst, float(np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-30))))
    return worst


def _files(root):
    return {p: p.stat().st_mtime_ns for p in sorted(pathlib.Path(root).rglob("*")) if p.is_file()}


# -- definitions and plans ---------------------------------------------------------------


def test_product_is_every_combination_with_short_names():
    runs = sweep.product(latent_dim=[2, 5, 10, 20, 50], beta=[0.25, 0.5, 1, 2, 4], seed=[0, 1, 2])
    assert len(runs) == 75
    assert runs[0] == {"model.latent_dim": 2, "objective.beta": 0.25, "seed": 0}
    # The last axis varies fastest.
    assert runs[1] == {"model.latent_dim": 2, "objective.beta": 0.25, "seed": 1}
    assert runs[-1] == {"model.latent_dim": 50, "objective.beta": 4, "seed": 2}
    assert len({json.dumps(r, sort_keys=True) for r in runs}) == 75


def test_zip_and_nested_product():
    assert sweep.zip_(beta=[1, 2], lr=[1e-3, 3e-4]) == [
        {"objective.beta": 1, "optimizer.learning_rate": 1e-3},
        {"objective.beta": 2, "optimizer.learning_rate": 3e-4}]
    runs = sweep.product(sweep.zip_(beta=[1, 2], learning_rate=[1e-3, 3e-4]), seed=[0, 1])
    assert [(r["objective.beta"], r["seed"]) for r in runs] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert sweep.product(**{"model.hidden_sizes": [(32,), (64, 32)]}) == [
        {"model.hidden_sizes": (32,)}, {"model.hidden_sizes": (64, 32)}]
    with pytest.raises(ValueError, match="equal length"):
        sweep.zip_(beta=[1, 2], seed=[0])
    with pytest.raises(config_lib.ConfigError, match="two axes"):
        sweep.product(sweep.zip_(seed=[0]), seed=[1])


def test_run_names_are_stable_and_filesystem_safe():
    assert sweep.run_name({"model.latent_dim": 2, "objective.beta": 0.5, "seed": 0}) == \
        "latent_dim=2,beta=0.5,seed=0"
    assert sweep.run_name({"optimizer.learning_rate": 1e-4, "model.hidden_sizes": (64, 32)}) == \
        "lr=0.0001,hidden_sizes=64x32"
    assert sweep.run_name({"data.name": "idx:/a b/c"}) == "name=idx__a_b_c"
    assert sweep.run_name({}) == "base"
    # Keys that share a last component keep their dotted names.
    names = sweep.short_names(["objective.warmup_steps", "optimizer.warmup_steps"])
    assert names == {"objective.warmup_steps": "objective.warmup_steps",
                     "optimizer.warmup_steps": "optimizer.warmup_steps"}
    long = sweep.run_name({"data.data_dir": "x" * 400})
    assert len(long) <= 150 and long != sweep.run_name({"data.data_dir": "x" * 399})


def test_plan_groups_runs_that_differ_only_in_hyper_fields():
    plan = sweep.make_plan(SMOKE, overrides=SHRINK)
    assert [r.name for r in plan.runs[:4]] == GROUP_2
    assert [(g.id, len(g.runs)) for g in plan.groups] == [("latent_dim=2", 4), ("latent_dim=4", 4)]
    assert plan.runs[0].config.data.num_train == 512 and plan.runs[0].config.objective.beta == 0.5
    split = sweep.make_plan(SMOKE, max_group_size=3)
    assert [(g.id, len(g.runs)) for g in split.groups] == [
        ("latent_dim=2,part=1of2", 2), ("latent_dim=2,part=2of2", 2),
        ("latent_dim=4,part=1of2", 2), ("latent_dim=4,part=2of2", 2)]
    shards = [sweep.shard_groups(split.groups, f"{i}/3") for i in range(3)]
    assert sorted(g.id for s in shards for g in s) == sorted(g.id for g in split.groups)
    assert [g.id for g in shards[1]] == ["latent_dim=2,part=2of2"]
    with pytest.raises(config_lib.ConfigError, match="0 <= i < n"):
        sweep.parse_shard("3/3")


def test_memory_estimate_follows_its_formula():
    config = config_lib.load_config(SMOKE, ["model.latent_dim=4"])
    est = sweep.memory_estimate(config, (28, 28, 1), 16)
    d, h, z = 784, 64, 4
    params = (d * h + h) + (h * 2 * z + 2 * z) + (z * h + h) + (h * d + d)  # 784-64-(2x4), 4-64-784
    assert est["params_per_member"] == params
    assert est["params_bytes"] == 4 * 3 * params * 16
    widths = d + (h + 2 * z) + (h + d)  # input, encoder layers, decoder layers
    assert est["activations_bytes"] == 4 * 100 * widths * 16 * sweep.ACTIVATION_FACTOR


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    log = Log()
    out = sweep.run_sweep(SMOKE, tmp_path / "sweep", dry_run=True, shard="1/2", log=log)
    text = "\n".join(log)
    assert "8 runs in 2 groups" in text and "shard 1/2: 1 groups, 4 runs" in text
    assert "latent_dim=4,beta=2,seed=1" in text and "latent_dim=2,beta=2,seed=1" not in text
    assert "params+adam MB" in text and "4 B x 3 (params, Adam mu, nu)" in text
    assert [g.id for g in out["groups"]] == ["latent_dim=4"]
    assert not (tmp_path / "sweep").exists()


def test_initialize_distributed_only_in_a_cluster(monkeypatch):
    calls = []
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append(1))
    assert not sweep.initialize_distributed({})
    assert not sweep.initialize_distributed({"SLURM_NTASKS": "1", "SLURM_STEP_NODELIST": "n1"})
    assert calls == []
    assert sweep.initialize_distributed({"SLURM_NTASKS": "4", "SLURM_STEP_NODELIST": "n[1-2]"})
    assert sweep.initialize_distributed({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"})
    assert len(calls) == 2


# -- end to end --------------------------------------------------------------------------


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
    for name in sweep.FIGURES:
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
    program = train_lib.TrainProgram.build(config, (28, 28, 1), 512)
    params, epoch = train_lib.restore_params(run_dir, program, train_lib.Hyper.from_config(config))
    group_manager = checkpoints.Manager(workdir / "groups" / "latent_dim=2")
    like = jax.eval_shape(jax.vmap(program.init_state), jax.tree.map(
        lambda *x: np.stack(x), *[train_lib.Hyper.from_config(config)] * 4))
    stacked = group_manager.restore(2, like)
    group_manager.close()
    assert epoch == 2
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b[3]), params, stacked.params)

    # sweep-report rebuilds the tables from the run workdirs.
    (workdir / "results.csv").unlink()
    assert cli.main(["sweep-report", str(workdir)]) == 0
    rebuilt = list(csvreader(workdir / "results.csv"))
    assert [r["test/nll"] for r in rebuilt] == [r["test/nll"] for r in rows]


def csvreader(path):
    import csv  # noqa: PLC0415

    with open(path, newline="") as f:
        yield from csv.DictReader(f)


@pytest.mark.slow
def test_vmapped_group_equals_separate_runs(smoke, tmp_path, capsys):
    """The 4 members of group latent_dim=2 (2 KL weights x 2 seeds) against `train.train`."""
    workdir, out, _ = smoke
    runs = {r.name: r for r in out["plan"].runs}
    worst, exact = 0.0, True
    for i, name in enumerate(GROUP_2):
        alone = tmp_path / name
        train_lib.train(runs[name].config, alone, evaluate_at_end=(i == 3), log=lambda *a: None)
        ours, theirs = records.read_metrics(workdir / "runs" / name), records.read_metrics(alone)
        assert len(ours) == len(theirs) == 2
        for a, b in zip(ours, theirs):
            worst = max(worst, _compare(a, b, rtol=RTOL))
            exact &= _comparable(a) == _comparable(b)
    results = records.read_json(workdir / "runs" / GROUP_2[3] / "results.json")
    alone = records.read_json(tmp_path / GROUP_2[3] / "results.json")
    worst = max(worst, _compare(results, alone, rtol=RTOL))
    with capsys.disabled():
        print(f"\nvmapped group vs separate train.train runs on {jax.default_backend()}: "
              f"{'bitwise equal' if exact else f'largest relative difference {worst:.2e}'}")


@pytest.mark.slow
def test_rerun_recomputes_nothing(smoke):
    workdir, _, _ = smoke
    before = _files(workdir / "runs")
    log = Log()
    out = sweep.run_sweep(SMOKE, workdir, overrides=SHRINK, log=log)
    assert out["trained"] == [] and len(out["skipped"]) == 8
    assert not any("epoch" in line and "members" in line for line in log)
    assert sum("skipped" in line for line in log) == 2
    assert _files(workdir / "runs") == before


@pytest.mark.slow
def test_interrupted_shard_resumes_and_shards_merge(smoke, tmp_path):
    """Shard 0/2 is killed after epoch 1, resumes from its group checkpoint, and with shard
    1/2 gives exactly the unsharded sweep."""
    reference, _, _ = smoke
    workdir = tmp_path / "sweep"

    def killed_after_epoch_1(*args):
        if "epoch 1/2" in " ".join(map(str, args)):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(SMOKE, workdir, overrides=SHRINK, shard="0/2", log=killed_after_epoch_1)
    assert checkpoints.Manager(workdir / "groups" / "latent_dim=2").epochs() == [1]
    assert not list(workdir.glob("runs/*/results.json"))

    log = Log()
    out = sweep.run_sweep(SMOKE, workdir, overrides=SHRINK, shard="0/2", log=log)
    assert any("resumed from the group checkpoint of epoch 1" in line for line in log)
    assert not any("epoch 1/2" in line for line in log)
    assert sorted(out["trained"]) == sorted(GROUP_2)
    assert sorted(p.name for p in (workdir / "runs").iterdir()) == sorted(GROUP_2)  # its own runs
    assert sum(r["status"] == "pending" for r in csvreader(workdir / "results.csv")) == 4

    sweep.run_sweep(SMOKE, workdir, overrides=SHRINK, shard="1/2", log=Log())
    for name in (r["name"] for r in csvreader(reference / "results.csv")):
        ours = [_comparable(r) for r in records.read_metrics(workdir / "runs" / name)]
        assert ours == [_comparable(r) for r in records.read_metrics(reference / "runs" / name)]
        assert _comparable(records.read_json(workdir / "runs" / name / "results.json")) == \
            _comparable(records.read_json(reference / "runs" / name / "results.json"))
    def drop_wall_time(path):
        return [{k: v for k, v in r.items() if k != "wall_time"} for r in csvreader(path)]

    assert drop_wall_time(workdir / "results.csv") == drop_wall_time(reference / "results.csv")


@pytest.mark.slow
def test_a_diverging_member_does_not_stop_its_group(smoke, tmp_path):
    """lr is vmapped: a member with lr=1e6 diverges; the others finish, equal to the sweep's."""
    reference, _, _ = smoke
    sweep_file = tmp_path / "diverge.py"
    sweep_file.write_text(
        "from vaejax.config import load_module\nfrom vaejax.sweep import product, zip_\n"
        f"smoke = load_module({str(SMOKE)!r})\nget_config = smoke.get_config\n"
        "def get_sweep():\n"
        "    return product(latent_dim=[2], beta=[0.5], seed=[0]) + product(\n"
        "        latent_dim=[2], beta=[0.5], seed=[1], lr=[1e6]) + product(\n"
        "        latent_dim=[2], beta=[2], seed=[0, 1])\n")
    log = Log()
    out = sweep.run_sweep(sweep_file, tmp_path / "sweep", overrides=SHRINK, log=log)
    assert [len(g.runs) for g in out["groups"]] == [4]
    bad = tmp_path / "sweep" / "runs" / "latent_dim=2,beta=0.5,seed=1,lr=1e+06"
    assert (bad / "diverged.json").exists() and not (bad / "results.json").exists()
    assert any("diverged" in line for line in log)
    for name in (GROUP_2[0], GROUP_2[2], GROUP_2[3]):
        ours = records.read_json(tmp_path / "sweep" / "runs" / name / "results.json")
        theirs = records.read_json(reference / "runs" / name / "results.json")
        assert _comparable(ours) == _comparable(theirs)
    statuses = {r["name"]: r["status"] for r in csvreader(tmp_path / "sweep" / "results.csv")}
    assert statuses[bad.name] == "diverged"
    # Diverged counts as finished: a rerun trains nothing.
    again = sweep.run_sweep(sweep_file, tmp_path / "sweep", overrides=SHRINK, log=Log())
    assert again["trained"] == []


@pytest.mark.slow
def test_eight_cpu_devices_match_one_device(smoke, tmp_path):
    """Shard 0/2 (group latent_dim=2, 4 members) on 8 forced host devices: a mesh of 4.
    (No IWAE here: one compile less; the ELBO metrics cover the evaluation.)"""
    reference, _, _ = smoke
    workdir = tmp_path / "sweep"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    code = (
        "import sys, jax\n"
        "assert len(jax.devices()) == 8\n"
        "from vaejax import sweep\n"
        f"sweep.run_sweep({str(SMOKE)!r}, {str(workdir)!r}, overrides={SHRINK + NO_IWAE!r}, "
        "shard='0/2')\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 members sharded over 4 devices" in proc.stdout
    for name in GROUP_2:
        ours = records.read_metrics(workdir / "runs" / name)
        theirs = records.read_metrics(reference / "runs" / name)
        assert len(ours) == 2
        for a, b in zip(ours, theirs):
            _compare(a, b, rtol=RTOL)
        ours = records.read_json(workdir / "runs" / name / "results.json")
        theirs = records.read_json(reference / "runs" / name / "results.json")
        _compare(ours, {k: v for k, v in theirs.items() if k in ours}, rtol=RTOL)
