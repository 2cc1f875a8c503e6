"""Evaluation: test negative ELBO, IWAE estimate of the negative log-likelihood, active
units, KL per latent dimension, rate and distortion. All values in nats per example.

Each test example gets its own keys, folded from the run's eval key and the example's
index, so results do not depend on the batch or chunk sizes used to compute them. The
same binarization of each test image is used by every metric.
"""

from __future__ import annotations

import functools
import math
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from vaejax import data as data_lib
from vaejax import distributions, objectives


BINARY_PREPROCESSING = ("dynamic_binarize", "threshold")


def eval_likelihood(likelihood, preprocessing):
    """The log-likelihood evaluation uses: the single-pass binary Bernoulli form when the
    preprocessing makes x binary (the same values, faster for IWAE), else `likelihood`."""
    if likelihood == "bernoulli" and preprocessing in BINARY_PREPROCESSING:
        return distributions.bernoulli_log_prob_binary
    return likelihood


def _example_streams(key):
    """Keys for the test-time binarization and for the posterior samples."""
    binarize_key, noise_key = jax.random.split(key)
    return binarize_key, noise_key


def _inputs(binarize_key, images_uint8, idx_B, preprocessing, data_shape):
    """Preprocessed examples `idx_B` (B,), each binarized with its own key, in the model's
    input shape: (B,) + data_shape (an MLP takes flat vectors, see `train.model_data_shape`)."""
    keys = jax.vmap(jax.random.fold_in, (None, 0))(binarize_key, idx_B)
    x = jax.vmap(functools.partial(data_lib.preprocess, kind=preprocessing))(
        keys, images_uint8[idx_B])
    return x.reshape((x.shape[0],) + tuple(data_shape))


def elbo_metrics(vae, params, images_uint8, key, *, likelihood, preprocessing, batch_size,
                 threshold=0.01):
    """ELBO-based metrics over all of `images_uint8` (N, H, W, C), one posterior sample each.

    Returns a dict of device scalars/vectors:
      neg_elbo, rate (KL), distortion (-E_q log p(x|z)): means over examples, nats;
      kl_per_dim (Z,): mean KL of each latent dimension, nats;
      posterior_mean_variance (Z,): Cov_x(E_q[z_d]) across examples (Burda et al. 2015);
      active_units: how many dimensions have that variance above `threshold`.
    """
    n = images_uint8.shape[0]
    idx, mask = data_lib.padded_batch_indices(n, min(batch_size, n))
    binarize_key, noise_key = _example_streams(key)
    encode = functools.partial(vae.encode, params)
    decode = functools.partial(vae.decode, params)
    latent_dim = vae.latent_dim

    def per_example(i, x):
        value, aux = objectives.elbo(jax.random.fold_in(noise_key, i), x, encode, decode,
                                     likelihood=eval_likelihood(likelihood, preprocessing))
        mean, _ = encode(x)
        return value, aux["kl"], aux["reconstruction"], aux["kl_per_dim"], mean

    def body(carry, batch):
        idx_B, mask_B = batch
        x = _inputs(binarize_key, images_uint8, idx_B, preprocessing, vae.data_shape)
        value, kl, rec, kl_dims, mean = jax.vmap(per_example)(idx_B, x)
        w = mask_B.astype(jnp.float32)
        wz = w[:, None]
        sums = (jnp.sum(w * value), jnp.sum(w * kl), jnp.sum(w * rec),
                jnp.sum(wz * kl_dims, 0), jnp.sum(wz * mean, 0), jnp.sum(wz * mean**2, 0))
        return jax.tree.map(jnp.add, carry, sums), None

    zeros = jnp.zeros((latent_dim,), jnp.float32)
    init = (jnp.float32(0), jnp.float32(0), jnp.float32(0), zeros, zeros, zeros)
    (value, kl, rec, kl_dims, m1, m2), _ = jax.lax.scan(body, init, (idx, mask))
    variance = m2 / n - (m1 / n) ** 2
    return {
        "neg_elbo": -value / n,
        "rate": kl / n,
        "distortion": -rec / n,
        "kl_per_dim": kl_dims / n,
        "posterior_mean_variance": variance,
        "active_units": jnp.sum(variance > threshold),
    }


