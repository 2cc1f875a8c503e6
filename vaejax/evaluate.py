"""Evaluating runs: the metrics of `vaejax.metrics` over a run's test set, as results.json
(the final model) or evals/ (a kept checkpoint, `vaejax eval --epoch`), with figures, and
the results sent to the run's trackers (`vaejax.trackers`). An interrupted IWAE evaluation continues from its partial file.

Works for any model of the protocol in `vaejax.models` (posterior / prior / likelihood).
All values in nats per example.
"""

from __future__ import annotations

import functools
import glob
import json
import math
import os
import pathlib
import sys
import time
import zipfile

import jax
import jax.numpy as jnp
import numpy as np

from vaejax import data as data_lib
from vaejax import config as config_lib
from vaejax import (ais_evaluation, checkpoints, disentanglement_evaluation, figures, files,
                    locking, metrics, progress, records, runs, trackers)
from vaejax.program import run_keys


def iwae_log_likelihood(model, params, data, key, *, data_shape, preprocessing,
                        num_samples, chunk_size, batch_size, progress=None, stacked=False,
                        partial_file=None, save_every: float = 60.0):
    """IWAE estimate of log p(x) for every example of `data` (`Examples` or images): (N,)
    numpy, nats.

    `batch_size` examples at a time (see `metrics.iwae_batch_log_px`); `chunk_size` is lowered to a
    divisor of `num_samples` if needed. With `stacked=True`, `params` and `key` carry a
    leading axis of M models (a sweep group) and the result is (M, N).
    `progress(n)` is called after each batch with the number of examples done.
    The program is compiled once per (model, settings, shapes), so `model` must be hashable.

    With `partial_file`, the batches done so far are saved there every `save_every` seconds,
    and an interrupted evaluation of the same parameters, keys and settings continues from
    them (each example has its own key, so the result is the same bitwise); the file is
    removed at the end. Anything else in the file (other parameters, settings) is ignored.
    """
    if num_samples % chunk_size:
        chunk_size = math.gcd(num_samples, chunk_size)
    data = data_lib.as_examples(data)
    n = data.num_examples
    batch_size = min(batch_size, n)
    idx, mask = data_lib.padded_batch_indices(n, batch_size)
    fn = functools.partial(metrics.compiled_iwae_batch_stacked if stacked else metrics.compiled_iwae_batch, model,
                           data_shape=tuple(data_shape), preprocessing=preprocessing,
                           num_samples=num_samples, chunk_size=chunk_size)
    fingerprint = None if partial_file is None else _fingerprint(
        params, key, n=n, batch_size=batch_size, num_samples=num_samples, chunk_size=chunk_size)
    return _over_batches(lambda b: fn(params, key, data, idx[b]), idx, mask, progress=progress,
                         partial_file=partial_file, fingerprint=fingerprint, save_every=save_every)


def _over_batches(batch_fn, idx, mask, *, progress, partial_file, fingerprint, save_every=60.0):
    """`batch_fn(b)` (an array (..., B)) for every padded batch b of `idx` (batches, B), the
    padding dropped, concatenated on the last axis. With `partial_file`, the batches done are
    saved every `save_every` seconds and an interrupted run with the same `fingerprint`
    continues from them; the file is removed at the end, and a temporary of it that a killed
    evaluation left is removed at the start."""
    out = []
    if partial_file is not None:
        partial_file = pathlib.Path(partial_file)
        files.remove_dead_writers_temporaries(partial_file.parent, glob.escape(partial_file.name))
        out = _load_partial(partial_file, fingerprint)
        if out and progress is not None:
            progress(sum(a.shape[-1] for a in out))
    last_save = time.perf_counter()
    for b in range(len(out), idx.shape[0]):
        keep = np.asarray(mask[b])
        out.append(np.asarray(batch_fn(b))[..., keep])
        if partial_file is not None and time.perf_counter() - last_save >= save_every:
            _save_partial(partial_file, fingerprint, out)
            last_save = time.perf_counter()
        if progress is not None:
            progress(int(keep.sum()))
    if partial_file is not None:
        pathlib.Path(partial_file).unlink(missing_ok=True)
    return np.concatenate(out, axis=-1)


