"""The disentanglement metrics of a trained run (`eval.disentanglement = True`), for a dataset
with ground-truth factors that covers its whole factor grid (dsprites, squares).

The representation is the posterior mean of each image (`model.posterior(params, x).mean()`),
as in Locatello et al. (2019). Every random draw comes from `seed`, the run's seed:

- MIG, SAP, DCI and modularity/explicitness score `num_examples` images drawn uniformly from
  the grid (the first half trains the classifiers of SAP, DCI and explicitness, the second
  half tests them; MIG and modularity use the first half, as disentanglement_lib does);
- the BetaVAE and FactorVAE scores draw their batches with one factor held fixed from the
  grid: `num_examples` training points and half as many evaluation points, batch 64.

An image is looked up by its factor values in the union of the run's train, validation and
test splits (together, the grid: `Splits.grid`, which `load_splits` builds and checks before
anything is written when `eval.disentanglement` is on). Results: `disentanglement/<metric>` in results.json, all in
[0, 1] but modularity and explicitness (also in [0, 1]) and DCI's informativeness (accuracy);
`disentanglement_time`, the seconds of it all (encoding the sample included), and
`disentanglement_metric_time`, each metric's seconds (the BetaVAE and FactorVAE scores' own
encoding included).
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from vaejax import config as config_lib
from vaejax import disentanglement as metrics
from vaejax.data.grid_lookup import GridLookup

BATCH = 64  # the BetaVAE and FactorVAE scores' batch, disentanglement_lib's


DEFAULTS = {"disentanglement_examples": 10_000}


def check_settings(eval_config) -> None:
    """Refuses `eval.disentanglement_examples` set while `eval.disentanglement` is off."""
    config_lib.refuse_unread(eval_config, DEFAULTS, read=eval_config.get("disentanglement", False),
                             only_with="eval.disentanglement = True")


def encoder_means(program):
    """A jitted function (params, images (N, ...) uint8) -> posterior means (N, L) float32.
    The preprocessing's key is fixed: for binary pixels (0 and 255) every preprocessing of
    the data layer is deterministic."""
    @jax.jit
    def means(params, images):
        x = program.inputs(jax.random.key(0), images)
        return jax.vmap(lambda x_i: program.model.posterior(params, x_i).mean())(x)
    return means


def factor_latents(codes, factors, *, num_bins: int = metrics.NUM_BINS) -> np.ndarray:
    """For each factor, the code dimension that tells most about it: the argmax over
    dimensions of their mutual information, binned as MIG bins (`disentanglement.discretize`).
    codes (N, L) float, factors (N, F) int -> (F,) int."""
    codes, factors = np.asarray(codes), np.asarray(factors)
    mi = metrics.mutual_info_matrix(metrics.discretize(codes, num_bins), factors)  # (L, F)
    return np.argmax(mi, axis=0)


def _codes_of(program, params, lookup: GridLookup):
    """factors [N, F] -> the posterior means [N, L] of their images, 1,024 at a time."""
    means = encoder_means(program)

    def codes_of(factors):
        out = [np.asarray(means(params, lookup.images(factors[i:i + 1024])))
               for i in range(0, len(factors), 1024)]
        return np.concatenate(out)
    return codes_of


def sample_codes(program, params, lookup: GridLookup, *, seed: int, num_examples: int):
    """(codes [N, L], factors [N, F]): N = `num_examples` points drawn uniformly from the grid
    with `seed`, and the posterior means of their images: what MIG, SAP, DCI and
    modularity/explicitness score, and what `figures.draw_factor_traversals` draws from."""
    rng = np.random.default_rng(seed)
    factors = np.stack([rng.integers(0, s, num_examples) for s in lookup.sizes], axis=1)
    return _codes_of(program, params, lookup)(factors), factors


def evaluate(program, params, lookup: GridLookup, *, seed: int, num_examples: int,
             log=print, sample=None) -> dict:
    """results.json's `disentanglement/*` fields of one model (see the module docstring);
    `lookup` is the run's `Splits.grid`; `sample`: `sample_codes` of the same arguments, when
    the caller has drawn it already."""
    start = time.perf_counter()
    codes_of = _codes_of(program, params, lookup)
    codes, factors = sample if sample is not None else sample_codes(
        program, params, lookup, seed=seed, num_examples=num_examples)
    half = num_examples // 2
    train = (codes[:half], factors[:half])
    test = (codes[half:], factors[half:])
    log(f"eval: disentanglement metrics on {num_examples:,} images of the {lookup.sizes} grid")
    scores = dict(seed=seed, batch_size=BATCH, num_train=num_examples, num_eval=half)
    metric_calls = {  # name -> its fields, computed when called
        "mig": lambda: {"mig": metrics.mig(*train)},
        "sap": lambda: {"sap": metrics.sap(*train, *test)},
        "dci": lambda: {f"dci_{k}": v for k, v in metrics.dci(*train, *test, seed=seed).items()},
        "modularity_explicitness": lambda: metrics.modularity_explicitness(*train, *test),
        "beta_vae_score": lambda: {f"beta_vae_{k}": v for k, v in metrics.beta_vae_score(
            codes_of, lookup.sizes, **scores).items()},
        "factor_vae_score": lambda: {f"factor_vae_{k}": v for k, v in metrics.factor_vae_score(
            codes_of, lookup.sizes, **scores).items()},
    }
    out, seconds = {}, {}
    for name, call in metric_calls.items():
        metric_start = time.perf_counter()
        out.update({f"disentanglement/{k}": float(v) for k, v in call().items()})
        seconds[name] = time.perf_counter() - metric_start
        log(f"eval: {name} in {seconds[name]:.1f} s")
    out["disentanglement_time"] = time.perf_counter() - start
    out["disentanglement_metric_time"] = seconds
    return out
