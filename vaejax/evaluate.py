"""Evaluation: test negative ELBO, IWAE estimate of the negative log-likelihood, active
units, KL per latent dimension, rate and distortion. All values in nats per example.

Works for any model of the protocol in `vaejax.models` (posterior / prior / likelihood).
Each test example gets its own keys, folded from the run's eval key and the example's
index, so results do not depend on the batch or chunk sizes used to compute them. The
same binarization of each test image is used by every metric.
"""

from __future__ import annotations

import functools
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
from vaejax import checkpoints, distributions, events, figures, locking, objectives, records, runs
from vaejax.program import run_keys

BINARY_PREPROCESSING = ("dynamic_binarize", "threshold")


def binary_log_likelihood(x, p_x):
    """log p(x|z) for x in {0, 1}: Bernoulli's single-pass form where it applies (the same
    values, faster for IWAE), else `p_x.log_prob(x)`."""
    if isinstance(p_x, distributions.Bernoulli):
        return p_x.log_prob_binary(x)
    return p_x.log_prob(x)


def log_likelihood(x, p_x):
    """log p(x|z) = `p_x.log_prob(x)`, nats: any x."""
    return p_x.log_prob(x)


def _log_likelihood(preprocessing):
    return binary_log_likelihood if preprocessing in BINARY_PREPROCESSING else log_likelihood


def _example_streams(key):
    """Keys for the test-time binarization and for the posterior samples."""
    binarize_key, noise_key = jax.random.split(key)
    return binarize_key, noise_key


def _inputs(binarize_key, examples, idx_B, preprocessing, data_shape):
    """Preprocessed examples `idx_B` (B,) of `examples`, each binarized with its own key, in
    the model's input shape (B,) + data_shape (the MLP reads flat vectors), and their labels
    (B,) (None unless `examples` carries labels: a conditional model's)."""
    keys = jax.vmap(jax.random.fold_in, (None, 0))(binarize_key, idx_B)
    batch = examples.take(idx_B)
    x = jax.vmap(functools.partial(data_lib.preprocess, kind=preprocessing))(keys, batch.images)
    return x.reshape((x.shape[0],) + tuple(data_shape)), batch.labels


def _flat(tree):
    """A pytree of arrays (one latent) as one vector."""
    return jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree.leaves(tree)])


def latent_variables(model, params, data_shape, condition=None) -> dict[str, int] | None:
    """{name: size} of the latent variables of a hierarchical posterior (whose mean is a
    pytree of several arrays, e.g. {"z1": (100,), "z2": (50,)}), in `_flat`'s order; None
    for a single latent vector."""
    mean = jax.eval_shape(lambda x: objectives.model_functions(model, params, condition)[0](x).mean(),
                          jax.ShapeDtypeStruct(tuple(data_shape), jnp.float32))
    leaves = jax.tree_util.tree_leaves_with_path(mean)
    if len(leaves) < 2:
        return None
    return {jax.tree_util.keystr(path, simple=True, separator="/"): math.prod(leaf.shape)
            for path, leaf in leaves}