def ais_log_likelihood(model, params, data, key, *, data_shape, preprocessing, num_steps,
                       num_chains, gap_steps=0, batch_size, progress=None, partial_file=None,
                       save_every: float = 60.0) -> np.ndarray:
    """`ais_evaluation.ais_batch` over every example of `data` (one model), `batch_size`
    examples at a time: (1 or 3, N) numpy, nats. Resumable from `partial_file`, like
    `iwae_log_likelihood`."""
    data = data_lib.as_examples(data)
    n = data.num_examples
    idx, mask = data_lib.padded_batch_indices(n, min(batch_size, n))
    fn = functools.partial(ais_evaluation.compiled_ais_batch, model, data_shape=tuple(data_shape),
                           preprocessing=preprocessing, num_steps=num_steps,
                           num_chains=num_chains, gap_steps=gap_steps)
    fingerprint = None if partial_file is None else _fingerprint(
        params, key, n=n, batch_size=idx.shape[1], ais_steps=num_steps, ais_chains=num_chains,
        gap_steps=gap_steps)
    return _over_batches(lambda b: fn(params, key, data, idx[b]), idx, mask, progress=progress,
                         partial_file=partial_file, fingerprint=fingerprint, save_every=save_every)


def _fingerprint(params, key, **settings) -> str:
    """What an evaluation's batches depend on: the settings, the keys and a checksum of the
    parameters (float64 sums of each leaf and of its absolute values)."""
    leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(params)]
    sums = [float(np.sum(x)) for x in leaves] + [float(np.sum(np.abs(x))) for x in leaves]
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    keys = np.asarray(jax.random.key_data(key) if typed else key).tolist()
    return json.dumps({"settings": settings, "keys": keys, "params": sums}, sort_keys=True)


def _load_partial(path, fingerprint: str) -> list[np.ndarray]:
    path = pathlib.Path(path)
    try:
        with np.load(path, allow_pickle=False) as saved:
            if str(saved["fingerprint"]) != fingerprint:
                return []
            return [saved[f"batch_{i}"] for i in range(int(saved["batches"]))]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return []  # none yet, or torn by a kill while written: start over


def _save_partial(path, fingerprint: str, batches: list[np.ndarray]) -> None:
    path = pathlib.Path(path)
    tmp = files.writer_temporary(path)
    with open(tmp, "wb") as f:
        np.savez(f, fingerprint=np.asarray(fingerprint), batches=np.asarray(len(batches)),
                 **{f"batch_{i}": a for i, a in enumerate(batches)})
    os.replace(tmp, path)


def test_metrics(program, params, hyper, test_data, eval_config, *, num_members=None,
                 log=print, partial_file=None):
    """The results.json numbers for `params` on `test_data` (`Examples` or images): a dict.

    With `num_members` = M, `params` and `hyper` are stacked along a leading axis of M models
    (a sweep group): both programs are vmapped over the models and a list of M dicts is
    returned; each equals the
    model's own evaluation up to float rounding (the per-example keys are the same). The IWAE
    batch is then `eval.iwae_batch_size // M` examples, so memory stays that of one model.
    With `partial_file`, an interrupted IWAE evaluation continues where it stopped
    (`iwae_log_likelihood`).
    """
    test_data = data_lib.as_examples(test_data)
    if eval_config.num_test_examples > 0:
        test_data = test_data.take(slice(None, eval_config.num_test_examples))
    stacked = num_members is not None
    members = num_members or 1
    eval_key = lambda seed: run_keys(seed).eval  # noqa: E731
    keys = jax.vmap(eval_key)(hyper["seed"]) if stacked else eval_key(hyper["seed"])
    start = time.perf_counter()
    elbo_fn = metrics.compiled_elbo_metrics_stacked if stacked else metrics.compiled_elbo_metrics
    m = jax.device_get(elbo_fn(
        program.model, params, test_data, keys, data_shape=program.data_shape,
        preprocessing=program.preprocessing, batch_size=eval_config.batch_size,
        threshold=eval_config.active_unit_threshold))
    log_px, iwae_time = None, None
    if eval_config.iwae_samples > 0:
        log_px, iwae_time = _timed_iwae(program, params, test_data, keys, eval_config,
                                        stacked=stacked, members=members, log=log,
                                        partial_file=partial_file)

    def pick(i):  # member i's values of a stacked evaluation
        return (lambda v: v[i]) if stacked else (lambda v: v)

    ais = [_timed_ais(program, jax.tree.map(pick(i), params), pick(i)(keys), test_data,
                      eval_config, None if log_px is None else pick(i)(log_px), log=log,
                      partial_file=None if stacked else partial_file)
           for i in range(members)] if eval_config.get("ais_steps", 0) > 0 else [{}] * members
    eval_time = time.perf_counter() - start
    results = [_member_results(m, log_px, pick(i), num_test_examples=test_data.num_examples,
                               iwae_samples=eval_config.iwae_samples, iwae_time=iwae_time,
                               eval_time=eval_time) | ais[i]
               for i in range(members)]
    return results if stacked else results[0]


