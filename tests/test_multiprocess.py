"""Multi-process JAX for real: 2 and 4 `vaejax` processes on 127.0.0.1, joined by
jax.distributed (`vaejax.distributed`), one CPU device each.

`vaejax train` over 2 processes gives the one-process numbers; one of its processes is
killed, the other stops at once with one line, and the same command resumes. `vaejax sweep`
over 4 processes (one group each) gives the one-process sweep's table; one process is
killed, the others stop within the peer timeout, and the same command finishes what is
left. Missing or unjoinable settings are one line. Every wait has a timeout.
"""

import csv
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from run_helpers import REPO, comparable, final_params, small_config, small_flags
from vaejax import distributed, locking, records
from vaejax import train as train_lib
from vaejax.sweep import group as group_lib
from vaejax.sweep import plan as plan_lib

PEER_TIMEOUT = 10  # seconds (VAEJAX_PEER_TIMEOUT): how long a silent process is waited for
RTOL = 1e-4        # as for 8 devices of one process (test_train): reductions in another order
SMOKE = REPO / "experiments" / "smoke_sweep.py"


# -- where a process stands ---------------------------------------------------------------

SLURM = {"SLURM_JOB_ID": "77", "SLURM_STEP_NODELIST": "node[1-2]", "SLURM_NTASKS": "4",
         "SLURM_PROCID": "1", "SLURM_LOCALID": "1"}


def test_a_process_learns_its_place_from_the_jax_variables_or_slurm():
    assert distributed.place({}) is None
    three = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4",
             "JAX_PROCESS_ID": "3"}
    assert distributed.place(three) == {"coordinator_address": "10.0.0.1:1234",
                                        "num_processes": 4, "process_id": 3}
    assert distributed.place(three | {"JAX_NUM_PROCESSES": "1", "JAX_PROCESS_ID": "0"}) is None
    assert distributed.place(SLURM) == {}  # jax.distributed reads Slurm's variables itself
    assert distributed.place(SLURM | {"SLURM_NTASKS": "1"}) is None  # one task: one process
    assert distributed.place({"SLURM_NTASKS": "4"}) is None  # not a step jax can read
    # Under Slurm a JAX variable overrides what Slurm says; the rest comes from Slurm.
    assert distributed.place(SLURM | {"JAX_COORDINATOR_ADDRESS": "node1:7777"}) == {
        "coordinator_address": "node1:7777"}
    # Elsewhere (a Cloud TPU slice, Open MPI) jax.distributed detects it all, when asked to.
    assert distributed.place({"VAEJAX_DISTRIBUTED": "auto"}) == {}


@pytest.mark.parametrize("environ, named", [
    ({"JAX_COORDINATOR_ADDRESS": "h:1"}, "JAX_NUM_PROCESSES and JAX_PROCESS_ID are not"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2"}, "JAX_PROCESS_ID is not"),
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}, "JAX_COORDINATOR_ADDRESS is not"),
    ({"JAX_COORDINATOR_ADDRESS": "h", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"},
     "must be host:port"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"},
     "must be below JAX_NUM_PROCESSES=2"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"},
     "must be a whole number"),
    ({"VAEJAX_DISTRIBUTED": "yes"}, "the one value is 'auto'"),
])
def test_incomplete_or_malformed_variables_are_named(environ, named):
    with pytest.raises(distributed.DistributedSetupError, match=named) as error:
        distributed.place(environ)
    assert "\n" not in str(error.value)


def test_the_peer_timeout_is_seconds_at_least_one():
    assert distributed.peer_timeout({}) == distributed.DEFAULT_PEER_TIMEOUT
    assert distributed.peer_timeout({"VAEJAX_PEER_TIMEOUT": "15"}) == 15.0
    for bad in ("0.5", "-3", "soon", "nan"):
        with pytest.raises(distributed.DistributedSetupError, match="VAEJAX_PEER_TIMEOUT"):
            distributed.peer_timeout({"VAEJAX_PEER_TIMEOUT": bad})


