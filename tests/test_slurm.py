"""`vaejax sweep --submit slurm` and `srun vaejax train` against a real one-node Slurm.

The module's `cluster` fixture runs scripts/slurm/cluster.sh start (which installs slurm-wlm
and munge with apt-get when they are missing: root and a Debian mirror needed) and stop at the
end; a cluster that was already running is used and left running. A cluster that cannot start
fails the tests with the daemons' logs, unless VAEJAX_SKIP_SLURM=1 (then they are skipped).
`make slurm-test` runs this file alone.
"""

import csv
import json
import os
import pathlib
import re
import subprocess
import sys
import time

import pytest
from run_helpers import REPO, comparable, small_config, small_flags

from vaejax import records, train
from vaejax.sweep import run_sweep

# One xdist worker runs this module: one Slurm cluster, started once.
pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.xdist_group("slurm")]

SCRIPT = REPO / "scripts" / "slurm" / "cluster.sh"
VAEJAX = [str(pathlib.Path(sys.executable).parent / "vaejax")]  # the venv's entry point
SMOKE = REPO / "experiments" / "smoke_sweep.py"
TIMEOUT = 900  # seconds for a job to finish; the smoke array takes about a minute


@pytest.fixture(scope="module")
def cluster():
    """SLURM_CONF of a running one-node cluster."""
    if os.environ.get("VAEJAX_SKIP_SLURM") == "1":
        pytest.skip("VAEJAX_SKIP_SLURM=1: Slurm tests skipped")
    state = pathlib.Path(os.environ.get("VAEJAX_SLURM_DIR", "/tmp/vaejax-slurm"))
    env = dict(os.environ, VAEJAX_SLURM_DIR=str(state))
    running = subprocess.run([SCRIPT, "status"], env=env, capture_output=True).returncode == 0
    if not running:
        start = subprocess.run([SCRIPT, "start"], env=env, capture_output=True, text=True,
                               timeout=1200)
        if start.returncode:
            pytest.fail(f"scripts/slurm/cluster.sh start failed (rc {start.returncode}; set "
                        f"VAEJAX_SKIP_SLURM=1 to skip the Slurm tests):\n{start.stdout}"
                        f"\n{start.stderr}", pytrace=False)
    yield str(state / "slurm.conf")
    if not running:
        subprocess.run([SCRIPT, "stop"], env=env, capture_output=True, timeout=120)


def _env(slurm_conf) -> dict:
    return dict(os.environ, SLURM_CONF=slurm_conf)


