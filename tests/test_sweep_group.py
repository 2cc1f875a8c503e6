"""Sweeps: a vmapped group equals separate runs, resume, shards, divergence, devices.

The end-to-end tests shrink experiments/smoke_sweep.py (512 training images, 2 epochs, IWAE
K=10 on 200 test images) and share one trained sweep (`smoke`). The session's persistent compilation cache
(tests/conftest.py) makes the programs that several tests compile again cost one compile.
"""

import os
import pathlib
import subprocess
import sys

import math

import jax
import numpy as np
import pytest
from PIL import Image

import vaejax
from vaejax import checkpoints, cli, loop, records
from vaejax.program import Program
from vaejax.sweep.results import FIGURES
from vaejax import train as train_lib
from vaejax.sweep import group as group_lib

# `make test` (--dist loadgroup) runs this module on one worker: its module fixture is built once.
pytestmark = pytest.mark.xdist_group("sweep_group")

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE = REPO / "experiments" / "smoke_sweep.py"
SHRINK = ("data.num_train=512", "data.num_validation=500", "eval.iwae_samples=10",
          "eval.iwae_chunk=10", "eval.num_test_examples=200")
GROUP_2 = ["latent_dim=2,beta=0.5,seed=0", "latent_dim=2,beta=0.5,seed=1",
           "latent_dim=2,beta=2,seed=0", "latent_dim=2,beta=2,seed=1"]
NO_IWAE = ("eval.iwae_samples=0",)
RTOL = 1e-5


class Log(list):
    def __call__(self, *args):
        self.append(" ".join(str(a) for a in args))


_SMOKE = {}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, fashion_mnist_dir):
    """The trained smoke sweep, once per session although two test modules use it."""
    if "smoke" not in _SMOKE:
        workdir = tmp_path_factory.mktemp("smoke")
        log = Log()
        out = group_lib.run_sweep(SMOKE, workdir, overrides=SHRINK, log=log)
        _SMOKE["smoke"] = workdir, out, log
    return _SMOKE["smoke"]


def _comparable(row):
    return {k: v for k, v in row.items()
            if k not in loop.TIMING_KEYS and not k.endswith("_time")}


def _compare(a, b, *, rtol):
    """Asserts equal keys and values within `rtol`; returns the largest relative difference."""
    a, b = _comparable(a), _comparable(b)
    assert a.keys() == b.keys()
    worst = 0.0
    for key in a:
        if isinstance(a[key], (dict, str)):  # the evaluation's settings: equal, not close
            assert a[key] == b[key], key
            continue
        x, y = np.asarray(a[key], np.float64), np.asarray(b[key], np.float64)
        np.testing.assert_allclose(x, y, rtol=rtol, atol=0, err_msg=key)
        if x.size:
            worst = max(worst, float(np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-30))))
    return worst


def _files(root):
    return {p: p.stat().st_mtime_ns for p in sorted(pathlib.Path(root).rglob("*")) if p.is_file()}


def csvreader(path):
    import csv  # noqa: PLC0415

    with open(path, newline="") as f:
        yield from csv.DictReader(f)


# -- several hosts -----------------------------------------------------------------------


# (Joining a multi-process job: tests/test_multiprocess.py.)


# -- end to end --------------------------------------------------------------------------


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
    out = group_lib.run_sweep(SMOKE, workdir, overrides=SHRINK, log=log)
    assert out["trained"] == [] and len(out["skipped"]) == 8
    assert not any("epoch" in line and "members" in line for line in log)
    assert sum("skipped" in line for line in log) == 2
    assert _files(workdir / "runs") == before


def test_finished_runs_of_another_config_are_kept_and_what_differs_is_named(smoke):
    """A setting that changes no number of a finished run (progress_every) goes unsaid; one
    that does (epochs) is named, and the runs are kept."""
    from vaejax.sweep.plan import make_plan

    workdir = smoke[0]
    for extra, said in (("train.progress_every=7", False), ("train.epochs=3", True)):
        log = Log()
        plan = make_plan(SMOKE, overrides=SHRINK + (extra,))
        group_lib._check_runs(plan.groups, workdir, log)
        assert any("8 finished runs" in line and "train.epochs" in line for line in log) == said
        assert not any("progress_every" in line for line in log)


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
        group_lib.run_sweep(SMOKE, workdir, overrides=SHRINK, shard="0/2",
                            log=killed_after_epoch_1)
    assert checkpoints.Manager(workdir / "groups" / "latent_dim=2").epochs() == [1]
    assert not list(workdir.glob("runs/*/results.json"))
    # as if an older vaejax had named the group differently: its dir is adopted, not restarted
    (workdir / "groups" / "latent_dim=2").rename(workdir / "groups" / "latent_dim=2,gamma=1")

    log = Log()
    out = group_lib.run_sweep(SMOKE, workdir, overrides=SHRINK, shard="0/2", log=log)
    assert any("was named latent_dim=2,gamma=1" in line for line in log)
    assert not (workdir / "groups" / "latent_dim=2,gamma=1").exists()
    assert any("resumed from the checkpoint of epoch 1" in line for line in log)
    assert not any("epoch 1/2" in line for line in log)
    assert sorted(out["trained"]) == sorted(GROUP_2)
    assert sorted(p.name for p in (workdir / "runs").iterdir()) == sorted(GROUP_2)  # its own runs
    assert sum(r["status"] == "pending" for r in csvreader(workdir / "results.csv")) == 4

    group_lib.run_sweep(SMOKE, workdir, overrides=SHRINK, shard="1/2", log=Log())
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
    out = group_lib.run_sweep(sweep_file, tmp_path / "sweep", overrides=SHRINK, log=log)
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
    # the diverged member's last good state is only in the group's checkpoints: all kept
    assert checkpoints.Manager(tmp_path / "sweep" / "groups" / "latent_dim=2").epochs() == [1, 2]
    # Diverged counts as finished: a rerun trains nothing.
    again = group_lib.run_sweep(sweep_file, tmp_path / "sweep", overrides=SHRINK, log=Log())
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
        assert ours.pop("eval_settings")["iwae_samples"] == 0  # evaluated without IWAE, here only
        _compare(ours, {k: v for k, v in theirs.items() if k in ours}, rtol=RTOL)


@pytest.mark.slow
def test_smoke_sweep_end_to_end(smoke):
    """The trained smoke sweep: tables, figures, group checkpoints sliced per run, sweep-report."""
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
    # all members finished: the group kept only its last checkpoint, of which each run's is a slice
    assert group_manager.epochs() == [2]
    assert any("latent_dim=2: all 4 runs finished; its checkpoints of epochs 1 deleted" in line
               for line in log)
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
