"""The `vaejax` command line: train, eval, sample, and one readable line for bad settings."""

import json

from vaejax import cli

from run_helpers import REPO


def test_cli_train_eval_sample_and_errors(tmp_path, mnist_dir, capsys):
    workdir = str(tmp_path / "cli")
    args = ["train", "--config", str(REPO / "experiments" / "default.py"), "--workdir", workdir,
            "--config.data.name=mnist", f"--config.data.data_dir={mnist_dir}",
            "--config.data.num_train=512", "--config.train.epochs=1", "--config.model.hidden_sizes=(32,)",
            "--config.eval.iwae_samples=5", "--config.eval.num_test_examples=100",
            "--config.eval.figures=false"]
    assert cli.main(args) == 0
    assert (tmp_path / "cli" / "results.json").exists()
    assert cli.main(args) == 2  # the workdir exists
    assert "--resume" in capsys.readouterr().err
    assert cli.main(["eval", "--workdir", workdir, "--config.eval.iwae_samples=10"]) == 0
    assert json.loads((tmp_path / "cli" / "results.json").read_text())["iwae_samples"] == 10
    assert cli.main(["sample", "--workdir", workdir]) == 0
    assert (tmp_path / "cli" / "figures" / "prior_samples.png").exists()
    assert cli.main(args[:3] + ["--workdir", str(tmp_path / "x"), "--config.model.latent_dims=3"]) == 2
    err = capsys.readouterr().err
    assert "Unknown config key 'model.latent_dims'" in err and "model.latent_dim" in err


def test_cli_bad_settings_are_one_readable_line(tmp_path, capsys):
    args = ["train", "--config", str(REPO / "experiments" / "default.py"),
            "--workdir", str(tmp_path / "x")]
    assert cli.main(args + ["--config.data.name=imagenet"]) == 2
    assert "Unknown data.name 'imagenet'" in capsys.readouterr().err


def test_a_full_disk_reported_again_by_asyncio_is_not_printed_twice(caplog):
    """orbax writes checkpoint files in asyncio tasks; when the disk fills, the ones nobody
    awaited are logged again with tracebacks when collected ("Task exception was never
    retrieved"). The CLI's one-line error already says it: those reports are dropped, others
    are not."""
    import asyncio
    import errno
    import gc
    import logging

    async def write(error):
        raise error

    def leave_unretrieved(error):
        loop = asyncio.new_event_loop()
        task = loop.create_task(write(error))
        loop.run_until_complete(asyncio.sleep(0))
        assert task.done()
        loop.close()
        del task
        gc.collect()

    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.addFilter(cli._not_a_second_disk_full_report)
    try:
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            leave_unretrieved(ValueError("RESOURCE_EXHAUSTED: Failed writing: No space left on device"))
            leave_unretrieved(OSError(errno.ENOSPC, "disk full"))
            assert not caplog.records
            leave_unretrieved(RuntimeError("something else"))
            assert len(caplog.records) == 1
            assert caplog.records[0].getMessage().startswith("Task exception was never retrieved")
    finally:
        asyncio_logger.removeFilter(cli._not_a_second_disk_full_report)