def _timed_ais(program, params, key, test_data, eval_config, iwae_log_px, *, log,
               partial_file) -> dict:
    """AIS (and with `eval.gap_steps`, the gap split) on the first `eval.ais_num_examples`
    test examples of one model, with a progress bar: results.json's fields
    (`ais_evaluation.results`), and the seconds it took as `ais_time`."""
    steps, chains, gap_steps = eval_config.ais_steps, eval_config.ais_chains, eval_config.gap_steps
    ais_evaluation.check_model(program.model, params, program.data_shape, gap_steps)
    subset = test_data.take(slice(None, eval_config.ais_num_examples))
    what = f"eval AIS T={steps} x {chains} chains" + (f", gap split ({gap_steps} steps)" if gap_steps else "")
    bar = _progress_bar(what, subset.num_examples, log)
    start = time.perf_counter()
    values = ais_log_likelihood(
        program.model, params, subset, key, data_shape=program.data_shape,
        preprocessing=program.preprocessing, num_steps=steps, num_chains=chains,
        gap_steps=gap_steps, batch_size=eval_config.ais_batch_size, progress=bar.update,
        partial_file=None if partial_file is None else pathlib.Path(partial_file).with_name(AIS_PARTIAL))
    bar.close()
    out = ais_evaluation.results(values, iwae_log_px, steps=steps, chains=chains, gap_steps=gap_steps)
    if eval_config.get("bdmc_examples", 0) > 0:
        out |= _bdmc(program, params, key, eval_config, log=log, partial_file=partial_file)
    return out | {"ais_time": time.perf_counter() - start}


def _bdmc(program, params, key, eval_config, *, log, partial_file) -> dict:
    """BDMC on `eval.bdmc_examples` examples simulated from the model, in batches of
    `eval.ais_batch_size`, resumable like the AIS batches."""
    m, steps, chains = eval_config.bdmc_examples, eval_config.ais_steps, eval_config.ais_chains
    if getattr(program.model, "conditioning", None) is not None:
        raise ValueError("eval.bdmc_examples: BDMC simulates data from p(z) p(x|z); a model "
                         "conditioned on a label has no such p(x). Set eval.bdmc_examples=0.")
    idx, mask = data_lib.padded_batch_indices(m, min(eval_config.ais_batch_size, m))
    fn = functools.partial(ais_evaluation.compiled_bdmc_batch, program.model, num_steps=steps,
                           num_chains=chains)
    partial = None if partial_file is None else pathlib.Path(partial_file).with_name(BDMC_PARTIAL)
    fingerprint = None if partial is None else _fingerprint(
        params, key, m=m, batch_size=idx.shape[1], ais_steps=steps, ais_chains=chains)
    bar = _progress_bar(f"eval BDMC T={steps} x {chains} chains, simulated data", m, log)
    bounds = _over_batches(lambda b: fn(params, key, idx[b]), idx, mask, progress=bar.update,
                           partial_file=partial, fingerprint=fingerprint)
    bar.close()
    return ais_evaluation.bdmc_results(bounds)


def _timed_iwae(program, params, test_data, keys, eval_config, *, stacked, members, log,
                partial_file):
    """`iwae_log_likelihood` with K = `eval.iwae_samples` over `test_data`, with a progress bar
    (or lines, in a log file); returns (log p(x): (N,), or (M, N) when `stacked`, nats; the
    seconds it took)."""
    k = eval_config.iwae_samples
    bar = _progress_bar(f"eval IWAE K={k}", test_data.num_examples, log)
    iwae_start = time.perf_counter()
    log_px = iwae_log_likelihood(
        program.model, params, test_data, keys, data_shape=program.data_shape,
        preprocessing=program.preprocessing, num_samples=k,
        chunk_size=min(eval_config.iwae_chunk, k),
        batch_size=max(1, eval_config.iwae_batch_size // members), progress=bar.update,
        stacked=stacked, partial_file=partial_file)
    bar.close()
    return log_px, time.perf_counter() - iwae_start


def _progress_bar(desc: str, total: int, log):
    """A tqdm bar at a terminal; in a log file `progress.ProgressLines` (lines, not a bar
    redrawn with carriage returns into one line). Either takes `update(n)` and `close()`."""
    from tqdm.auto import tqdm  # noqa: PLC0415

    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit="ex", dynamic_ncols=True)
    return progress.ProgressLines(desc, total, log=log)