def _vaejax(args, env, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(VAEJAX + [str(a) for a in args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def _logs(sweep_dir) -> str:
    return "\n".join(f"--- {p}\n{p.read_text()[-3000:]}"
                     for p in sorted((pathlib.Path(sweep_dir) / "slurm").glob("*_log.*")))


def _wait(job_id: str, env, *, why="") -> list[str]:
    """Polls squeue until job `job_id` (all its array tasks) has left the queue; returns the
    final state of each task (scontrol show job)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        queued = subprocess.run(["squeue", "-h", "-j", job_id], env=env, capture_output=True,
                                text=True)
        if queued.returncode == 0 and not queued.stdout.strip():
            break
        if queued.returncode and "Invalid job id" in queued.stderr:
            break
        time.sleep(2)
    else:
        subprocess.run(["scancel", job_id], env=env)
        pytest.fail(f"Slurm job {job_id} not done after {TIMEOUT} s\n{why}")
    shown = subprocess.run(["scontrol", "-o", "show", "job", job_id], env=env,
                           capture_output=True, text=True, check=True).stdout
    return re.findall(r"JobState=(\S+)", shown)


def _hold_the_node(env) -> str:
    """Submits a job that takes every CPU of the one node and waits until it runs; returns its
    id (scancel it to free the node). Jobs submitted meanwhile stay queued."""
    blocker = subprocess.run(["sbatch", "--parsable", "--exclusive", "--time=10",
                              "--output=/dev/null", "--wrap", "sleep 600"],
                             env=env, capture_output=True, text=True, check=True)
    job_id = blocker.stdout.strip().split(";")[0]
    deadline = time.monotonic() + 60
    while _state(job_id, env) != "RUNNING":
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job_id], env=env)
            pytest.fail(f"the node-holding job {job_id} did not start in 60 s")
        time.sleep(0.5)
    return job_id


def _state(job_id, env) -> str:
    return subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], env=env,
                          capture_output=True, text=True).stdout.strip()


def _submit(sweep_dir, flags, env) -> tuple[str | None, str]:
    proc = _vaejax(["sweep", SMOKE, "--workdir", sweep_dir, "--submit", "slurm",
                    "--slurm-time=30", "--slurm-cpus-per-task=1", *flags], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    match = re.search(r"as Slurm job (\d+)", proc.stdout)
    return (match[1] if match else None), proc.stdout


def _table(sweep_dir) -> list[dict]:
    """results.csv without its timing column."""
    with open(pathlib.Path(sweep_dir) / "results.csv") as f:
        return [{k: v for k, v in row.items() if k != "wall_time"} for row in csv.DictReader(f)]


def _smoke_overrides(mnist_dir) -> list[str]:
    """The smoke sweep shrunk further: 512 real MNIST images, 1 epoch, IWAE K=10."""
    return ["--config.data.name=mnist", f"--config.data.data_dir={mnist_dir}",
            "--config.data.num_train=512", "--config.data.num_validation=10000",
            "--config.train.epochs=1", "--config.train.batch_size=64",
            "--config.eval.iwae_samples=10", "--config.eval.iwae_chunk=10",
            "--config.eval.num_test_examples=100"]


def test_sweep_array_report_equals_a_local_run_and_a_resubmission_finishes_it(
        cluster, tmp_path, mnist_dir):
    env = _env(cluster)
    flags = _smoke_overrides(mnist_dir)
    sweep_dir = tmp_path / "slurm"
    start = time.monotonic()
    job_id, out = _submit(sweep_dir, flags, env)
    assert job_id is not None, out
    assert time.monotonic() - start < 120, "submission should return, not wait for the job"
    assert "shard 0/2: log" in out and "shard 1/2: log" in out, out
    [job] = [json.loads(line) for line in (sweep_dir / "slurm" / "jobs.jsonl").open()]
    assert job["job_id"] == job_id and job["shards"] == ["0/2", "1/2"]

    # The same sweep in this process, while the array runs.
    run_sweep(SMOKE, tmp_path / "local", overrides=flags, log=lambda *_: None)
    states = _wait(job_id, env, why=_logs(sweep_dir))
    assert sorted(states) == ["COMPLETED", "COMPLETED"], _logs(sweep_dir)

    report = _vaejax(["sweep-report", sweep_dir], env)
    assert report.returncode == 0, report.stderr
    assert "8 of 8 runs finished" in report.stdout
    local = _table(tmp_path / "local")
    assert len(local) == 8 and {r["status"] for r in local} == {"finished"}
    assert _table(sweep_dir) == local  # every number, as written, equal

    # Again: nothing left to do, nothing submitted.
    job_id, out = _submit(sweep_dir, flags, env)
    assert job_id is None and "nothing submitted" in out, out

    # One run unfinished again: only its group is submitted; a second submission while that
    # one is queued or running is refused; the report ends equal again.
    (sweep_dir / "runs" / "latent_dim=4,beta=2,seed=1" / records.RESULTS).unlink()
    # Submitted behind a job that holds the whole node, so that it is still queued when the
    # second submission comes: with its programs in the compilation cache it can finish in
    # seconds. (sbatch of Slurm 22.05 ignores SBATCH_HOLD, and a hold after submitting races.)
    blocker = _hold_the_node(env)
    job_id, out = _submit(sweep_dir, flags, env)
    assert job_id is not None and "1 of 2 groups (4 of 8 runs)" in out and "shard 1/2" in out, out
    refused = _vaejax(["sweep", SMOKE, "--workdir", sweep_dir, "--submit", "slurm", *flags], env)
    subprocess.run(["scancel", blocker], env=env, check=True, capture_output=True)
    assert refused.returncode == 2 and f"Slurm job(s) {job_id} still queued or running" in (
        refused.stderr), refused.stderr
    assert _wait(job_id, env, why=_logs(sweep_dir)) == ["COMPLETED"], _logs(sweep_dir)
    assert "3 runs already finished (kept)" in _logs(sweep_dir)
    assert _vaejax(["sweep-report", sweep_dir], env).returncode == 0
    assert _table(sweep_dir) == local


def test_srun_two_process_train_equals_one_process(cluster, tmp_path, mnist_dir):
    """`srun -n 2 vaejax train`: two processes under Slurm's own variables (SLURM_PROCID,
    SLURM_NTASKS, SLURM_STEP_NODELIST, ...), one run; its numbers equal one process's."""
    overrides = {"train.epochs": 2, "eval.iwae_samples": 10}
    train.train(small_config(mnist_dir, **overrides), tmp_path / "one", log=lambda *_: None)
    command = ["srun", "-n", "2", "--cpus-per-task=1", "--time=30", "--kill-on-bad-exit=1",
               *VAEJAX, "train", *small_flags(mnist_dir, **overrides),
               "--workdir", str(tmp_path / "two")]
    proc = subprocess.run(command, env=_env(cluster), capture_output=True, text=True,
                          timeout=TIMEOUT, cwd=REPO)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    assert "sharded over 2 devices of 2 processes" in proc.stdout, proc.stdout[-3000:]
    one, two = (comparable(records.read_metrics(tmp_path / w, log=lambda *_: None))
                for w in ("one", "two"))
    assert len(one) == len(two) == 2
    for a, b in zip(one, two):
        assert b.keys() == a.keys()
        for key, value in a.items():
            assert b[key] == pytest.approx(value, rel=1e-4), key
    ra, rb = (json.loads((tmp_path / w / records.RESULTS).read_text()) for w in ("one", "two"))
    for key in ("test/neg_elbo", "test/nll", "test/rate", "test/distortion"):
        assert rb[key] == pytest.approx(ra[key], rel=1e-4), key


def test_submit_without_slurm_is_one_line_saying_how_to_start_it(tmp_path, mnist_dir):
    """No sbatch on PATH: one line naming scripts/slurm/cluster.sh, nothing written."""
    env = dict(os.environ, PATH=str(pathlib.Path(sys.executable).parent))
    proc = _vaejax(["sweep", SMOKE, "--workdir", tmp_path / "w", "--submit", "slurm",
                    *_smoke_overrides(mnist_dir)], env)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "scripts/slurm/cluster.sh start" in proc.stderr
    assert not (tmp_path / "w").exists()


def test_slurm_flags_become_sbatch_options():
    from vaejax.sweep.slurm import SlurmError, SlurmOptions

    options = SlurmOptions(partition="gpu", time=120, gpus_per_task=1, mem="16G",
                           array_parallelism=4, sbatch=("qos=high", "--exclusive"))
    assert options.parameters(job_name="j") == {
        "job_name": "j", "time": 120, "partition": "gpu", "gpus_per_task": 1, "mem": "16G",
        "additional_parameters": {"qos": "high", "exclusive": True}, "array_parallelism": 4,
        "signal_delay_s": 90, "wckey": None}
    assert SlurmOptions(time=2).parameters(job_name="j")["signal_delay_s"] == 30
    with pytest.raises(SlurmError, match="KEY=VALUE"):
        SlurmOptions(sbatch=("=x",)).parameters(job_name="j")
    with pytest.raises(SlurmError, match="--slurm-time"):
        SlurmOptions(time=0).parameters(job_name="j")
