"""Trackers (`train.trackers`): W&B (offline) and MLflow get what metrics.jsonl and results.json
hold, read back with each tool's own API; a resumed run continues the same tracker run; a
missing package or an unread setting is refused before anything is written."""

import json

import pytest

from run_helpers import REPO, killed_before_checkpoint, small_config
from vaejax import program as program_lib
from vaejax import records, train, trackers

# wandb and mlflow are dev dependencies: a missing one fails here, it is not skipped.
from mlflow.tracking import MlflowClient  # noqa: E402
from wandb.proto import wandb_internal_pb2  # noqa: E402
from wandb.sdk.internal import datastore  # noqa: E402  (wandb's reader of its .wandb files)


def _wandb_segments(workdir) -> list[dict]:
    """Each offline segment of the run under `workdir/wandb`, read with wandb's own datastore:
    {"id", "group", "config", "history": [{key: value}]}."""
    segments = []
    for path in sorted((workdir / "wandb").glob("offline-run-*/run-*.wandb")):
        store = datastore.DataStore()
        store.open_for_scan(str(path))
        segment = {"id": None, "group": None, "config": {}, "history": []}
        while (data := store.scan_data()) is not None:
            record = wandb_internal_pb2.Record()
            record.ParseFromString(data)
            kind = record.WhichOneof("record_type")
            if kind == "run":
                segment["id"], segment["group"] = record.run.run_id, record.run.run_group
                segment["config"] |= {u.key: json.loads(u.value_json) for u in record.run.config.update}
            elif kind == "config":
                segment["config"] |= {u.key: json.loads(u.value_json) for u in record.config.update}
            elif kind == "history":
                segment["history"].append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                                           for item in record.history.item})
        segments.append(segment)
    return segments


def _latest_per_epoch(points) -> dict[int, float]:
    """{epoch: value} keeping the value logged last at each epoch (a resumed run logs again the
    epochs it trains again; the later value is metrics.jsonl's)."""
    return {epoch: value for epoch, value in points}


@pytest.mark.slow
def test_wandb_and_mlflow_hold_metrics_jsonl_across_a_resume(tmp_path, mnist_dir, monkeypatch):
    """Killed between epoch 2's metrics and its checkpoint, then resumed: one W&B run id and one
    MLflow run, each holding every metrics.jsonl value (the last logged per epoch), the test
    results and the figures; the config is logged once."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = small_config(mnist_dir, **{
        "train.epochs": 3, "eval.figures": True, "train.trackers": ("tensorboard", "wandb", "mlflow"),
        "train.tracker_project": "vaejax-test", "train.mlflow_tracking_uri": uri})
    workdir = tmp_path / "run"
    killed_before_checkpoint(monkeypatch, config, workdir, epoch=2)
    first = records.read_json(workdir / trackers.base.IDENTITIES)
    train.train(config, workdir, resume=True, log=lambda *_: None)
    identities = records.read_json(workdir / trackers.base.IDENTITIES)
    assert identities == first  # the same W&B id and MLflow run, not a second one
    metrics = records.read_metrics(workdir)
    results = records.read_json(workdir / records.RESULTS)
    assert [r["epoch"] for r in metrics] == [1, 2, 3]
    tags = ("train/loss", "train/rate", "train/distortion", "val/neg_elbo", "lr", "beta")

    # MLflow, read back through its client
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("vaejax-test")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [identities["mlflow"]["run_id"]]
    run_id = runs[0].info.run_id
    for tag in tags:
        history = sorted(client.get_metric_history(run_id, tag), key=lambda m: m.timestamp)
        assert sorted({m.step for m in history}) == [1, 2, 3], tag
        assert _latest_per_epoch((m.step, m.value) for m in history) == {
            r["epoch"]: r[tag] for r in metrics}, tag
    for tag in ("test/nll", "test/neg_elbo"):
        assert [(m.step, m.value) for m in client.get_metric_history(run_id, tag)] == [(3, results[tag])]
    params = runs[0].data.params
    assert params["model.latent_dim"] == "2" and params["train.epochs"] == "3"
    artifacts = {a.path for a in client.list_artifacts(run_id, "figures")}
    assert artifacts == {f"figures/{name}" for name in results["figures"]}
    stored = {p.name for p in (tmp_path / "mlartifacts").rglob("*.png")}  # beside the database
    assert stored == set(results["figures"])

    # W&B, read back from its offline files with wandb's datastore
    segments = _wandb_segments(workdir)
    assert len(segments) >= 2 and {s["id"] for s in segments} == {identities["wandb"]["id"]}
    assert sum(bool(s["config"].get("model.latent_dim")) for s in segments) == 1  # once
    history = [row for s in segments for row in s["history"]]
    for tag in tags:
        assert _latest_per_epoch((row["epoch"], row[tag]) for row in history if tag in row) == {
            r["epoch"]: r[tag] for r in metrics}, tag
    final = [row for row in history if "test/nll" in row]
    assert [(row["epoch"], row["test/nll"]) for row in final] == [(3, results["test/nll"])]
    images = {k.removesuffix("/_type") for k, v in final[0].items()
              if k.endswith("/_type") and v == "image-file"}  # a wandb.Image, by its fields
    assert images == {
        f"figures/{name.removesuffix('.png')}" for name in results["figures"]}


def test_a_missing_tracker_package_is_one_line_saying_what_to_install(mnist_dir, monkeypatch):
    import importlib.util  # noqa: PLC0415

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else find_spec(name, *a))
    config = small_config(mnist_dir, **{"train.trackers": ("tensorboard", "wandb")})
    with pytest.raises(ValueError, match=r"wandb is not installed: pip install 'vaejax\[wandb\]'"):
        program_lib.check_new_run(config)


def test_unknown_trackers_and_unread_settings_are_refused(mnist_dir, tmp_path):
    with pytest.raises(ValueError, match="Unknown train.trackers 'neptune'"):
        program_lib.check_new_run(small_config(mnist_dir, **{"train.trackers": ("neptune",)}))
    unread = small_config(mnist_dir, **{"train.mlflow_tracking_uri": "sqlite:///x.db"})
    with pytest.raises(ValueError, match="train.mlflow_tracking_uri='sqlite:///x.db' is read only"):
        program_lib.check_new_run(unread)
    with pytest.raises(ValueError, match="nothing was written"):
        train.train(unread, tmp_path / "run", log=lambda *_: None)
    assert not (tmp_path / "run").exists()
    program_lib.check_new_run(small_config(mnist_dir, **{  # read by mlflow: accepted
        "train.trackers": ("mlflow",), "train.mlflow_tracking_uri": "sqlite:///x.db"}))


def test_tracker_names_parse_from_the_command_line():
    from vaejax import config as config_lib  # noqa: PLC0415

    for text in ("tensorboard,wandb", "(tensorboard, wandb)", "('tensorboard', 'wandb')"):
        assert config_lib._parse(text, ("tensorboard",), "train.trackers") == ("tensorboard", "wandb")
    assert config_lib._parse("mlflow", ("tensorboard",), "train.trackers") == ("mlflow",)


class _Recorder:
    """A tracker of the user's own (`"module:attribute"`): what it was called with."""
    calls: list = []

    def __init__(self, workdir, run, identity):
        self.calls.append(("open", identity))

    def identity(self):
        return {"opened": True}

    def epoch(self, record):
        self.calls.append(("epoch", record["epoch"], record["train/loss"]))

    def results(self, epoch, results, figures):
        self.calls.append(("results", epoch, results["test/nll"]))

    def close(self):
        self.calls.append(("close",))


