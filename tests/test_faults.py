"""The fault-injection suite: what happens to runs on clusters, done to vaejax for real.

Real `vaejax` processes are killed with SIGKILL at seeded random moments and resumed; every
kind of file a workdir holds is damaged, one at a time; two writers race for one workdir and
for one sweep group; a small tmpfs is filled. After each fault the test checks that the
error is one clear line naming the file (or the holder, or the setting), that nothing
already written is lost, and that the resumed run equals an uninterrupted one bit for bit.
`FAULTS` counts the faults caused, by kind, for the reliability page (docs/guide/reliability.md).
"""

import collections
import json
import os
import pathlib
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from run_helpers import REPO, comparable, final_params, small_config, small_flags
from vaejax import checkpoints, cli, locking, records, reproduce
from vaejax import config as config_lib
from vaejax import train as train_lib

# `make test` (--dist loadgroup) runs this module on one worker: its module fixtures (the
# reference run, the fault suite's summary) are set up once.
pytestmark = pytest.mark.xdist_group("faults")

FAULTS = collections.Counter()  # kind -> faults caused (printed at the end of the module)


@pytest.fixture(scope="module", autouse=True)
def _report_fault_counts():
    """Prints the counts of the faults this module caused (docs/guide/reliability.md quotes them)."""
    yield
    print(f"\nfault suite: {sum(FAULTS.values())} faults caused, nothing lost:")
    for kind, count in sorted(FAULTS.items()):
        print(f"  {count:3d}  {kind}")


class Log(list):
    def __call__(self, *args):
        self.append(" ".join(str(a) for a in args))

    def text(self):
        return "\n".join(self)