def test_each_process_of_a_job_takes_its_share_of_a_shard():
    groups = [f"g{i}" for i in range(10)]
    shares = [plan_lib.shard_groups(groups, plan_lib.process_shard("0/1", p, 4)) for p in range(4)]
    assert sorted(sum(shares, [])) == sorted(groups) and shares[1] == ["g1", "g5", "g9"]
    # Two jobs of a SLURM array (--shard i/2), two processes each: disjoint, complete.
    shares = [plan_lib.shard_groups(groups, plan_lib.process_shard(f"{i}/2", p, 2))
              for i in range(2) for p in range(2)]
    assert sorted(sum(shares, [])) == sorted(groups)


# -- real processes -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Job:
    """`n` real `vaejax` processes of one job on 127.0.0.1 (outputs in files: no pipe fills)."""

    def __init__(self, n: int, args, logs: pathlib.Path, *, peer_timeout=PEER_TIMEOUT):
        logs.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.procs, self.outputs = [], []
        for index in range(n):
            env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                       JAX_NUM_PROCESSES=str(n), JAX_PROCESS_ID=str(index),
                       VAEJAX_PEER_TIMEOUT=str(peer_timeout), PYTHONUNBUFFERED="1")
            env.pop("XLA_FLAGS", None)  # one CPU device per process
            out, err = logs / f"{index}.out", logs / f"{index}.err"
            self.outputs.append((out, err))
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "vaejax.cli", *map(str, args)], cwd=REPO, env=env,
                stdout=out.open("w"), stderr=err.open("w")))

    def wait(self, timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        try:
            return [p.wait(timeout=max(0.1, deadline - time.monotonic())) for p in self.procs]
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the job did not end within {timeout} s:\n{self.text()}")

    def kill(self, index=None):
        for i, p in enumerate(self.procs):
            if index in (None, i) and p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait(timeout=30)

    def out(self, index: int) -> str:
        return self.outputs[index][0].read_text()

    def err(self, index: int) -> str:
        return self.outputs[index][1].read_text()

    def text(self) -> str:
        return "\n".join(f"--- process {i}\n{self.out(i)[-2000:]}\n{self.err(i)[-3000:]}"
                         for i in range(len(self.procs)))


def wait_for(condition, timeout: float, what: str, job: Job):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline or all(p.poll() is not None for p in job.procs):
            job.kill()
            pytest.fail(f"{what} did not happen within {timeout} s:\n{job.text()}")
        time.sleep(0.05)


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "error:" in line]