def test_a_tracker_of_ones_own_gets_every_epoch_and_the_results(tmp_path, mnist_dir):
    _Recorder.calls.clear()
    config = small_config(mnist_dir, **{"train.trackers": ("test_trackers:_Recorder",)})
    config.experiment_dir = str(__import__("pathlib").Path(__file__).parent)
    train.train(config, tmp_path / "run", log=lambda *_: None)
    metrics = records.read_metrics(tmp_path / "run")
    results = records.read_json(tmp_path / "run" / records.RESULTS)
    assert _Recorder.calls == [
        ("open", None), *[("epoch", r["epoch"], r["train/loss"]) for r in metrics], ("close",),
        ("open", {"opened": True}), ("results", 2, results["test/nll"]), ("close",)]


@pytest.mark.slow
def test_a_sweeps_members_are_grouped_runs_holding_their_own_metrics(tmp_path, fashion_mnist_dir,
                                                                      monkeypatch):
    """A vmapped group of two seeds logs one MLflow run per member, tagged with its sweep and
    group, each holding its own metrics.jsonl; W&B puts them in one group (the sweep's folder)."""
    from vaejax.sweep import group as group_lib  # noqa: PLC0415

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    sweep_file = tmp_path / "two_seeds.py"
    sweep_file.write_text(
        "from vaejax.config import sibling\nfrom vaejax.sweep import product\n\n"
        f"def get_config():\n    config = sibling({str(REPO / 'experiments' / 'smoke_sweep.py')!r}, "
        "'smoke_sweep').get_config()\n    config.train.epochs = 2\n    return config\n\n"
        "def get_sweep():\n    return product(seed=[0, 1])\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    workdir = tmp_path / "sweep"
    group_lib.run_sweep(sweep_file, workdir, overrides=(
        "data.num_train=512", "eval.iwae_samples=10", "eval.iwae_chunk=10",
        "eval.num_test_examples=100", "train.trackers=('wandb','mlflow')",
        f"train.mlflow_tracking_uri={uri}"), log=lambda *_: None)
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("vaejax").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["seed=0", "seed=1"]
    assert {r.data.tags["vaejax.sweep"] for r in runs} == {str(workdir.resolve())}
    assert len({r.data.tags["vaejax.group"] for r in runs}) == 1  # one vmapped group
    for run in runs:
        metrics = records.read_metrics(workdir / "runs" / run.info.run_name)
        history = client.get_metric_history(run.info.run_id, "train/loss")
        assert sorted((m.step, m.value) for m in history) == [(r["epoch"], r["train/loss"])
                                                              for r in metrics]
    losses = {r.info.run_name: client.get_metric_history(r.info.run_id, "train/loss")[-1].value
              for r in runs}
    assert losses["seed=0"] != losses["seed=1"]  # each member its own numbers
    for seed in (0, 1):
        segments = _wandb_segments(workdir / "runs" / f"seed={seed}")
        assert segments and {s["group"] for s in segments} == {"sweep"}  # the sweep's folder
        assert len({s["id"] for s in segments}) == 1
