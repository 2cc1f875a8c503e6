"""A sweep submitted to Slurm as ONE job array: one task per group, and return.

    vaejax sweep experiments/latent_kl_sweep.py --workdir sweeps/x --submit slurm \\
        --slurm-partition gpu --slurm-time 120 --slurm-gpus-per-task 1
    squeue --me                      # the array's tasks
    vaejax sweep-report sweeps/x     # merges what the tasks have finished so far

Task k of the array runs `run_sweep(..., shard=f"{i}/{n}")` with n = the plan's number of
groups, i.e. what `vaejax sweep ... --shard i/n` does: group i. Only groups with an
unfinished run are submitted, so the same command run again submits what is left (and a
task, like any sweep, skips finished runs and resumes its group from its checkpoints).

Submission goes through submitit (`pip install 'vaejax[slurm]'`): it writes the sbatch
script, pickles `ShardTask` per task and, when a task reaches its time limit or is
preempted, requeues it (`ShardTask.checkpoint`; up to 3 timeouts) so that it resumes from its
checkpoints. Everything lands in <workdir>/slurm/: the sbatch script, `<job>_<task>_0_log.out`
and `.err` per task, submitit's pickles, and jobs.jsonl (one line per submission: job id,
task -> shard). A submission is refused while a job of jobs.jsonl is still queued or running.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import time
from typing import Sequence

from vaejax import records
from vaejax.sweep.plan import SWEEP_RECORD, _finished, make_plan

SLURM_DIR = "slurm"         # <workdir>/slurm/: sbatch script, logs, submitit's pickles
JOBS_RECORD = "jobs.jsonl"  # <workdir>/slurm/jobs.jsonl: one line per submitted array
HOW_TO_START = ("on this machine, as root, scripts/slurm/cluster.sh start starts a one-node "
                "cluster (it installs slurm-wlm and munge with apt-get first) and prints the "
                "SLURM_CONF to export")


class SlurmError(RuntimeError):
    """Slurm or submitit is missing, unreachable, or refused the job."""


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
    """What each task of the array asks Slurm for (sbatch's options of the same names)."""
    partition: str | None = None
    time: int = 60                      # minutes; a task past it is requeued and resumes
    cpus_per_task: int | None = None
    gpus_per_task: int | None = None
    mem: str | None = None              # sbatch --mem, e.g. "16G"
    array_parallelism: int | None = None  # at most this many tasks at once (--array=...%p)
    sbatch: tuple[str, ...] = ()        # further sbatch options, "KEY=VALUE" or "KEY"

    def parameters(self, *, job_name: str) -> dict:
        """submitit.SlurmExecutor parameters."""
        extra = {}
        for option in self.sbatch:
            key, sep, value = option.lstrip("-").partition("=")
            if not key:
                raise SlurmError(f"--slurm-sbatch {option!r}: expected KEY=VALUE (qos=high) or KEY")
            extra[key] = value if sep else True
        if self.time < 1:
            raise SlurmError(f"--slurm-time must be >= 1 minute, got {self.time}")
        params = {"job_name": job_name, "time": self.time, "partition": self.partition,
                  "cpus_per_task": self.cpus_per_task, "gpus_per_task": self.gpus_per_task,
                  "mem": self.mem, "additional_parameters": extra or None,
                  # SIGUSR2 (requeue) this long before the limit: submitit's 90 s, less for
                  # short limits (Slurm may send it up to a minute early)
                  "signal_delay_s": min(90, 15 * self.time),
                  "wckey": None}  # submitit tags jobs with wckey "submitit" unless told not to
        if self.array_parallelism is not None:
            params["array_parallelism"] = self.array_parallelism
        return {k: v for k, v in params.items() if v is not None or k == "wckey"}


class ShardTask:
    """One array task: this sweep's shard "i/n" (group i), as `vaejax sweep --shard i/n`.

    Checkpointable in submitit's sense (it only looks for `checkpoint`): on a time limit or
    preemption submitit requeues the same task, which resumes from the group's checkpoints.
    """

    def __init__(self, sweep_file: str, workdir: str, overrides: Sequence[str],
                 max_group_size: int):
        self.sweep_file = sweep_file
        self.workdir = workdir
        self.overrides = list(overrides)
        self.max_group_size = max_group_size

    def __call__(self, shard: str) -> dict:
        from vaejax.sweep.group import run_sweep  # noqa: PLC0415

        out = run_sweep(self.sweep_file, self.workdir, overrides=self.overrides,
                        max_group_size=self.max_group_size, shard=shard)
        return {"shard": shard, "trained": out["trained"], "skipped": out["skipped"]}

    def checkpoint(self, *args, **kwargs):
        import submitit  # noqa: PLC0415

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def _run(command: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def check_slurm() -> None:
    """Raises SlurmError (one line: what is wrong, how to fix it) unless sbatch is installed,
    the controller answers and submitit imports."""
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise SlurmError(f"--submit slurm needs Slurm's sbatch and srun, which are not on PATH: "
                         f"run this on a Slurm cluster's login node, or {HOW_TO_START}.")
    conf = os.environ.get("SLURM_CONF")
    if conf and not pathlib.Path(conf).is_file():
        raise SlurmError(f"--submit slurm: SLURM_CONF={conf} does not exist; {HOW_TO_START}.")
    try:  # sinfo waits up to 60 s for a missing slurm.conf; a live controller answers at once
        probe = _run(["sinfo", "-h", "-o", "%P %a"], timeout=20)
        answer = probe.stderr.strip().splitlines() if probe.returncode else []
    except subprocess.TimeoutExpired:
        answer = ["sinfo did not answer within 20 s"]
    if answer:
        hint = f"check SLURM_CONF and that slurmctld runs, or {HOW_TO_START}"
        local = pathlib.Path(os.environ.get("VAEJAX_SLURM_DIR", "/tmp/vaejax-slurm")) / "slurm.conf"
        if not conf and local.is_file():
            hint = f"scripts/slurm/cluster.sh configured {local}: export SLURM_CONF={local}"
        raise SlurmError(f"--submit slurm: Slurm does not answer ({answer[-1]}); {hint}.")
    try:
        import submitit  # noqa: F401, PLC0415
    except ImportError:
        raise SlurmError("--submit slurm needs submitit: pip install 'vaejax[slurm]' "
                         "(make setup-dev installs it).") from None


def read_jobs(sweep_dir) -> list[dict]:
    """The submissions recorded in <workdir>/slurm/jobs.jsonl, oldest first."""
    path = pathlib.Path(sweep_dir) / SLURM_DIR / JOBS_RECORD
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def active_jobs(sweep_dir) -> list[str]:
    """Ids of this sweep's arrays that Slurm still lists (queued, running, requeued)."""
    ours = {str(job["job_id"]) for job in read_jobs(sweep_dir)}
    if not ours:
        return []
    listed = _run(["squeue", "-h", "-o", "%F"])  # array job ids of all queued/running jobs
    if listed.returncode:
        raise SlurmError(f"squeue failed: {listed.stderr.strip()}")
    return sorted(ours & set(listed.stdout.split()), key=int)


def submit(sweep_file, workdir, *, overrides: Sequence[str] = (), max_group_size: int = 16,
           options: SlurmOptions = SlurmOptions(), dry_run: bool = False, log=print) -> dict:
    """Submits the unfinished groups of `sweep_file` as one array; returns at once.

    Returns {"job_id": the array's id or None (nothing to do, or dry_run), "shards": the
    shard of each task, "logs": each task's stdout file}.
    """
    from vaejax.sweep.group import _check_runs  # noqa: PLC0415  (imports jax)

    plan = make_plan(sweep_file, overrides=overrides, max_group_size=max_group_size)
    sweep_dir = pathlib.Path(workdir).resolve()
    _check_runs(plan.groups, sweep_dir, log)
    n = len(plan.groups)
    todo = [i for i, group in enumerate(plan.groups)
            if not all(_finished(run.workdir(sweep_dir)) for run in group.runs)]
    shards = [f"{i}/{n}" for i in todo]
    if not todo:
        log(f"sweep: all {len(plan.runs)} runs of {sweep_dir} are finished; nothing submitted "
            f"(vaejax sweep-report {workdir} writes the report)")
        return {"job_id": None, "shards": [], "logs": []}
    name = f"vaejax-sweep:{sweep_dir.name}"
    params = options.parameters(job_name=name)
    summary = (f"{len(todo)} of {n} groups ({sum(len(plan.groups[i].runs) for i in todo)} of "
               f"{len(plan.runs)} runs)")
    if dry_run:
        log(f"sweep: would submit {summary} as one Slurm array, shards {', '.join(shards)}, "
            f"with {params}")
        return {"job_id": None, "shards": shards, "logs": []}
    check_slurm()
    _refuse_while_active(sweep_dir)
    task = ShardTask(str(pathlib.Path(sweep_file).resolve()), str(sweep_dir), overrides,
                     max_group_size)
    job_id, logs = _submit_array(plan, sweep_dir, params, task, shards)
    tasks = f"an array of {len(todo)} tasks" if len(todo) > 1 else "1 task"
    log(f"sweep: submitted {summary} as Slurm job {job_id} ({tasks})")
    for shard, path in zip(shards, logs):
        log(f"sweep:   shard {shard}: log {path}")
    log(f"sweep: follow it with `squeue -j {job_id}`; `vaejax sweep-report {workdir}` merges "
        f"what is finished; the same command again submits what is left")
    return {"job_id": job_id, "shards": shards, "logs": logs}


def _refuse_while_active(sweep_dir: pathlib.Path) -> None:
    """Raises `SlurmError` if a job submitted for `sweep_dir` is still queued or running."""
    active = active_jobs(sweep_dir)
    if active:
        raise SlurmError(
            f"{sweep_dir} has Slurm job(s) {', '.join(active)} still queued or running "
            f"(squeue -j {','.join(active)}); wait for them or scancel them, then submit again.")


def _submit_array(plan, sweep_dir: pathlib.Path, params: dict, task, shards: list[str]):
    """Writes the sweep's record, submits `task` over `shards` as one array with submitit's
    `params` and appends the submission to jobs.jsonl; returns (the array's job id, each
    task's stdout file)."""
    import submitit  # noqa: PLC0415
    from submitit.core.utils import FailedJobError  # noqa: PLC0415

    sweep_dir.mkdir(parents=True, exist_ok=True)
    records.write_json(sweep_dir / SWEEP_RECORD, plan.record())
    executor = submitit.SlurmExecutor(folder=sweep_dir / SLURM_DIR)
    executor.update_parameters(**params)
    try:
        jobs = executor.map_array(task, shards)
    except (FailedJobError, subprocess.CalledProcessError) as error:
        lines = [line for line in str(error).splitlines() if line.strip()]
        raise SlurmError(f"sbatch refused the array: {lines[-1] if lines else error}") from None
    job_id = str(jobs[0].job_id).split("_")[0]
    logs = [str(job.paths.stdout) for job in jobs]
    with open(sweep_dir / SLURM_DIR / JOBS_RECORD, "a") as f:
        f.write(json.dumps({"job_id": job_id, "submitted": time.strftime("%Y-%m-%dT%H:%M:%S"),
                            "shards": shards, "logs": logs, "parameters": params,
                            "command": shlex.join(sys.argv)}) + "\n")
    return job_id, logs


