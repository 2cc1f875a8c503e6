"""A run's likelihood beyond IWAE: AIS on a subset of the test set, and the split of its
inference gap (`eval.ais_steps`, `eval.gap_steps`; see `vaejax.ais` and
`vaejax.inference_gap`).

    vaejax eval --workdir runs/x --config.eval.ais_steps=1000 --config.eval.ais_chains=16 \\
        --config.eval.ais_num_examples=100 --config.eval.gap_steps=500

adds to results.json, all in nats per example over the first `eval.ais_num_examples` test
examples:

    test/ais_nll, test/ais_nll_stderr   −log p(x) by AIS from q(z|x) (a stochastic upper bound
                                        on the NLL, in expectation), ± its standard error
    test/iwae_nll_subset                the IWAE NLL of the same examples, for comparison
    test/gap_inference                  log p(x) − ELBO(q_φ(x)), with log p(x) from AIS
    test/gap_approximation              log p(x) − ELBO(q*)      (q*: `optimize_local_posterior`)
    test/gap_amortization               ELBO(q*) − ELBO(q_φ(x))

and with `eval.bdmc_examples` = M, bidirectional Monte Carlo on M examples simulated from the
model, with the same steps and chains (forward AIS from the prior, reverse from the simulated
latent): `bdmc/lower`, `bdmc/upper` (means of the bounds on log p(x)) and `bdmc/gap` (their
mean difference, which bounds the error of AIS at these settings on the model's own data).

Each example has its own keys (folded from the run's evaluation key), so an evaluation
interrupted by a kill continues from its saved batches (<workdir>/eval.ais.partial.npz) with
the same result.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from vaejax import config as config_lib
from vaejax import objectives
from vaejax.ais import ais_log_prob, bdmc
from vaejax.inference_gap import optimize_local_posterior
from vaejax.metrics import example_inputs, example_streams

AIS_STREAM, GAP_STREAM = 1_000_003, 1_000_033  # fold_in tags: apart from IWAE's chunk indices
GAP_ELBO_SAMPLES = 1000  # draws of each ELBO of the gap split


def ais_batch(model, params, key, data, idx_B, *, data_shape, preprocessing, num_steps,
              num_chains, gap_steps):
    """For the examples `idx_B` (B,) of `data`: log p(x) by AIS started at q(z|x), and with
    `gap_steps` > 0 the ELBO of q(z|x) and of the local optimum q*: an array (1 or 3, B)."""
    binarize_key, noise_key = example_streams(key)
    x, condition = example_inputs(binarize_key, data, idx_B, preprocessing, data_shape)

    def one(i, x_i, condition_i):
        encode, decode, prior = objectives.model_functions(model, params, condition_i)
        q = encode(x_i)
        ais_key = jax.random.fold_in(jax.random.fold_in(noise_key, i), AIS_STREAM)
        log_px = ais_log_prob(ais_key, x_i, decode, prior=prior, num_steps=num_steps,
                              num_chains=num_chains, initial=q)
        if not gap_steps:
            return log_px[None]
        gap_key = jax.random.fold_in(jax.random.fold_in(noise_key, i), GAP_STREAM)
        encoder_key, local_key = jax.random.split(gap_key)
        elbo_encoder, _ = objectives.elbo(encoder_key, x_i, lambda _: q, decode, prior=prior,
                                          num_samples=GAP_ELBO_SAMPLES)
        _, elbo_local = optimize_local_posterior(
            local_key, x_i, decode, prior=prior, init=(q.loc, q.logvar), num_steps=gap_steps,
            eval_samples=GAP_ELBO_SAMPLES)
        return jnp.stack([log_px, elbo_encoder, elbo_local])

    return jax.vmap(one, out_axes=1)(idx_B, x, condition)


compiled_ais_batch = functools.partial(
    jax.jit, static_argnums=0,
    static_argnames=("data_shape", "preprocessing", "num_steps", "num_chains", "gap_steps"))(ais_batch)


DEFAULTS = {"ais_chains": 16, "ais_num_examples": 100, "ais_batch_size": 10, "gap_steps": 0,
            "bdmc_examples": 0}
BDMC_STREAM = 1_000_037


def bdmc_batch(model, params, key, idx_B, *, num_steps, num_chains):
    """BDMC on the simulated examples `idx_B` (B,), each from its own key: (2, B), the lower
    and upper bounds on log p(x) of each, nats."""
    _, decode, prior = objectives.model_functions(model, params)

    def one(i):
        k = jax.random.fold_in(jax.random.fold_in(key, BDMC_STREAM), i)
        _, lower, upper = bdmc(k, decode, prior=prior, num_steps=num_steps, num_chains=num_chains)
        return jnp.stack([lower, upper])

    return jax.vmap(one, out_axes=1)(idx_B)


compiled_bdmc_batch = functools.partial(
    jax.jit, static_argnums=0, static_argnames=("num_steps", "num_chains"))(bdmc_batch)


def bdmc_results(bounds: np.ndarray) -> dict:
    """results.json's BDMC fields from `bdmc_batch`'s (2, M) bounds."""
    lower, upper = bounds
    return {"bdmc/lower": float(np.mean(lower)), "bdmc/upper": float(np.mean(upper)),
            "bdmc/gap": float(np.mean(upper - lower)), "bdmc_examples": int(lower.shape[0])}


def check_settings(eval_config) -> None:
    """Refuses AIS settings that nothing reads: any of them set away from its default while
    `eval.ais_steps` is 0 (the gap split needs AIS's log p(x) too)."""
    config_lib.refuse_unread(eval_config, DEFAULTS, read=eval_config.get("ais_steps", 0) > 0,
                             only_with="eval.ais_steps > 0 (AIS; the gap split uses its log p(x))")


def check_model(model, params, data_shape, gap_steps: int) -> None:
    """The gap split optimizes q's (loc, logvar): a model whose posterior is not a diagonal
    Gaussian (a flow, a chain of layers) is refused before the evaluation starts."""
    if not gap_steps:
        return
    q = jax.eval_shape(lambda x: objectives.model_functions(model, params)[0](x),
                       jax.ShapeDtypeStruct(tuple(data_shape), jnp.float32))
    if not (hasattr(q, "loc") and hasattr(q, "logvar")):
        raise ValueError(
            f"eval.gap_steps={gap_steps}: the gap split optimizes a diagonal Gaussian's "
            f"(loc, logvar), and this model's posterior is a {type(q).__name__}. Set "
            "eval.gap_steps=0 (AIS alone works for any model).")


def results(values: np.ndarray, iwae_log_px: np.ndarray | None, *, steps, chains, gap_steps) -> dict:
    """results.json's fields from `ais_batch`'s values (1 or 3, N) and the IWAE log p(x) of
    the test set (or None)."""
    log_px = values[0]
    n = log_px.shape[0]
    out = {"test/ais_nll": float(-np.mean(log_px)),
           "test/ais_nll_stderr": float(np.std(log_px) / np.sqrt(n)),
           "ais_steps": steps, "ais_chains": chains, "ais_num_examples": n}
    if iwae_log_px is not None:
        out["test/iwae_nll_subset"] = float(-np.mean(iwae_log_px[:n]))
        # paired over the same examples: how much higher AIS's log p(x) is than IWAE's
        # (positive: AIS is the tighter lower bound), with its standard error
        gain = log_px - iwae_log_px[:n]
        out["test/ais_gain"] = float(np.mean(gain))
        out["test/ais_gain_stderr"] = float(np.std(gain) / np.sqrt(n))
    if gap_steps:
        elbo_encoder, elbo_local = values[1], values[2]
        out |= {"test/gap_inference": float(np.mean(log_px - elbo_encoder)),
                "test/gap_approximation": float(np.mean(log_px - elbo_local)),
                "test/gap_amortization": float(np.mean(elbo_local - elbo_encoder)),
                "gap_steps": gap_steps}
    return out