def vaejax(*args, timeout=600) -> subprocess.CompletedProcess:
    """`vaejax ARGS` in a real process."""
    return subprocess.run([sys.executable, "-m", "vaejax.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vaejax.cli", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def same_run(a, b, config):
    """Two workdirs hold the same run: metrics, results and final params, bit for bit."""
    assert comparable(records.read_metrics(a)) == comparable(records.read_metrics(b))
    ra, rb = (pathlib.Path(w) / records.RESULTS for w in (a, b))
    if ra.exists() or rb.exists():
        drop = lambda r: {k: v for k, v in r.items() if not k.endswith("_time")}  # noqa: E731
        assert drop(records.read_json(ra)) == drop(records.read_json(rb))
    for x, y in zip(jax.tree.leaves(final_params(a, config)), jax.tree.leaves(final_params(b, config))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The CLI's error: exit code 2 (or 28 for a full disk) and one `error:` line, no traceback."""
    assert proc.returncode in (2, 28), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, mnist_dir):
    """One uninterrupted run of 4 epochs (checkpoints 2, 3, 4 kept), evaluated, with figures."""
    config = small_config(mnist_dir, **{"train.epochs": 4, "eval.figures": True})
    workdir = tmp_path_factory.mktemp("reference") / "run"
    train_lib.train(config, workdir, log=lambda *_: None)
    return workdir, config


def copy_run(reference, tmp_path, name="run") -> pathlib.Path:
    target = tmp_path / name
    shutil.copytree(reference[0], target)
    return target


# -- 1. kill -9 at random moments ---------------------------------------------------------

def test_kill9_at_seeded_random_moments_then_resume_equals_uninterrupted(tmp_path, mnist_dir,
                                                                        reference):
    """Three SIGKILLs, each at a moment drawn from a seeded generator (start-up, an epoch, a
    checkpoint save, the evaluation or the figures), then a resume to the end."""
    rng = random.Random(1400)
    flags = small_flags(mnist_dir, **{"train.epochs": 4, "eval.figures": True})
    workdir = tmp_path / "killed"
    killed = 0
    for _ in range(3):
        proc = start("train", *flags, "--workdir", str(workdir), "--resume")
        try:
            proc.wait(timeout=rng.uniform(3.0, 12.0))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed += 1
    FAULTS["kill -9 of a training process, then resume"] += killed
    done = vaejax("train", *flags, "--workdir", str(workdir), "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    same_run(reference[0], workdir, reference[1])
    assert sorted(p.name for p in (workdir / "figures").iterdir()) == sorted(
        records.read_json(workdir / records.RESULTS)["figures"])


def test_kill9_while_figures_are_drawn_then_resume_draws_them(tmp_path, mnist_dir, reference):
    """The process is killed (SIGKILL, by itself) in the middle of drawing the figures."""
    workdir = tmp_path / "run"
    script = (
        "import os, signal, sys\n"
        "from vaejax import plots, cli\n"
        "original = plots.reconstructions\n"
        "def dying(*a, **k):\n"
        "    original(*a, **k)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "plots.reconstructions = dying\n"
        "sys.exit(cli.main(sys.argv[1:]))\n")
    flags = small_flags(mnist_dir, **{"train.epochs": 4, "eval.figures": True})
    proc = subprocess.run([sys.executable, "-c", script, "train", *flags, "--workdir", str(workdir)],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == -signal.SIGKILL
    assert (workdir / "figures" / "reconstructions.png").exists()
    assert not (workdir / records.RESULTS).exists()  # completion is recorded last
    FAULTS["kill -9 while the figures are drawn"] += 1
    done = vaejax("train", *flags, "--workdir", str(workdir), "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    same_run(reference[0], workdir, reference[1])


def test_a_deleted_or_torn_figure_is_drawn_again_on_resume(tmp_path, reference):
    for damage in ("deleted", "torn"):
        workdir = copy_run(reference, tmp_path, damage)
        figure = workdir / "figures" / "latent_traversals.png"
        if damage == "deleted":
            figure.unlink()
        else:
            figure.write_bytes(figure.read_bytes()[:100])
        assert records.missing_figures(workdir) == ["latent_traversals.png"]
        done = vaejax("train", "--workdir", str(workdir), "--resume")
        assert done.returncode == 0, done.stderr[-3000:]
        assert "are missing" in done.stdout
        assert records.missing_figures(workdir) == []
        same_run(reference[0], workdir, reference[1])
        FAULTS[f"figure {damage}"] += 1


# -- 2. damaged checkpoints ---------------------------------------------------------------

def _damage_checkpoint(step_dir: pathlib.Path, how: str) -> None:
    files = [p for p in step_dir.rglob("*") if p.is_file()]
    if how == "truncated array data":
        data = max((p for p in files if p.parent.name == "d"), key=lambda p: p.stat().st_size)
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    elif how == "empty _METADATA":
        (step_dir / "default" / "_METADATA").write_text("")
    elif how == "empty manifest":
        (step_dir / "default" / "manifest.ocdbt").write_text("")
    elif how == "deleted array data":
        for p in files:
            if p.parent.name == "d":
                p.unlink()
    else:
        raise ValueError(how)


CHECKPOINT_DAMAGE = ("truncated array data", "empty _METADATA", "empty manifest",
                     "deleted array data")


@pytest.mark.parametrize("how", CHECKPOINT_DAMAGE)
def test_damaged_latest_checkpoint_falls_back_moves_it_aside_and_resume_is_exact(
        tmp_path, reference, how):
    workdir = copy_run(reference, tmp_path)
    _damage_checkpoint(workdir / "checkpoints" / "4", how)
    (workdir / records.RESULTS).unlink()  # so that resume trains and evaluates again
    before = sorted(str(p.relative_to(workdir / "checkpoints" / "4"))
                    for p in (workdir / "checkpoints" / "4").rglob("*"))
    done = vaejax("train", "--workdir", str(workdir), "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "the checkpoint of epoch 4 is damaged and was skipped" in done.stdout
    assert "resumed from the checkpoint of epoch 3" in done.stdout
    aside = list((workdir / checkpoints.DAMAGED).iterdir())
    assert len(aside) == 1 and aside[0].name.startswith("4-")  # kept, not deleted
    assert sorted(str(p.relative_to(aside[0])) for p in aside[0].rglob("*")) == before
    same_run(reference[0], workdir, reference[1])
    FAULTS[f"checkpoint: {how}"] += 1


@pytest.mark.parametrize("command", ["eval", "sample"])
def test_eval_and_sample_fall_back_past_a_damaged_checkpoint(tmp_path, reference, command):
    workdir = copy_run(reference, tmp_path)
    _damage_checkpoint(workdir / "checkpoints" / "4", "empty manifest")
    done = vaejax(command, "--workdir", str(workdir))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "the checkpoint of epoch 4 is damaged and was skipped" in done.stdout
    assert (workdir / checkpoints.DAMAGED).is_dir()
    FAULTS[f"checkpoint: damaged, then {command}"] += 1


def test_every_checkpoint_damaged_is_one_clear_error(tmp_path, reference):
    workdir = copy_run(reference, tmp_path)
    for epoch in (2, 3, 4):
        _damage_checkpoint(workdir / "checkpoints" / str(epoch), "empty manifest")
    line = one_error_line(vaejax("eval", "--workdir", str(workdir)))
    assert "No checkpoint that restores" in line
    assert len(list((workdir / checkpoints.DAMAGED).iterdir())) == 3
    FAULTS["checkpoint: all damaged"] += 1


# -- 3. damaged records -------------------------------------------------------------------

def test_torn_last_metrics_line_is_dropped_said_and_retrained(tmp_path, reference):
    workdir = copy_run(reference, tmp_path)
    for path in (workdir / "checkpoints" / "4", workdir / records.RESULTS):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    shutil.rmtree(workdir / "figures")
    metrics = workdir / records.METRICS
    text = metrics.read_text()
    metrics.write_text(text[: len(text) - 40])  # epoch 4's line cut in the middle
    done = vaejax("train", "--workdir", str(workdir), "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{metrics}:4: the last line is torn" in done.stdout
    same_run(reference[0], workdir, reference[1])
    FAULTS["metrics.jsonl: torn last line"] += 1


@pytest.mark.parametrize("damage", ["garbage line", "deleted line", "repeated line"])
def test_damaged_metrics_name_the_file_and_line(tmp_path, reference, damage):
    workdir = copy_run(reference, tmp_path)
    metrics = workdir / records.METRICS
    lines = metrics.read_text().splitlines(keepends=True)
    if damage == "garbage line":
        lines[1] = "{not json\n"
    elif damage == "deleted line":
        del lines[1]
    else:
        lines.insert(2, lines[0])
    metrics.write_text("".join(lines))
    kept = metrics.read_bytes()
    line = one_error_line(vaejax("train", "--workdir", str(workdir), "--resume"))
    assert f"{metrics}:2" in line or f"{metrics}:3" in line, line
    assert metrics.read_bytes() == kept  # never rewritten
    FAULTS[f"metrics.jsonl: {damage}"] += 1


def test_records_behind_the_checkpoint_are_a_clear_error(tmp_path, reference):
    workdir = copy_run(reference, tmp_path)
    (workdir / records.RESULTS).unlink()
    metrics = workdir / records.METRICS
    metrics.write_text("".join(metrics.read_text().splitlines(keepends=True)[:2]))
    line = one_error_line(vaejax("train", "--workdir", str(workdir), "--resume"))
    assert "records of epochs 3..4 are lost" in line
    FAULTS["metrics.jsonl: lines lost at the end"] += 1


def test_damaged_results_json_is_set_aside_and_evaluated_again(tmp_path, reference):
    workdir = copy_run(reference, tmp_path)
    (workdir / records.RESULTS).write_text('{"test/nll": 9')
    done = vaejax("train", "--workdir", str(workdir), "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(workdir.glob("results.json.damaged-*"))  # kept
    same_run(reference[0], workdir, reference[1])
    FAULTS["results.json: damaged"] += 1


@pytest.mark.parametrize("command", ["train", "eval", "sample"])
def test_damaged_run_json_is_one_line_naming_it(tmp_path, reference, command):
    workdir = copy_run(reference, tmp_path)
    (workdir / records.RUN_RECORD).write_text('{"config": {')
    args = [command, "--workdir", str(workdir)] + (["--resume"] if command == "train" else [])
    line = one_error_line(vaejax(*args))
    assert f"{workdir / records.RUN_RECORD} is damaged" in line
    FAULTS[f"run.json: damaged, then {command}"] += 1


def test_a_garbage_lock_file_does_not_block(tmp_path, reference):
    workdir = copy_run(reference, tmp_path)
    (workdir / locking.LOCK_FILE).write_bytes(b"\x00garbage")
    done = vaejax("sample", "--workdir", str(workdir))
    assert done.returncode == 0, done.stderr[-3000:]
    FAULTS["lock file: damaged"] += 1


# -- 4. two writers -----------------------------------------------------------------------

def _wait_for_lock(directory: pathlib.Path, pid: int, proc, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (locking.holder(directory) or {}).get("pid") == pid:
            return
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    raise TimeoutError(f"{directory} was not locked by {pid}")


def test_lock_is_exclusive_and_released_by_kill9(tmp_path):
    with locking.hold(tmp_path, "first"):
        with pytest.raises(locking.DirectoryLockedError, match=f"pid {os.getpid()} on host "
                           f"{socket.gethostname()}"):
            with locking.hold(tmp_path, "second"):
                pass
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from vaejax import locking\n"
                               f"with locking.hold({str(tmp_path)!r}, 'sleeper'):\n"
                               "    print('held', flush=True); time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(locking.DirectoryLockedError, match=f"pid {holder.pid}"):
        with locking.hold(tmp_path, "second"):
            pass
    holder.kill()
    holder.wait()
    with locking.hold(tmp_path, "after the kill"):  # the kernel released it
        pass


def test_second_train_on_one_workdir_is_refused_naming_the_holder(tmp_path, mnist_dir):
    flags = small_flags(mnist_dir, **{"train.epochs": 1000})  # killed long before the end
    workdir = tmp_path / "run"
    first = start("train", *flags, "--workdir", str(workdir), "--no-eval")
    _wait_for_lock(workdir, first.pid, first)
    line = one_error_line(vaejax("train", "--workdir", str(workdir), "--resume", "--no-eval"))
    assert f"pid {first.pid} on host {socket.gethostname()}" in line
    for command in ("eval", "sample"):
        assert f"pid {first.pid}" in one_error_line(vaejax(command, "--workdir", str(workdir)))
    assert first.poll() is None  # still training, undisturbed
    first.send_signal(signal.SIGKILL)
    first.wait()
    FAULTS["two writers on one workdir"] += 3
    epochs = len(records.read_metrics(workdir)) + 2
    done = vaejax("train", "--workdir", str(workdir), "--resume", "--no-eval",
                  f"--config.train.epochs={epochs}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r["epoch"] for r in records.read_metrics(workdir)] == list(range(1, epochs + 1))


SWEEP_SHRINK = ("--config.data.name=mnist", "--config.data.num_validation=500",
                "--config.eval.iwae_samples=10", "--config.eval.iwae_chunk=10",
                "--config.eval.num_test_examples=200", "--config.train.checkpoint_every=25",
                "--config.train.epochs=150")


def test_the_same_sweep_shard_twice_at_once(tmp_path, mnist_dir):
    sweep = REPO / "experiments" / "smoke_sweep.py"
    args = ("sweep", str(sweep), "--workdir", str(tmp_path / "sweep"),
            f"--config.data.data_dir={mnist_dir}", *SWEEP_SHRINK)
    first = start(*args)
    groups = tmp_path / "sweep" / "groups"
    deadline = time.monotonic() + 300
    while not (groups.is_dir() and any((locking.holder(g) or {}).get("pid") == first.pid
                                       for g in groups.iterdir())):
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1][-3000:]
        time.sleep(0.05)
    second = vaejax(*args)
    line = one_error_line(second)
    assert f"in use by vaejax sweep (group" in line and f"pid {first.pid}" in line
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    FAULTS["two writers on one sweep group"] += 1
    runs = sorted((tmp_path / "sweep" / "runs").iterdir())
    assert len(runs) == 8
    for run in runs:
        assert [r["epoch"] for r in records.read_metrics(run)] == list(range(1, 151)), run


def test_one_damaged_sweep_run_is_marked_and_the_others_carry_on(tmp_path, mnist_dir):
    sweep = REPO / "experiments" / "smoke_sweep.py"
    workdir = tmp_path / "sweep"
    args = ("sweep", str(sweep), "--workdir", str(workdir), f"--config.data.data_dir={mnist_dir}",
            *SWEEP_SHRINK[:-1], "--config.train.epochs=50")
    # Train the first group only part-way: kill it after its first epoch's records.
    first = start(*args)
    runs = workdir / "runs"
    deadline = time.monotonic() + 300
    while not (runs.is_dir() and any(len(records.read_metrics(r, log=lambda *_: None)) >= 1
                                     for r in runs.iterdir() if (r / records.METRICS).exists())):
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    started = sorted(r for r in runs.iterdir() if (r / records.METRICS).exists())
    victim = started[0] / records.METRICS
    victim.write_text("{garbage\n" + victim.read_text())
    done = vaejax(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{started[0].name}: damaged" in done.stdout
    assert (started[0] / records.DAMAGED).exists()
    report = (workdir / "results.md").read_text()
    assert "7 of 8 runs finished" in report and "1 damaged" in report
    # sweep-report alone, and with the report of a finished run's results.json torn too
    finished = sorted(r for r in runs.iterdir() if (r / records.RESULTS).exists())
    (finished[0] / records.RESULTS).write_text("{")
    again = vaejax("sweep-report", str(workdir))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "6 of 8 runs finished" in (workdir / "results.md").read_text()
    FAULTS["sweep: one run's records damaged"] += 2


# -- 5. bad settings ----------------------------------------------------------------------

BAD_SETTINGS = [("model.latent_dim", "0"), ("model.latent_dim", "-3"),
                ("train.checkpoint_every", "0"), ("train.epochs", "0"), ("train.epochs", "-1"),
                ("train.keep_checkpoints", "0"), ("train.batch_size", "0"),
                ("optimizer.learning_rate", "0.0"), ("objective.num_samples", "0"),
                ("eval.iwae_chunk", "0"), ("model.hidden_sizes", "(64,0)"), ("optimizer.b2", "1.5")]


@pytest.mark.parametrize("key,value", BAD_SETTINGS)
def test_bad_setting_fails_before_anything_is_written(tmp_path, mnist_dir, capsys, key, value):
    workdir = tmp_path / "run"
    flags = small_flags(mnist_dir) + [f"--config.{key}={value}"]
    assert cli.main(["train", *flags, "--workdir", str(workdir)]) == 2
    err = capsys.readouterr().err
    assert f"{key}=" in err and "must be" in err
    assert not workdir.exists()
    FAULTS["bad setting"] += 1


def test_a_beta_schedule_for_an_objective_without_beta_is_refused(tmp_path, mnist_dir, capsys):
    """It used to do nothing, silently: IWAE has no KL weight to warm up."""
    workdir = tmp_path / "run"
    flags = small_flags(mnist_dir) + ["--config.objective.kind=iwae",
                                      "--config.objective.beta_schedule=linear",
                                      "--config.objective.warmup_steps=100"]
    assert cli.main(["train", *flags, "--workdir", str(workdir)]) == 2
    assert ("objective.beta_schedule='linear' does nothing with objective.kind='iwae'"
            in capsys.readouterr().err)
    assert not workdir.exists()
    FAULTS["bad setting"] += 1


def test_corrected_rerun_after_a_bad_setting_just_works(tmp_path, mnist_dir):
    workdir = tmp_path / "run"
    assert cli.main(["train", *small_flags(mnist_dir), "--config.model.latent_dim=0",
                     "--workdir", str(workdir)]) == 2
    assert cli.main(["train", *small_flags(mnist_dir), "--workdir", str(workdir), "--no-eval"]) == 0


def test_a_sweep_with_a_bad_setting_writes_nothing(tmp_path, mnist_dir):
    workdir = tmp_path / "sweep"
    line = one_error_line(vaejax("sweep", str(REPO / "experiments" / "smoke_sweep.py"),
                                 "--workdir", str(workdir), "--config.train.keep_checkpoints=0"))
    assert "train.keep_checkpoints=0 must be >= 1" in line
    assert not workdir.exists()
    FAULTS["bad setting"] += 1


# -- 6. reproduce checks the record -------------------------------------------------------

def test_reproduce_refuses_a_record_that_contradicts_itself(tmp_path, reference):
    workdir = copy_run(reference, tmp_path)
    record = records.read_json(workdir / records.RUN_RECORD)
    record["seed"] = 7
    records.write_json(workdir / records.RUN_RECORD, record)
    line = one_error_line(vaejax("reproduce", str(workdir), "--workdir", str(tmp_path / "replica")))
    assert "its seed is 7 but its config.seed is 0" in line
    assert not (tmp_path / "replica").exists()
    FAULTS["run.json contradicts itself"] += 1


def test_a_reproduce_mismatch_names_the_differing_settings_first(tmp_path, reference):
    workdir = copy_run(reference, tmp_path)
    record = records.read_json(workdir / records.RUN_RECORD)
    record["versions"]["jax"] = "0.0.1"  # as if recorded by another installation
    records.write_json(workdir / records.RUN_RECORD, record)
    rows = records.read_metrics(workdir)
    rows[-1]["train/loss"] += 1e-3
    records._write_metrics(workdir, rows)
    log = Log()
    report = reproduce.reproduce(workdir, tmp_path / "replica", log=log)
    assert not report["match"]
    assert report["differences"][0] == "setting jax version: 0.0.1 vs " + jax.__version__
    assert "Settings that differ: jax version" in log.text()


# -- 7. a full disk -----------------------------------------------------------------------

@pytest.fixture
def small_filesystem(tmp_path):
    """A 3 MB tmpfs (a real filesystem that fills up); skipped, with the reason, without root."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (mount says: {made.stderr.strip()}); "
                    "the disk-full tests need root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_mid_run_is_one_line_and_resume_after_freeing_space_is_exact(
        small_filesystem, mnist_dir, reference):
    flags = small_flags(mnist_dir, **{"train.epochs": 4, "eval.figures": True})
    workdir = small_filesystem / "run"
    full = vaejax("train", *flags, "--workdir", str(workdir))
    line = one_error_line(full)
    assert full.returncode == 28 and "No space left on device" in line
    assert len(full.stderr.splitlines()) == 1, full.stderr[-3000:]  # no log noise either
    written = records.read_metrics(workdir)
    assert written and [r["epoch"] for r in written] == list(range(1, len(written) + 1))
    assert records.read_run_record(workdir)["seed"] == 0
    FAULTS["disk full while training"] += 1
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_filesystem)], check=True)
    done = vaejax("train", "--workdir", str(workdir), "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    same_run(reference[0], workdir, reference[1])


def test_disk_full_before_the_first_record_is_one_line_naming_the_file(small_filesystem,
                                                                       mnist_dir):
    with open(small_filesystem / "filler", "wb") as f:  # zero bytes left
        with pytest.raises(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
    workdir = small_filesystem / "run"
    full = vaejax("train", *small_flags(mnist_dir), "--workdir", str(workdir))
    line = one_error_line(full)
    assert full.returncode == 28 and "No space left on device" in line
    assert "run.json" in line or ".lock" in line, line
    (small_filesystem / "filler").unlink()
    FAULTS["disk full before the first record"] += 1
    done = vaejax("train", *small_flags(mnist_dir), "--workdir", str(workdir), "--no-eval")
    assert done.returncode == 0, done.stderr[-3000:]