def iwae_batch_log_px(vae, params, key, images_uint8, idx_B, *, likelihood, preprocessing,
                      num_samples, chunk_size):
    """IWAE estimate of log p(x) for the examples `idx_B` (B,) of `images_uint8`: (B,), nats.

    Pure: vmap it over (params, key) to evaluate many models at once. K = `num_samples`
    draws per example in `num_samples // chunk_size` sequential chunks (memory ~ chunk x B
    x D floats), combined with logsumexp. Example i's chunk c uses fold_in(fold_in(k, i), c).
    """
    num_chunks = num_samples // chunk_size
    binarize_key, noise_key = _example_streams(key)
    x = _inputs(binarize_key, images_uint8, idx_B, preprocessing, vae.data_shape)
    encode = functools.partial(vae.encode, params)
    decode = functools.partial(vae.decode, params)

    def chunk(c):
        def one(i, x_i):
            k = jax.random.fold_in(jax.random.fold_in(noise_key, i), c)
            log_w = objectives.iwae_log_weights(
                k, x_i, encode, decode, likelihood=eval_likelihood(likelihood, preprocessing),
                num_samples=chunk_size)
            return jax.nn.logsumexp(log_w)
        return jax.vmap(one)(idx_B, x)

    per_chunk = jax.lax.map(chunk, jnp.arange(num_chunks))  # (C, B)
    return jax.nn.logsumexp(per_chunk, axis=0) - math.log(num_samples)


def _compiled_once(fn, static_argnames, model_axes):
    """`fn(vae, *args, **settings)` jitted once per (vae, settings, shapes) and reused by
    every later call in the process, and the same vmapped over a leading axis of M models
    in the `args` that `model_axes` marks (a sweep group). `vae` must be hashable."""
    def over_models(vae, *args, **settings):
        return jax.vmap(functools.partial(fn, vae, **settings), in_axes=model_axes)(*args)

    jit = functools.partial(jax.jit, static_argnums=0, static_argnames=static_argnames)
    return jit(fn), jit(over_models)


_elbo_metrics, _elbo_metrics_stacked = _compiled_once(
    elbo_metrics, ("likelihood", "preprocessing", "batch_size", "threshold"), (0, None, 0))
_iwae_batch, _iwae_batch_stacked = _compiled_once(
    iwae_batch_log_px, ("likelihood", "preprocessing", "num_samples", "chunk_size"),
    (0, 0, None, None))


def iwae_log_likelihood(vae, params, images_uint8, key, *, likelihood, preprocessing,
                        num_samples, chunk_size, batch_size, progress=None, stacked=False):
    """IWAE estimate of log p(x) for every example of `images_uint8`: (N,) numpy, nats.

    `batch_size` examples at a time (see `iwae_batch_log_px`); `chunk_size` is lowered to a
    divisor of `num_samples` if needed. With `stacked=True`, `params` and `key` carry a
    leading axis of M models (a sweep group) and the result is (M, N).
    `progress(n)` is called after each batch with the number of examples done.
    The program is compiled once per (vae, settings, shapes), so `vae` must be hashable
    (vaejax's `VAE` is: a frozen dataclass).
    """
    if num_samples % chunk_size:
        chunk_size = math.gcd(num_samples, chunk_size)
    n = images_uint8.shape[0]
    idx, mask = data_lib.padded_batch_indices(n, min(batch_size, n))
    fn = functools.partial(_iwae_batch_stacked if stacked else _iwae_batch, vae,
                           likelihood=likelihood, preprocessing=preprocessing,
                           num_samples=num_samples, chunk_size=chunk_size)
    out = []
    for b in range(idx.shape[0]):
        keep = np.asarray(mask[b])
        out.append(np.asarray(fn(params, key, images_uint8, idx[b]))[..., keep])
        if progress is not None:
            progress(int(keep.sum()))
    return np.concatenate(out, axis=-1)


