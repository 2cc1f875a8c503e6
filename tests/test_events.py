"""TensorBoard: every run's events, read back by TensorBoard's own loader and served by a real
`tensorboard` over HTTP."""

import json
import pathlib
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from run_helpers import killed_before_checkpoint, small_config
from vaejax import records, train
from vaejax.sweep import group as group_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE = REPO / "experiments" / "smoke_sweep.py"
SHRINK = ("data.num_train=512", "data.num_validation=500", "eval.iwae_samples=10",
          "eval.iwae_chunk=10", "eval.num_test_examples=200")


def _load(workdir) -> event_accumulator.EventAccumulator:
    events = event_accumulator.EventAccumulator(str(workdir), size_guidance={"images": 0})
    events.Reload()
    return events


def _series(events, tag):
    return [(e.step, e.value) for e in events.Scalars(tag)]


def _hparams(events) -> dict:
    """The run's hyperparameters as TensorBoard's HParams plugin reads them."""
    content = events.PluginTagToContent("hparams")
    for raw in content.values():
        data = plugin_data_pb2.HParamsPluginData.FromString(raw)
        if data.HasField("session_start_info"):
            return {name: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
                    for name, value in data.session_start_info.hparams.items()}
    raise AssertionError(f"no session start info among {list(content)}")


@pytest.mark.slow
def test_a_resumed_runs_events_equal_its_metrics(tmp_path, mnist_dir, monkeypatch):
    """Killed between epoch 2's metrics and its checkpoint, then resumed: TensorBoard shows
    epochs 1, 2, 3 once each, equal to metrics.jsonl, plus the test results, the figures and
    the config."""
    config = small_config(mnist_dir, **{"train.epochs": 3, "eval.figures": True})
    workdir = tmp_path / "run"
    killed_before_checkpoint(monkeypatch, config, workdir, epoch=2)
    train.train(config, workdir, resume=True, log=lambda *_: None)

    events = _load(workdir)
    metrics = records.read_metrics(workdir)
    for tag in ("train/loss", "train/rate", "train/distortion", "val/neg_elbo", "lr", "beta",
                "examples_per_sec"):
        steps, values = zip(*_series(events, tag))
        assert list(steps) == [1, 2, 3], (tag, steps)  # the killed attempt's epoch 2 is purged
        np.testing.assert_allclose(values, [r[tag] for r in metrics], rtol=1e-6)
    results = records.read_json(workdir / records.RESULTS)
    for tag in ("test/nll", "test/neg_elbo", "test/rate", "test/distortion"):
        assert _series(events, tag) == [(3, pytest.approx(results[tag], rel=1e-6))]
    assert _series(events, "test/active_units") == [(3, results["active_units"])]
    images = events.Tags()["images"]
    assert sorted(images) == sorted(f"figures/{pathlib.Path(name).stem}"
                                    for name in results["figures"])
    first = events.Images(images[0])[0]
    assert first.step == 3 and first.width > 100 and first.height > 100
    hparams = _hparams(events)
    assert hparams["model.latent_dim"] == 2 and hparams["data.name"] == "mnist"
    assert hparams["model.hidden_sizes"] == "(64,)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 10.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_tensorboard_serves_a_sweeps_runs_over_http(tmp_path, fashion_mnist_dir):
    """`tensorboard --logdir SWEEP` lists every member, and its loss series over HTTP equals
    the member's metrics.jsonl; the HParams tab knows the swept settings."""
    sweep_file = tmp_path / "two.py"
    sweep_file.write_text(
        "from vaejax.config import load_module\nfrom vaejax.sweep import product\n"
        f"smoke = load_module({str(SMOKE)!r})\nget_config = smoke.get_config\n"
        "def get_sweep():\n    return product(latent_dim=[2], beta=[0.5, 2], seed=[0])\n")
    sweep = tmp_path / "sweep"
    group_lib.run_sweep(sweep_file, sweep, overrides=SHRINK, log=lambda *_: None)
    members = sorted(p.name for p in (sweep / "runs").iterdir())
    assert len(members) == 2

    port = _free_port()
    server = subprocess.Popen(
        [str(pathlib.Path(sys.executable).with_name("tensorboard")), "--logdir", str(sweep),
         "--host", "127.0.0.1", "--port", str(port), "--reload_interval", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        runs, deadline = [], time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                runs = _get(f"{base}/data/runs")
            except OSError:
                runs = []
            if len(runs) == 2:
                break
            assert server.poll() is None, server.stdout.read()
            time.sleep(1)
        assert sorted(runs) == [f"runs/{m}" for m in members], runs
        for member in members:
            query = urllib.parse.urlencode({"run": f"runs/{member}", "tag": "train/loss"})
            served = _get(f"{base}/data/plugin/scalars/scalars?{query}")  # [wall, step, value]
            metrics = records.read_metrics(sweep / "runs" / member)
            assert [row[1] for row in served] == [r["epoch"] for r in metrics]
            np.testing.assert_allclose([row[2] for row in served],
                                       [r["train/loss"] for r in metrics], rtol=1e-6)
        request = urllib.request.Request(
            f"{base}/data/plugin/hparams/experiment", data=b'{"experimentName": ""}',
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            experiment = json.loads(response.read())
        names = {h["name"] for h in experiment["hparamInfos"]}
        assert {"objective.beta", "model.latent_dim", "seed"} <= names
        metric_tags = {m["name"]["tag"] for m in experiment["metricInfos"]}
        assert {"test/nll", "val/neg_elbo"} <= metric_tags
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_events_are_written_without_tensorflow(tmp_path, mnist_dir):
    """vaejax trains without TensorFlow: the events come from tensorboardX alone."""
    from run_helpers import small_flags

    script = (
        "import sys\n"
        "sys.modules['tensorflow'] = None\n"
        "sys.modules['tensorboard'] = None\n"
        "from vaejax import cli\n"
        f"code = cli.main(['train', '--workdir', {str(tmp_path / 'run')!r}] + {small_flags(mnist_dir)!r})\n"
        "assert code == 0, code\n"
        "assert not [m for m, v in sys.modules.items() if v is not None and m.startswith('tensorflow')]\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, cwd=REPO / "tests")
    assert result.returncode == 0, result.stderr[-3000:]
    files = sorted(p.name for p in (tmp_path / "run").glob("events.out.tfevents.*"))
    assert sum(".epochs." in name for name in files) == 1, files
    events = _load(tmp_path / "run")
    assert [step for step, _ in _series(events, "train/loss")] == [1, 2]