def _member_results(m, log_px, pick, *, num_test_examples, iwae_samples, iwae_time,
                    eval_time) -> dict:
    """One model's results.json numbers: `pick` takes its values out of the ELBO metrics `m`
    and the IWAE log p(x) `log_px` (None: no IWAE evaluation); times in seconds."""
    results = {
        "test/neg_elbo": float(pick(m["neg_elbo"])),
        "test/rate": float(pick(m["rate"])),
        "test/distortion": float(pick(m["distortion"])),
        "posterior_mean_variance": [float(v) for v in pick(m["posterior_mean_variance"])],
        "active_units": int(pick(m["active_units"])),
        "latent_dim": int(pick(m["posterior_mean_variance"]).shape[-1]),
        "num_test_examples": num_test_examples,
    }
    if "active_units_by_variable" in m:
        results["active_units_by_variable"] = {
            name: int(pick(v)) for name, v in m["active_units_by_variable"].items()}
    if "kl_by_variable" in m:
        results["test/kl_by_variable"] = {
            name: float(pick(v)) for name, v in m["kl_by_variable"].items()}
    if "kl_per_dim" in m:
        results["kl_per_dim"] = [float(v) for v in pick(m["kl_per_dim"])]
    if log_px is not None:
        lp = pick(log_px)
        results["test/nll"] = float(-np.mean(lp))
        results["test/nll_stderr"] = float(np.std(lp) / np.sqrt(lp.size))
        results["iwae_samples"] = iwae_samples
        results["iwae_time"] = iwae_time
    results["eval_time"] = eval_time
    return results


def check_settings(eval_config) -> None:
    """Refuses evaluation settings that nothing reads (AIS's without AIS, the disentanglement
    metrics' without them), before anything is written."""
    ais_evaluation.check_settings(eval_config)
    disentanglement_evaluation.check_settings(eval_config)


def finish_member(workdir, program, params, hyper, results, test_data, config, *, epoch=None,
                  log=print, name=None, grid=None) -> dict:
    """Writes one model's evaluation into its workdir: figures first, then results.json (with
    the epoch and step of the metrics it belongs to, and the names of the figures), so a run
    counts as finished (`records.evaluated`) only when both exist: a kill while the figures
    are drawn leaves a run that the next `train --resume` or `sweep` evaluates again.

    With `eval.disentanglement`, `grid` (`Splits.grid`, every image of the factor grid) gives
    the images the metrics score."""
    workdir = pathlib.Path(workdir)
    results = dict(results)
    sample = None  # the disentanglement metrics' codes and factors, which the figure reuses
    if config.eval.get("disentanglement", False):
        scored = dict(seed=int(hyper["seed"]), num_examples=config.eval.disentanglement_examples)
        sample = disentanglement_evaluation.sample_codes(program, params, grid, **scored)
        results.update(disentanglement_evaluation.evaluate(program, params, grid, **scored,
                                                           sample=sample, log=log))
    # the settings this evaluation ran with (`vaejax eval --config.eval.*` may change them
    # after training): what `vaejax reproduce` evaluates the replica with
    results["eval_settings"] = config_lib.to_dict(config.eval)
    last = records.last_metrics(workdir)
    if last is not None:
        results["epoch"] = last["epoch"] if epoch is None else epoch
        results["step"] = last["step"]
    summary = ", ".join(f"{k} {results[k]:.2f}" for k in
                        ("test/neg_elbo", "test/nll", "test/rate", "test/distortion", "test/ais_nll",
                         "test/gap_approximation", "test/gap_amortization", "disentanglement/mig",
                         "disentanglement/dci_disentanglement") if k in results)
    log(f"eval: {name + ': ' if name else ''}{summary}, active units {results['active_units']}/"
        f"{results['latent_dim']} -> {workdir / records.RESULTS}")
    paths = []
    if config.eval.figures:
        paths = figures.draw_figures(workdir, program, params, hyper, test_data, log=log)
        if sample is not None:
            paths.append(figures.draw_factor_traversals(
                workdir, program, params, *sample, grid.images(sample[1][:1]).shape[1:]))
        results["figures"] = sorted(p.name for p in paths)
    with trackers.open_run(workdir) as tracked:
        tracked.results(results.get("epoch", 0), results, paths)
    records.set_aside_if_damaged(workdir / records.RESULTS, log=log)
    records.write_json(workdir / records.RESULTS, results)  # last: the run is complete
    return results