def elbo_metrics(model, params, data, key, *, data_shape, preprocessing, batch_size,
                 threshold=0.01):
    """ELBO-based metrics over all of `data` (`Examples`, or images (N, H, W, C) uint8), one
    posterior sample each. For a conditional model (`data` carries labels), the bounds of
    log p(x|y).

    Returns a dict of device scalars/vectors:
      neg_elbo, rate (KL), distortion (-E_q log p(x|z)): means over examples, nats;
      kl_per_dim (Z,): mean KL of each latent dimension, nats (only where q and p have a
        per-dimension closed form);
      posterior_mean_variance (Z,): Cov_x(E_q[z_d]) across examples (Burda et al. 2015);
      active_units: how many dimensions have that variance above `threshold`;
      active_units_by_variable: {name: count} for a hierarchical posterior (see
        `latent_variables`), the same count per latent variable.
    """
    examples = data_lib.as_examples(data)
    n = examples.num_examples
    idx, mask = data_lib.padded_batch_indices(n, min(batch_size, n))
    binarize_key, noise_key = _example_streams(key)

    def per_example(i, x, condition):
        encode, decode, prior = objectives.model_functions(model, params, condition)
        value, aux = objectives.elbo(jax.random.fold_in(noise_key, i), x, encode, decode,
                                     likelihood=_log_likelihood(preprocessing), prior=prior)
        mean = _flat(encode(x).mean())
        parts = {"value": value, "kl": aux["kl"], "rec": aux["reconstruction"], "mean": mean,
                 "mean2": mean**2}
        if "kl_per_dim" in aux:
            parts["kl_per_dim"] = aux["kl_per_dim"]
        return parts

    def body(carry, batch):
        idx_B, mask_B = batch
        x, condition = _inputs(binarize_key, examples, idx_B, preprocessing, data_shape)
        parts = jax.vmap(per_example)(idx_B, x, condition)
        w = mask_B.astype(jnp.float32)
        sums = {k: jnp.sum(w.reshape(w.shape + (1,) * (v.ndim - 1)) * v, 0) for k, v in parts.items()}
        return jax.tree.map(jnp.add, carry, sums), None

    condition = None if examples.labels is None else examples.labels[0]
    shapes = jax.eval_shape(per_example, 0, jax.ShapeDtypeStruct(tuple(data_shape), jnp.float32),
                            condition)
    init = jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), shapes)
    sums, _ = jax.lax.scan(body, init, (idx, mask))
    variance = sums["mean2"] / n - (sums["mean"] / n) ** 2
    out = {
        "neg_elbo": -sums["value"] / n,
        "rate": sums["kl"] / n,
        "distortion": -sums["rec"] / n,
        "posterior_mean_variance": variance,
        "active_units": jnp.sum(variance > threshold),
    }
    if "kl_per_dim" in sums:
        out["kl_per_dim"] = sums["kl_per_dim"] / n
    variables = latent_variables(model, params, data_shape, condition)
    if variables is not None:
        active, start = {}, 0
        for name, size in variables.items():
            active[name] = jnp.sum(variance[start:start + size] > threshold)
            start += size
        out["active_units_by_variable"] = active
    return out


def iwae_batch_log_px(model, params, key, data, idx_B, *, data_shape, preprocessing,
                      num_samples, chunk_size):
    """IWAE estimate of log p(x) for the examples `idx_B` (B,) of `data` (`Examples` or
    images): (B,), nats; log p(x|y) for a conditional model (`data` carries labels).

    Pure: vmap it over (params, key) to evaluate many models at once. K = `num_samples`
    draws per example in `num_samples // chunk_size` sequential chunks (memory ~ chunk x B
    x D floats), combined with logsumexp. Example i's chunk c uses fold_in(fold_in(k, i), c).
    """
    num_chunks = num_samples // chunk_size
    binarize_key, noise_key = _example_streams(key)
    x, condition = _inputs(binarize_key, data_lib.as_examples(data), idx_B, preprocessing, data_shape)

    def chunk(c):
        def one(i, x_i, condition_i):
            encode, decode, prior = objectives.model_functions(model, params, condition_i)
            k = jax.random.fold_in(jax.random.fold_in(noise_key, i), c)
            log_w = objectives.iwae_log_weights(
                k, x_i, encode, decode, likelihood=_log_likelihood(preprocessing),
                num_samples=chunk_size, prior=prior)
            return jax.nn.logsumexp(log_w)
        return jax.vmap(one)(idx_B, x, condition)

    per_chunk = jax.lax.map(chunk, jnp.arange(num_chunks))  # (C, B)
    return jax.nn.logsumexp(per_chunk, axis=0) - math.log(num_samples)


def _compiled_once(fn, static_argnames, model_axes):
    """`fn(model, *args, **settings)` jitted once per (model, settings, shapes) and reused by
    every later call in the process, and the same vmapped over a leading axis of M models
    in the `args` that `model_axes` marks (a sweep group). `model` must be hashable."""
    def over_models(model, *args, **settings):
        return jax.vmap(functools.partial(fn, model, **settings), in_axes=model_axes)(*args)

    jit = functools.partial(jax.jit, static_argnums=0, static_argnames=static_argnames)
    return jit(fn), jit(over_models)


_elbo_metrics, _elbo_metrics_stacked = _compiled_once(
    elbo_metrics, ("data_shape", "preprocessing", "batch_size", "threshold"), (0, None, 0))
_iwae_batch, _iwae_batch_stacked = _compiled_once(
    iwae_batch_log_px, ("data_shape", "preprocessing", "num_samples", "chunk_size"),
    (0, 0, None, None))


def validation_metrics(program, params, hyper, data):
    """Negative ELBO, rate and distortion of one member on `data` (`Examples` or images; nats
    per example): a pure function, vmapped over the members of a group."""
    m = elbo_metrics(program.model, params, data, run_keys(hyper["seed"]).eval,
                     data_shape=program.data_shape, preprocessing=program.preprocessing,
                     batch_size=program.eval_batch_size)
    return {"neg_elbo": m["neg_elbo"], "rate": m["rate"], "distortion": m["distortion"]}