def test_only_the_coordinator_address_is_one_line_naming_what_is_missing(tmp_path, mnist_dir):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{free_port()}")
    proc = subprocess.run([sys.executable, "-m", "vaejax.cli", "train", *small_flags(mnist_dir),
                           "--workdir", tmp_path / "run"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    [line] = error_lines(proc.stderr)
    assert "JAX_NUM_PROCESSES and JAX_PROCESS_ID are not" in line, line
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_process_whose_job_never_gathers_stops_with_one_line(tmp_path, mnist_dir):
    """Process 1 of 2 started alone (no coordinator ever comes): one line after 5 x the peer
    timeout, not JAX's fatal report, and nothing written."""
    start = time.monotonic()
    job = Job(2, ["train", *small_flags(mnist_dir), "--workdir", tmp_path / "run"],
              tmp_path / "logs", peer_timeout=2)
    job.kill(0)  # the coordinator never serves
    job.procs[0].wait(timeout=30)
    assert job.procs[1].wait(timeout=120) == 2, job.text()
    [line] = error_lines(job.err(1))
    assert "could not join the job" in line and "within 10 s" in line, line
    assert time.monotonic() - start < 100
    assert not (tmp_path / "run").exists()


def _same_numbers(a, b, config, *, rtol):
    """Two workdirs hold the same run to float tolerance: metrics, results, final params."""
    ma, mb = comparable(records.read_metrics(a)), comparable(records.read_metrics(b))
    assert [r["epoch"] for r in ma] == [r["epoch"] for r in mb]
    for ra, rb in zip(ma, mb):
        assert ra.keys() == rb.keys()
        for key in ra:
            assert rb[key] == pytest.approx(ra[key], rel=rtol), (ra["epoch"], key)
    ra, rb = (records.read_json(pathlib.Path(w) / records.RESULTS) for w in (a, b))
    for key in ("test/neg_elbo", "test/nll", "test/rate", "test/distortion", "active_units"):
        assert rb[key] == pytest.approx(ra[key], rel=rtol), key
    pa, pb = final_params(a, config), final_params(b, config)
    for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
        np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=rtol, atol=1e-6)


@pytest.mark.slow
def test_two_processes_train_as_one_a_killed_one_stops_both_and_the_rerun_resumes(
        tmp_path, mnist_dir):
    """`vaejax train` in 2 processes sharing each batch: process 1 is killed after the first
    checkpoint; process 0 stops at once with one line; the same command (both processes)
    resumes and ends with the one-process run's metrics, results and parameters."""
    overrides = {"train.epochs": 4, "data.num_train": 2048, "data.num_validation": 1000}
    config = small_config(mnist_dir, **overrides)
    train_lib.train(config, tmp_path / "one", log=lambda *_: None)

    workdir = tmp_path / "two"
    command = ["train", *small_flags(mnist_dir, **overrides), "--workdir", workdir, "--resume"]
    job = Job(2, command, tmp_path / "logs-killed")
    wait_for(lambda: (workdir / "checkpoints" / "1").is_dir(), 300, "checkpoint 1", job)
    job.kill(1)
    killed = time.monotonic()
    assert job.procs[0].wait(timeout=60) == 2, job.text()
    assert time.monotonic() - killed < 30  # a collective with it fails at once
    [line] = error_lines(job.err(0))
    assert "another process of this 2-process job stopped" in line, line
    assert "Traceback" not in job.err(0)
    kept = [r["epoch"] for r in records.read_metrics(workdir)]
    assert kept and kept == list(range(1, len(kept) + 1))

    rerun = Job(2, command, tmp_path / "logs-rerun")
    assert rerun.wait(timeout=600) == [0, 0], rerun.text()
    assert "train: resumed from the checkpoint of epoch" in rerun.out(0), rerun.text()
    assert "sharded over 2 devices of 2 processes" in rerun.out(0)
    assert all(line.startswith("[Gloo]") for line in rerun.out(1).splitlines())  # no log
    _same_numbers(tmp_path / "one", workdir, config, rtol=RTOL)
    # Process 0 alone wrote the workdir and held its lock; the record names the 2 processes.
    assert locking.holder(workdir)["pid"] == rerun.procs[0].pid
    assert records.read_run_record(workdir)["process_count"] == 2
    assert not list(workdir.rglob("*orbax-checkpoint-tmp*"))


@pytest.mark.slow
def test_when_process_0_fails_the_others_stop_with_its_reason(tmp_path, mnist_dir):
    """The workdir is locked by someone else: process 0 (the only one that takes the lock)
    stops with the holder named, and process 1 with process 0's reason; one line each."""
    workdir = tmp_path / "run"
    workdir.mkdir()
    with locking.hold(workdir, "the test"):
        job = Job(2, ["train", *small_flags(mnist_dir), "--workdir", workdir, "--resume"],
                  tmp_path / "logs")
        assert job.wait(timeout=300) == [2, 2], job.text()
    [first] = error_lines(job.err(0))
    [second] = error_lines(job.err(1))
    assert "is in use by the test" in first, first
    # Process 0's reason, as its outcome (PrimaryFailedError) or its parting word (watchdog).
    assert "process 0 of" in second and "is in use by the test" in second, second
    assert [p.name for p in workdir.iterdir()] == [locking.LOCK_FILE]


def _rows(sweep_dir) -> dict[str, dict]:
    with open(pathlib.Path(sweep_dir) / "results.csv", newline="") as f:
        return {row["name"]: row for row in csv.DictReader(f)}


# The smoke sweep's config, shrunk to 4 runs of one shape: with --max-group-size 1, 4 groups,
# one per process, and one compiled program for all.
SHRUNK_SMOKE = """
from vaejax.config import load_module
from vaejax.sweep import product

def get_config():
    return load_module({smoke!r}).get_config()

def get_sweep():
    return product(beta=[0.5, 2], seed=[0, 1])
"""


@pytest.mark.slow
def test_four_processes_sweep_like_one_and_a_killed_one_stops_them_all(tmp_path, mnist_dir):
    """A shrunk smoke sweep (4 groups) over 4 processes, one group each; process 3 is killed
    after its group's checkpoint of epoch 2 and the others stop within the peer timeout; the
    same command finishes only what is left, and `vaejax sweep-report` gives the
    one-process sweep's table."""
    sweep_file = tmp_path / "shrunk_smoke.py"
    sweep_file.write_text(SHRUNK_SMOKE.format(smoke=str(SMOKE)))
    overrides = ["data.name=mnist", f"data.data_dir={mnist_dir}", "data.num_train=512",
                 "data.num_validation=200", "train.epochs=10", "train.checkpoint_every=2",
                 "train.progress_every=0",  # no host callback: the epoch can be cached
                 "eval.iwae_samples=10", "eval.iwae_chunk=10", "eval.num_test_examples=100"]
    group_lib.run_sweep(sweep_file, tmp_path / "one", overrides=overrides, max_group_size=1,
                        log=lambda *_: None)
    sweep_dir = tmp_path / "four"
    command = ["sweep", sweep_file, "--workdir", sweep_dir, "--max-group-size", "1",
               *(f"--config.{o}" for o in overrides)]
    plan = plan_lib.make_plan(sweep_file, overrides=overrides, max_group_size=1)
    assert len(plan.groups) == 4
    victim = plan.groups[3]  # process 3's one group

    job = Job(4, command, tmp_path / "logs-killed")
    first = victim.workdir(sweep_dir) / "checkpoints" / "2"
    wait_for(first.is_dir, 300, "process 3's first checkpoint", job)
    job.kill(3)
    killed = time.monotonic()
    codes = [p.wait(timeout=120) for p in job.procs[:3]]
    stopped = time.monotonic() - killed
    assert codes == [2, 2, 2], job.text()
    assert stopped < 4 * PEER_TIMEOUT, stopped
    for index in range(3):
        [line] = error_lines(job.err(index))
        assert ("process 3 of this 4-process job has given no sign of life" in line
                or "process 0 of this 4-process job stopped" in line), line
        assert "Traceback" not in job.err(index)
    finished = {r.name for g in plan.groups[:3] for r in g.runs
                if records.evaluated(r.workdir(sweep_dir))}
    before = {name: (sweep_dir / "runs" / name / records.RESULTS).read_bytes() for name in finished}
    victim_done = all(records.evaluated(r.workdir(sweep_dir)) for r in victim.runs)

    rerun = Job(4, command, tmp_path / "logs-rerun")
    assert rerun.wait(timeout=600) == [0, 0, 0, 0], rerun.text()
    if not victim_done:  # killed in training (or evaluation): resumed from its checkpoint
        assert "resumed from the checkpoint of epoch" in rerun.out(3), rerun.text()
    for name, text in before.items():  # nothing finished before the kill was redone
        assert (sweep_dir / "runs" / name / records.RESULTS).read_bytes() == text, name

    report = subprocess.run([sys.executable, "-m", "vaejax.cli", "sweep-report", sweep_dir],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    one, four = _rows(tmp_path / "one"), _rows(sweep_dir)
    assert one.keys() == four.keys() and len(one) == 4
    for name, row in one.items():
        assert four[name]["status"] == row["status"] == "finished"
        for key in ("test/neg_elbo", "test/nll", "test/rate", "test/distortion", "active_units"):
            assert float(four[name][key]) == pytest.approx(float(row[key]), rel=1e-5), (name, key)
    assert not list(sweep_dir.rglob("*orbax-checkpoint-tmp*"))
    sweep = json.loads((sweep_dir / "sweep.json").read_text())
    assert len(sweep["runs"]) == 4


def test_importing_vaejax_leaves_the_backend_to_distributed_initialize():
    """jax.distributed.initialize must run before anything initialises JAX's backend: no
    vaejax module (nor a dependency it imports, e.g. blackjax) may do it at import."""
    script = ("from jax._src import xla_bridge\n"
              "import vaejax, vaejax.cli, vaejax.train, vaejax.evaluate, vaejax.sweep.group\n"
              "import vaejax.ais, vaejax.disentanglement, vaejax.data.dsprites, vaejax.trackers\n"
              "assert not xla_bridge.backends_are_initialized(), 'initialised at import'\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