AIS_PARTIAL = "eval.ais.partial.npz"  # the AIS batches of an evaluation under way
BDMC_PARTIAL = "eval.bdmc.partial.npz"
EVALS = "evals"  # <workdir>/evals/epoch-<E>_k<K>_n<N>.json: `evaluate_checkpoint`'s results
PARTIAL_SUFFIX = ".partial.npz"  # the IWAE batches of an evaluation under way


def partial_eval_file(directory) -> pathlib.Path:
    """Where the final evaluation of a run (or of a sweep group) keeps its batches done."""
    return pathlib.Path(directory) / f"eval{PARTIAL_SUFFIX}"


def _num_test(eval_config, test_data) -> int:
    n = data_lib.as_examples(test_data).num_examples
    return min(n, eval_config.num_test_examples) if eval_config.num_test_examples > 0 else n


def evaluate_checkpoint(workdir, epoch: int, *, config=None, log=print) -> dict:
    """`vaejax eval --epoch E`: the test metrics of the kept checkpoint of epoch E (e.g. one
    point of a learning curve, `train.keep_every`), written to
    `<workdir>/evals/epoch-<E>_k<K>_n<test examples>.json` with the epoch's step and the eval
    settings: evaluations with other settings sit beside it. results.json and the figures are
    not touched, and only `evals/` is locked: it may run while the run trains."""
    workdir = pathlib.Path(workdir)
    if config is not None:
        config_lib.validate(config)
        check_settings(config.eval)
    records.read_run_record(workdir)  # a clear error if `workdir` is not a run
    out = workdir / EVALS
    out.mkdir(exist_ok=True)
    with locking.hold(out, f"vaejax eval --epoch {epoch}"):
        manager = checkpoints.Manager(workdir)
        try:
            kept = manager.epochs()
        finally:
            manager.close()
        if epoch not in kept:
            raise checkpoints.NoCheckpointError(
                f"{workdir} keeps no checkpoint of epoch {epoch}; it keeps {kept} "
                "(train.keep_every keeps checkpoints for good).")
        run = runs.load_run(workdir, epoch=epoch, config=config, log=log)
        path = out / (f"epoch-{epoch:06d}_k{run.config.eval.iwae_samples}"
                      f"_n{_num_test(run.config.eval, run.splits.test)}.json")
        results = dict(test_metrics(run.program, run.params, run.hyper, run.splits.test,
                                    run.config.eval, log=log,
                                    partial_file=path.with_suffix(PARTIAL_SUFFIX)))
        step = next((r["step"] for r in records.read_metrics(workdir) if r["epoch"] == epoch), None)
        results.update(epoch=epoch, step=step, eval=config_lib.to_dict(run.config.eval))
        records.write_json(path, results)
    log(f"eval: epoch {epoch}: " + ", ".join(f"{k} {results[k]:.2f}" for k in
        ("test/neg_elbo", "test/nll") if k in results) + f" -> {path}")
    return results


def read_checkpoint_evals(workdir) -> list[dict]:
    """Every `evaluate_checkpoint` result of `workdir`, by epoch (then K, test examples)."""
    paths = sorted((pathlib.Path(workdir) / EVALS).glob("epoch-*.json"))
    return [records.read_json(p) for p in paths]


def evaluate_run(workdir, *, config=None, log=print) -> dict:
    """`vaejax eval`: evaluates the latest checkpoint of `workdir` (with `config`'s eval
    settings when given); writes results.json and the figures."""
    if config is not None:
        config_lib.validate(config)
        check_settings(config.eval)
    records.read_run_record(workdir)  # a clear error if `workdir` is not a run
    with locking.hold(workdir, "vaejax eval"):
        run = runs.load_run(workdir, config=config, log=log)
        results = test_metrics(run.program, run.params, run.hyper, run.splits.test,
                               run.config.eval, log=log, partial_file=partial_eval_file(workdir))
        return finish_member(workdir, run.program, run.params, run.hyper, results,
                             run.splits.test, run.config, epoch=run.epoch, log=log,
                             grid=run.splits.grid)