def iwae_log_likelihood(model, params, data, key, *, data_shape, preprocessing,
                        num_samples, chunk_size, batch_size, progress=None, stacked=False,
                        partial_file=None, save_every: float = 60.0):
    """IWAE estimate of log p(x) for every example of `data` (`Examples` or images): (N,)
    numpy, nats.

    `batch_size` examples at a time (see `iwae_batch_log_px`); `chunk_size` is lowered to a
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
    fn = functools.partial(_iwae_batch_stacked if stacked else _iwae_batch, model,
                           data_shape=tuple(data_shape), preprocessing=preprocessing,
                           num_samples=num_samples, chunk_size=chunk_size)
    fingerprint = None
    out = []
    if partial_file is not None:
        fingerprint = _fingerprint(params, key, n=n, batch_size=batch_size,
                                   num_samples=num_samples, chunk_size=chunk_size)
        out = _load_partial(partial_file, fingerprint)
        if out and progress is not None:
            progress(sum(a.shape[-1] for a in out))
    last_save = time.perf_counter()
    for b in range(len(out), idx.shape[0]):
        keep = np.asarray(mask[b])
        out.append(np.asarray(fn(params, key, data, idx[b]))[..., keep])
        if partial_file is not None and time.perf_counter() - last_save >= save_every:
            _save_partial(partial_file, fingerprint, out)
            last_save = time.perf_counter()
        if progress is not None:
            progress(int(keep.sum()))
    if partial_file is not None:
        pathlib.Path(partial_file).unlink(missing_ok=True)
    return np.concatenate(out, axis=-1)


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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, fingerprint=np.asarray(fingerprint), batches=np.asarray(len(batches)),
                 **{f"batch_{i}": a for i, a in enumerate(batches)})
    os.replace(tmp, path)


class ProgressLines:
    """tqdm's `update`/`close` for a log that is not a terminal: a line at most every
    `vaejax.loop.PROGRESS_INTERVAL` seconds, with the rate and the time left. The rate counts
    from the first update, so that the examples a resumed evaluation restored at once (its
    first update) do not inflate it."""

    def __init__(self, label: str, total: int, *, log=print):
        self.label, self.total, self.log = label, total, log
        self.done, self._last = 0, time.perf_counter()
        self._first = None  # (time, examples done) at the first update

    def update(self, n: int) -> None:
        from vaejax.loop import PROGRESS_INTERVAL, duration  # noqa: PLC0415  (loop imports us)

        self.done += int(n)
        now = time.perf_counter()
        if self._first is None:
            self._first = (now, self.done)
            return
        if now - self._last < PROGRESS_INTERVAL or self.done >= self.total:
            return
        self._last = now
        rate = max(self.done - self._first[1], 1) / max(now - self._first[0], 1e-9)
        self.log(f"{self.label}: {self.done:,}/{self.total:,} examples "
                 f"({100 * self.done // self.total}%), {rate:,.1f} examples/s, done in "
                 f"{duration((self.total - self.done) / rate)}")

    def close(self) -> None:
        pass


def test_metrics(program, params, hyper, test_data, eval_config, *, log=print,
                 partial_file=None):
    """The results.json numbers for `params` on `test_data` (`Examples` or images): a dict.

    With `params` and `hyper` stacked along a leading axis of M models (a sweep group), both
    programs are vmapped over the models and a list of M dicts is returned; each equals the
    model's own evaluation up to float rounding (the per-example keys are the same). The IWAE
    batch is then `eval.iwae_batch_size // M` examples, so memory stays that of one model.
    With `partial_file`, an interrupted IWAE evaluation continues where it stopped
    (`iwae_log_likelihood`).
    """
    from tqdm.auto import tqdm  # noqa: PLC0415

    test_data = data_lib.as_examples(test_data)
    if eval_config.num_test_examples > 0:
        test_data = test_data.take(slice(None, eval_config.num_test_examples))
    stacked = jnp.ndim(hyper["seed"]) == 1
    members = int(hyper["seed"].shape[0]) if stacked else 1
    eval_key = lambda seed: run_keys(seed).eval  # noqa: E731
    keys = jax.vmap(eval_key)(hyper["seed"]) if stacked else eval_key(hyper["seed"])
    start = time.perf_counter()
    elbo_fn = _elbo_metrics_stacked if stacked else _elbo_metrics
    m = jax.device_get(elbo_fn(
        program.model, params, test_data, keys, data_shape=program.data_shape,
        preprocessing=program.preprocessing, batch_size=eval_config.batch_size,
        threshold=eval_config.active_unit_threshold))
    k = eval_config.iwae_samples
    log_px, iwae_time = None, None
    if k > 0:
        if sys.stderr.isatty():
            bar = tqdm(total=test_data.num_examples, desc=f"eval IWAE K={k}", unit="ex",
                       dynamic_ncols=True)
        else:  # a log file: lines, not a bar redrawn with carriage returns into one line
            bar = ProgressLines(f"eval IWAE K={k}", test_data.num_examples, log=log)
        iwae_start = time.perf_counter()
        log_px = iwae_log_likelihood(
            program.model, params, test_data, keys, data_shape=program.data_shape,
            preprocessing=program.preprocessing, num_samples=k,
            chunk_size=min(eval_config.iwae_chunk, k),
            batch_size=max(1, eval_config.iwae_batch_size // members), progress=bar.update,
            stacked=stacked, partial_file=partial_file)
        bar.close()
        iwae_time = time.perf_counter() - iwae_start
    eval_time = time.perf_counter() - start

    def member(i):
        pick = (lambda v: v[i]) if stacked else (lambda v: v)
        results = {
            "test/neg_elbo": float(pick(m["neg_elbo"])),
            "test/rate": float(pick(m["rate"])),
            "test/distortion": float(pick(m["distortion"])),
            "posterior_mean_variance": [float(v) for v in pick(m["posterior_mean_variance"])],
            "active_units": int(pick(m["active_units"])),
            "latent_dim": int(pick(m["posterior_mean_variance"]).shape[-1]),
            "num_test_examples": test_data.num_examples,
        }
        if "active_units_by_variable" in m:
            results["active_units_by_variable"] = {
                name: int(pick(v)) for name, v in m["active_units_by_variable"].items()}
        if "kl_per_dim" in m:
            results["kl_per_dim"] = [float(v) for v in pick(m["kl_per_dim"])]
        if log_px is not None:
            lp = pick(log_px)
            results["test/nll"] = float(-np.mean(lp))
            results["test/nll_stderr"] = float(np.std(lp) / np.sqrt(lp.size))
            results["iwae_samples"] = k
            results["iwae_time"] = iwae_time
        results["eval_time"] = eval_time
        return results

    return [member(i) for i in range(members)] if stacked else member(0)


def finish_member(workdir, program, params, hyper, results, test_data, config, *, epoch=None,
                  log=print, name=None) -> dict:
    """Writes one model's evaluation into its workdir: figures first, then results.json (with
    the epoch and step of the metrics it belongs to, and the names of the figures), so a run
    counts as finished (`records.evaluated`) only when both exist: a kill while the figures
    are drawn leaves a run that the next `train --resume` or `sweep` evaluates again."""
    workdir = pathlib.Path(workdir)
    results = dict(results)
    last = records.last_metrics(workdir)
    if last is not None:
        results["epoch"] = last["epoch"] if epoch is None else epoch
        results["step"] = last["step"]
    summary = ", ".join(f"{k} {results[k]:.2f}" for k in
                        ("test/neg_elbo", "test/nll", "test/rate", "test/distortion") if k in results)
    log(f"eval: {name + ': ' if name else ''}{summary}, active units {results['active_units']}/"
        f"{results['latent_dim']} -> {workdir / records.RESULTS}")
    paths = []
    if config.eval.figures:
        paths = figures.draw_figures(workdir, program, params, hyper, test_data, log=log)
        results["figures"] = sorted(p.name for p in paths)
    events.write_results(workdir, results.get("epoch", 0), results, paths)
    records.set_aside_if_damaged(workdir / records.RESULTS, log=log)
    records.write_json(workdir / records.RESULTS, results)  # last: the run is complete
    return results


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
    records.read_run_record(workdir)  # a clear error if `workdir` is not a run
    with locking.hold(workdir, "vaejax eval"):
        run = runs.load_run(workdir, config=config, log=log)
        results = test_metrics(run.program, run.params, run.hyper, run.splits.test,
                               run.config.eval, log=log, partial_file=partial_eval_file(workdir))
        return finish_member(workdir, run.program, run.params, run.hyper, results,
                             run.splits.test, run.config, epoch=run.epoch, log=log)
