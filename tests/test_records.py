"""`vaejax.records`: what a workdir records, and records of older versions."""

import json
import os
import stat

import pytest

from vaejax import config as config_lib
from vaejax import files, records

from tiny import tiny_config  # noqa: E402


def test_a_config_recorded_before_models_became_plugins_loads(tmp_path):
    old = config_lib.to_dict(tiny_config())
    likelihood = old["model"].pop("likelihood")
    old["likelihood"] = likelihood  # the layout before the plug-in core
    for added in ("gradient_estimator", "num_groups", "alpha", "gamma", "sampling"):  # objective settings added since
        old["objective"].pop(added)
    (tmp_path / records.RUN_RECORD).write_text(json.dumps({"config": old}))
    config = records.run_config(tmp_path)
    assert config.model.likelihood == likelihood and "likelihood" not in config
    assert config.objective.gradient_estimator == "reparam" and config.objective.num_groups == 1
    records.write_run_record(tmp_path, tiny_config(), data_source="test")  # resumes: no difference


def test_resume_accepts_only_changes_that_keep_the_trajectory(tmp_path):
    config = tiny_config()
    records.write_run_record(tmp_path, config, data_source="test")
    longer = config_lib.apply_overrides(config, ["train.epochs=5", "experiment_dir=/elsewhere"])
    records.write_run_record(tmp_path, longer, data_source="test")  # allowed
    with pytest.raises(ValueError, match=r"model.latent_dim"):
        records.write_run_record(tmp_path, config_lib.apply_overrides(config, ["model.latent_dim=3"]),
                                 data_source="test")


def test_truncate_metrics_drops_epochs_to_train_again(tmp_path):
    for epoch in (1, 2, 3):
        records.append_metrics(tmp_path, {"epoch": epoch})
    records.truncate_metrics(tmp_path, 2)
    assert [r["epoch"] for r in records.read_metrics(tmp_path)] == [1, 2]


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_records_follow_the_umask_like_ordinary_files(tmp_path, mask):
    old = os.umask(mask)
    try:
        assert files.umask() == mask
        records.write_json(tmp_path / "r.json", {"a": 1})
        (tmp_path / "ordinary").write_text("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "r.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "ordinary").stat().st_mode) == 0o666 & ~mask


def test_move_aside_never_moves_into_or_over_an_earlier_one(tmp_path):
    """Two --overwrite moves in the same second keep both earlier runs, each whole."""
    from vaejax import files

    run = tmp_path / "run"
    asides = []
    for generation in range(3):
        run.mkdir()
        (run / "metrics.jsonl").write_text(f"generation {generation}\n")
        asides.append(files.move_aside(run))
        assert not run.exists()
    assert len(set(asides)) == 3
    assert [(a / "metrics.jsonl").read_text() for a in asides] == [
        f"generation {g}\n" for g in range(3)]
    assert all(a.parent == tmp_path and a.name.startswith("run.replaced-") for a in asides)


def test_a_killed_writers_temporary_is_removed_and_a_live_ones_is_kept(tmp_path):
    """`writer_temporary` names its writer; `remove_dead_writers_temporaries` deletes only the
    files of writers that are gone (a figure half-written when its process was killed)."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = tmp_path / f".training_curves.png.{gone.stdout.strip()}.tmp"
    live = files.writer_temporary(tmp_path / "reconstructions.png")
    unrelated = tmp_path / ".notes.tmp"
    for path in (dead, live, unrelated):
        path.write_bytes(b"half")
    assert live.name == f".reconstructions.png.{os.getpid()}.tmp"
    assert files.remove_dead_writers_temporaries(tmp_path) == [dead]
    assert not dead.exists() and live.exists() and unrelated.exists()