def test_metrics(program, params, hyper, test_uint8, eval_config, *, log=print):
    """The results.json numbers for `params` on `test_uint8`: a dict.

    With `params` and `hyper` stacked along a leading axis of M models (a sweep group), both
    programs are vmapped over the models and a list of M dicts is returned; each equals the
    model's own evaluation up to float rounding (the per-example keys are the same). The IWAE
    batch is then `eval.iwae_batch_size // M` examples, so memory stays that of one model.
    """
    from tqdm.auto import tqdm  # noqa: PLC0415

    from vaejax.train import run_keys  # noqa: PLC0415

    if eval_config.num_test_examples > 0:
        test_uint8 = test_uint8[: eval_config.num_test_examples]
    stacked = jnp.ndim(hyper.seed) == 1
    members = int(hyper.seed.shape[0]) if stacked else 1
    eval_key = lambda seed: run_keys(seed).eval  # noqa: E731
    keys = jax.vmap(eval_key)(hyper.seed) if stacked else eval_key(hyper.seed)
    start = time.perf_counter()
    elbo_fn = _elbo_metrics_stacked if stacked else _elbo_metrics
    m = jax.device_get(elbo_fn(
        program.vae, params, test_uint8, keys, likelihood=program.likelihood,
        preprocessing=program.preprocessing, batch_size=eval_config.batch_size,
        threshold=eval_config.active_unit_threshold))
    k = eval_config.iwae_samples
    log_px, iwae_time = None, None
    if k > 0:
        bar = tqdm(total=int(test_uint8.shape[0]), desc=f"eval IWAE K={k}", unit="ex",
                   dynamic_ncols=True)
        iwae_start = time.perf_counter()
        log_px = iwae_log_likelihood(
            program.vae, params, test_uint8, keys, likelihood=program.likelihood,
            preprocessing=program.preprocessing, num_samples=k,
            chunk_size=min(eval_config.iwae_chunk, k),
            batch_size=max(1, eval_config.iwae_batch_size // members), progress=bar.update,
            stacked=stacked)
        bar.close()
        iwae_time = time.perf_counter() - iwae_start
    eval_time = time.perf_counter() - start

    def member(i):
        pick = (lambda v: v[i]) if stacked else (lambda v: v)
        results = {
            "test/neg_elbo": float(pick(m["neg_elbo"])),
            "test/rate": float(pick(m["rate"])),
            "test/distortion": float(pick(m["distortion"])),
            "kl_per_dim": [float(v) for v in pick(m["kl_per_dim"])],
            "posterior_mean_variance": [float(v) for v in pick(m["posterior_mean_variance"])],
            "active_units": int(pick(m["active_units"])),
            "latent_dim": program.vae.latent_dim,
            "num_test_examples": int(test_uint8.shape[0]),
        }
        if log_px is not None:
            lp = pick(log_px)
            results["test/nll"] = float(-np.mean(lp))
            results["test/nll_stderr"] = float(np.std(lp) / np.sqrt(lp.size))
            results["iwae_samples"] = k
            results["iwae_time"] = iwae_time
        results["eval_time"] = eval_time
        return results

    return [member(i) for i in range(members)] if stacked else member(0)


def evaluate_run(workdir, *, config=None, params=None, program=None, splits=None, log=print):
    """Evaluates the latest checkpoint of `workdir`; writes results.json and the figures.

    The optional arguments let `train` pass what it already holds; `vaejax eval` passes none.
    """
    from vaejax import records, sample  # noqa: PLC0415
    from vaejax import train as train_lib  # noqa: PLC0415

    workdir = pathlib.Path(workdir)
    if config is None:
        config = records.run_config(workdir)
    if splits is None:
        splits = train_lib.load_splits(config, log=log)
    if program is None:
        program = train_lib.TrainProgram.build(config, splits.train.shape[1:], splits.train.shape[0])
    hyper = train_lib.Hyper.from_config(config)
    epoch = None
    if params is None:
        params, epoch = train_lib.restore_params(workdir, program, hyper)
    results = test_metrics(program, params, hyper, splits.test, config.eval, log=log)
    last = records.last_metrics(workdir)
    if last is not None:
        results["epoch"] = last["epoch"] if epoch is None else epoch
        results["step"] = last["step"]
    records.write_json(workdir / records.RESULTS, results)
    summary = ", ".join(f"{k} {results[k]:.2f}" for k in
                        ("test/neg_elbo", "test/nll", "test/rate", "test/distortion") if k in results)
    log(f"eval: {summary}, active units {results['active_units']}/{program.vae.latent_dim} "
        f"-> {workdir / records.RESULTS}")
    if config.eval.figures:
        sample.draw_figures(workdir, program, params, hyper, splits.test, log=log)
    return results
