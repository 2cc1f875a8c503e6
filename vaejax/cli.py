"""`vaejax` command line: parse, then call one library function.

    vaejax train --config experiments/default.py --workdir runs/x [--config.model.latent_dim=8]
    vaejax eval --workdir runs/x [--config.eval.iwae_samples=5000]
    vaejax sample --workdir runs/x
    vaejax reproduce runs/x --workdir runs/y
    vaejax sweep experiments/latent_kl_sweep.py --workdir sweeps/x [--dry-run] [--shard i/n]
    vaejax sweep experiments/latent_kl_sweep.py --workdir sweeps/x --submit slurm [--slurm-*]
    vaejax sweep-report sweeps/x
    vaejax record runs/x docs/study/records/row      # a run's published record
    vaejax report docs/study [--check]                # a study's page from its records
    vaejax data info NAME | vaejax data fetch NAME
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys


def _split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separates `--config.a.b=v` (or `--config.a.b v`) overrides from the other arguments."""
    rest, overrides = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            if "=" in arg:
                overrides.append(arg)
            elif i + 1 < len(argv):
                overrides.append(f"{arg}={argv[i + 1]}")
                i += 1
            else:
                raise SystemExit(f"vaejax: {arg} needs a value (--config.model.latent_dim=8)")
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vaejax", description="Train, evaluate and sweep VAEs.",
        epilog="Config overrides: --config.<dotted.key>=<value>, e.g. --config.objective.beta=4")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a config in a workdir, then evaluate and draw it")
    p.add_argument("--config", default=None, help="experiment file with get_config() "
                   "(default with --resume: the workdir's recorded config)")
    p.add_argument("--workdir", required=True)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="start again; the old workdir is moved aside, not deleted")
    p.add_argument("--no-eval", action="store_true", help="skip evaluation and figures")

    p = sub.add_parser("eval", help="test ELBO, IWAE NLL, active units -> results.json")
    p.add_argument("--workdir", required=True)
    p.add_argument("--epoch", type=int, default=None,
                   help="evaluate this kept checkpoint instead -> evals/epoch-<E>.json "
                        "(results.json untouched; may run while the run trains)")

    p = sub.add_parser("sample", help="PNG figures of a trained run")
    p.add_argument("--workdir", required=True)

    p = sub.add_parser("reproduce", help="retrain a run from its record and compare metrics")
    p.add_argument("run", help="the workdir to reproduce")
    p.add_argument("--workdir", required=True, help="where the replica is trained")

    p = sub.add_parser("sweep", help="train every run of a sweep file, grouped and vmapped")
    p.add_argument("sweep_file")
    p.add_argument("--workdir", required=True)
    p.add_argument("--max-group-size", type=int, default=16)
    p.add_argument("--dry-run", action="store_true", help="print the plan and memory estimate")
    p.add_argument("--shard", default="0/1", help="i/n: this process's share of the groups")
    p.add_argument("--submit", choices=("slurm",), default=None,
                   help="submit one Slurm job array (a task per group) and return")
    slurm = p.add_argument_group("--submit slurm (each array task's resources)")
    slurm.add_argument("--slurm-partition", default=None)
    slurm.add_argument("--slurm-time", type=int, default=60, help="minutes per task (requeued "
                       "past it, resuming from checkpoints; default 60)")
    slurm.add_argument("--slurm-cpus-per-task", type=int, default=None)
    slurm.add_argument("--slurm-gpus-per-task", type=int, default=None)
    slurm.add_argument("--slurm-mem", default=None, help="sbatch --mem, e.g. 16G")
    slurm.add_argument("--slurm-array-parallelism", type=int, default=None,
                       help="at most this many tasks at once")
    slurm.add_argument("--slurm-sbatch", action="append", default=[], metavar="KEY=VALUE",
                       help="another sbatch option, e.g. qos=high (repeatable)")

    p = sub.add_parser("sweep-report", help="merge a sweep's results into tables and figures")
    p.add_argument("workdir")

    p = sub.add_parser("record", help="copy a run's records (no checkpoints) into a study")
    p.add_argument("workdir")
    p.add_argument("dest", help="docs/<study>/records/<row>")

    p = sub.add_parser("report", help="a study's page, figures and README blocks from its records")
    p.add_argument("studies", nargs="+", help="docs/<study> folders")
    p.add_argument("--check", action="store_true",
                   help="regenerate nothing; fail if a config drifted or a page is stale")

    p = sub.add_parser("data", help="dataset information and caching")
    p.add_argument("action", choices=("info", "fetch"))
    p.add_argument("name", help="mnist | fashion_mnist | binarized_mnist | cifar10 | idx:<folder>")
    p.add_argument("--data_dir", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.getLogger("asyncio").addFilter(_not_a_second_disk_full_report)
    rest, overrides = _split_overrides(argv)
    args = _parser().parse_args(rest)
    if overrides and args.command not in ("train", "eval", "sweep"):
        raise SystemExit(f"vaejax {args.command} takes no --config.* overrides")
    try:
        return _run(args, overrides)
    except KeyboardInterrupt:
        return _fail(130, "vaejax: interrupted; checkpoints written so far are kept (resume "
                          "with --resume)")
    except Exception as error:  # noqa: BLE001  (one readable line, no traceback, for known errors)
        # Bad input (settings, names, files) reads as one line; set VAEJAX_TRACEBACK=1 to see more.
        code = (None if os.environ.get("VAEJAX_TRACEBACK") == "1"
                else _report_known_error(args.command, error))
        if code is None:
            _leave_with_traceback()
            raise
        return code


def _report_known_error(command: str, error: Exception) -> int | None:
    """Reports an error of bad input (settings, names, files) or a full disk in one line
    (`_fail`) and returns the exit status: 28 for a full disk, 2 otherwise; None for an
    unexpected error, which is left to its traceback."""
    from vaejax import config as config_lib  # noqa: PLC0415
    from vaejax import data, distributed, locking, loop  # noqa: PLC0415
    from vaejax import train as train_lib  # noqa: PLC0415
    from vaejax.sweep.slurm import SlurmError  # noqa: PLC0415

    # published.RecordError is a ValueError: a bad record reads as one line too
    known = (config_lib.ConfigError, train_lib.WorkdirExistsError, loop.TrainingDiverged,
             locking.DirectoryLockedError, FileNotFoundError, ValueError, SlurmError,
             distributed.PeerLostError, distributed.PrimaryFailedError,
             data.DatasetNotFoundError, data.CorruptDataError)
    full = _disk_full(error)
    if full is not None:
        return _fail(28, f"vaejax {command}: error: No space left on device{full}. What "
                         "was written before (records, whole checkpoints) is intact: free "
                         "some space and run the same command again with --resume.")
    error = distributed.explain(error)  # a collective failing because another process died
    if isinstance(error, known):
        return _fail(2, f"vaejax {command}: error: {error}")
    return None


def _fail(code: int, message: str) -> int:
    """Prints `message` and returns `code`; a process of a multi-process job ends there at
    once instead (`vaejax.distributed.abort`), so that the others see it go rather than
    wait for it, and learn why."""
    from vaejax import distributed  # noqa: PLC0415

    if distributed.multiprocess():
        distributed.abort(message, code)
    print(message, file=sys.stderr)
    return code


def _leave_with_traceback() -> None:
    """An unexpected error in a multi-process job: its traceback, then it ends at once."""
    from vaejax import distributed  # noqa: PLC0415

    if distributed.multiprocess():
        import traceback  # noqa: PLC0415

        traceback.print_exc()
        error = sys.exc_info()[1]
        distributed.leave(1, f"{type(error).__name__}: {distributed.first_line(error)}")


def _disk_full(error: BaseException) -> str | None:
    """" (writing <file>)" (or "") if `error`, or an error it was raised from, is ENOSPC;
    None otherwise. orbax and TensorStore wrap it, sometimes only in their message."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if (isinstance(error, OSError) and error.errno == errno.ENOSPC) or (
                "No space left on device" in str(error)):
            name = getattr(error, "filename", None)
            return f" (writing {name})" if name else ""
        error = error.__cause__ or error.__context__
    return None


def _not_a_second_disk_full_report(record: logging.LogRecord) -> bool:
    """False for asyncio's "Task exception was never retrieved" about a full disk: orbax
    writes a checkpoint's files in parallel tasks, and when the disk fills the ones not
    awaited are reported again, with tracebacks, when they are garbage collected. The
    error that was raised already says it in one line."""
    error = record.exc_info[1] if record.exc_info else None
    return error is None or _disk_full(error) is None


def _run(args, overrides: list[str]) -> int:
    """Runs `args.command` with the `--config.*` `overrides`; returns the exit status."""
    return _COMMANDS[args.command](args, overrides)


def _train(args, overrides: list[str]) -> int:
    """`vaejax train`: the config is the experiment file's, or with --resume and no --config
    the workdir's recorded one; `overrides` apply to either."""
    from vaejax import config as config_lib  # noqa: PLC0415
    from vaejax import records, train  # noqa: PLC0415

    if args.config is not None:
        config = config_lib.load_config(args.config, overrides)
    elif args.resume:
        config = config_lib.apply_overrides(records.run_config(args.workdir), overrides)
    else:
        raise SystemExit("vaejax train: --config is required (e.g. experiments/default.py)")
    train.train(config, args.workdir, resume=args.resume, overwrite=args.overwrite,
                evaluate_at_end=not args.no_eval)
    return 0


def _eval(args, overrides: list[str]) -> int:
    """`vaejax eval`: the run's latest checkpoint, or the kept one of --epoch; only
    `--config.eval.*` overrides are allowed."""
    from vaejax import config as config_lib  # noqa: PLC0415
    from vaejax import evaluate, records  # noqa: PLC0415

    config = records.run_config(args.workdir)
    bad = [o for o in overrides if not o.removeprefix("--config.").startswith("eval.")]
    if bad:
        raise SystemExit(f"vaejax eval: only --config.eval.* can change at evaluation: {bad}")
    config = config_lib.apply_overrides(config, overrides)
    if args.epoch is None:
        evaluate.evaluate_run(args.workdir, config=config)
    else:
        evaluate.evaluate_checkpoint(args.workdir, args.epoch, config=config)
    return 0


def _sample(args, overrides: list[str]) -> int:
    """`vaejax sample`: the figures of the run's latest checkpoint."""
    from vaejax import figures  # noqa: PLC0415

    figures.sample_run(args.workdir)
    return 0


def _reproduce(args, overrides: list[str]) -> int:
    """`vaejax reproduce`: 0 if the replica's metrics match the run's, 1 if not."""
    from vaejax import reproduce  # noqa: PLC0415

    report = reproduce.reproduce(args.run, args.workdir)
    return 0 if report["match"] else 1


def _sweep(args, overrides: list[str]) -> int:
    """`vaejax sweep`: trains this shard's groups here, or with --submit slurm submits them."""
    if args.submit == "slurm":
        return _submit_sweep(args, overrides)
    from vaejax import sweep  # noqa: PLC0415

    sweep.run_sweep(args.sweep_file, args.workdir, overrides=overrides,
                     max_group_size=args.max_group_size, dry_run=args.dry_run,
                     shard=args.shard)
    return 0


def _submit_sweep(args, overrides: list[str]) -> int:
    """`vaejax sweep --submit slurm`: one Slurm job array with the --slurm-* resources."""
    from vaejax.sweep import slurm  # noqa: PLC0415

    options = slurm.SlurmOptions(
        partition=args.slurm_partition, time=args.slurm_time,
        cpus_per_task=args.slurm_cpus_per_task, gpus_per_task=args.slurm_gpus_per_task,
        mem=args.slurm_mem, array_parallelism=args.slurm_array_parallelism,
        sbatch=tuple(args.slurm_sbatch))
    slurm.submit(args.sweep_file, args.workdir, overrides=overrides,
                 max_group_size=args.max_group_size, options=options,
                 dry_run=args.dry_run)
    return 0


def _sweep_report(args, overrides: list[str]) -> int:
    """`vaejax sweep-report`: the sweep's tables and figures from what is finished."""
    from vaejax import sweep  # noqa: PLC0415

    sweep.report(args.workdir)
    return 0


def _record(args, overrides: list[str]) -> int:
    """`vaejax record`: copies the run's records into a study."""
    from vaejax import published  # noqa: PLC0415

    published.write_record(args.workdir, args.dest)
    return 0


def _report(args, overrides: list[str]) -> int:
    """`vaejax report`: writes each study's page and figures, or with --check only checks
    them."""
    if args.check:
        return _check_reports(args.studies)
    from vaejax import published  # noqa: PLC0415

    for study in args.studies:
        for path in published.report(study):
            print(f"report: {study}/{path}")
    return 0


def _check_reports(studies: list[str]) -> int:
    """`vaejax report --check`: prints each study's problems; 1 if any has some, else 0."""
    from vaejax import published  # noqa: PLC0415

    failed = 0
    for study in studies:
        problems = published.check(study)
        print(f"report --check {study}: " + ("records, config, page and figures current"
                                              if not problems else f"{len(problems)} problem(s)"))
        for problem in problems:
            print(f"  - {problem}")
        failed += bool(problems)
    return 1 if failed else 0


def _data(args, overrides: list[str]) -> int:
    """`vaejax data info|fetch`: prints a dataset's description, or the path of its cached copy."""
    from vaejax import data  # noqa: PLC0415

    if args.action == "info":
        for key, value in data.describe(args.name, data_dir=args.data_dir).items():
            print(f"{key:>20}: {json.dumps(value, default=str)}")
    else:
        print(data.fetch(args.name, data_dir=args.data_dir))
    return 0


_COMMANDS = {"train": _train, "eval": _eval, "sample": _sample, "reproduce": _reproduce,
             "sweep": _sweep, "sweep-report": _sweep_report, "record": _record, "report": _report,
             "data": _data}


if __name__ == "__main__":
    sys.exit(main())
