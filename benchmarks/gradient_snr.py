"""Signal-to-noise ratio of the encoder gradient against K: IWAE vs DReG vs STL.

Rainforth et al. 2018 ("Tighter variational bounds are not necessarily better", section 4)
show on a Gaussian model that the IWAE bound's encoder-gradient SNR falls as O(1/sqrt(K)),
and Tucker et al. 2019 that DReG's does not (it rises as O(sqrt(K))). This reproduces that
on their model, with vaejax's estimators:

    p(z) = N(mu, I_D),  p(x|z) = N(z, I_D),  q(z|x) = N(A x + b, (2/3) I_D),  D = 20,

A, b perturbed from the optimum A* = I/2, b* = mu/2 by N(0, 0.01^2) noise, one x ~ p(x).
SNR of a parameter = |mean| / std of its gradient over independent keys; the table reports
the mean SNR over the D components of b (the encoder) and of mu (the decoder, for scale).

    python benchmarks/gradient_snr.py            # the table, ~1 min on 2 CPU cores
"""
import argparse
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

import vaejax

DIM = 20
LOGVAR_Q = math.log(2.0 / 3.0)


def gaussian_model(seed=0, dim=DIM):
    """(x, theta, phi): one observation and the decoder/encoder parameters of the model above."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=dim)
    x = mu + math.sqrt(2.0) * rng.normal(size=dim)  # p(x) = N(mu, 2 I)
    a = 0.5 * np.eye(dim) + 0.01 * rng.normal(size=(dim, dim))
    b = 0.5 * mu + 0.01 * rng.normal(size=dim)
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    return f32(x), {"mu": f32(mu)}, {"a": f32(a), "b": f32(b)}


def bound(key, x, theta, phi, *, estimator, num_samples):
    """The K-sample IWAE bound of the model above, with `estimator`'s gradient."""
    encode = lambda x: vaejax.DiagGaussian(phi["a"] @ x + phi["b"], jnp.full(x.shape, LOGVAR_Q))  # noqa: E731
    decode = lambda z: vaejax.DiagGaussian(z, jnp.zeros(z.shape))  # noqa: E731
    prior = vaejax.DiagGaussian(theta["mu"], jnp.zeros(theta["mu"].shape))
    value, _ = vaejax.iwae_bound(key, x, encode, decode, prior=prior, num_samples=num_samples,
                                 gradient_estimator=estimator)
    return value


@functools.partial(jax.jit, static_argnames=("estimator", "num_samples", "num_keys"))
def gradient_moments(key, x, theta, phi, *, estimator, num_samples, num_keys):
    """Mean and standard deviation over `num_keys` keys of the gradient of b (the encoder)
    and of mu (the decoder), each (D,)."""
    grad = jax.grad(bound, argnums=(2, 3))

    def one(k):
        g_theta, g_phi = grad(k, x, theta, phi, estimator=estimator, num_samples=num_samples)
        return {"encoder": g_phi["b"], "decoder": g_theta["mu"]}

    g = jax.lax.map(one, jax.random.split(key, num_keys), batch_size=256)
    return {name: (v.mean(0), v.std(0)) for name, v in g.items()}


def table(sample_sizes=(1, 10, 100, 1000), num_keys=2000, seed=0):
    """{(estimator, K): {"encoder": snr, "decoder": snr}}, each the mean over the D components.

    SNR = |E g| / std g. The noise is each estimator's own std. The signal of "reparam" and
    "dreg" is the same true gradient of E[IWAE_K] (DReG is unbiased for it: tested in
    tests/test_objectives_iwae_family.py), estimated by DReG's mean, whose error is far
    smaller: at large K the IWAE gradient's own sample mean would measure only its noise
    (|mean| / std of pure noise is ~0.8 / sqrt(num_keys)). "stl" is biased for IWAE with
    K > 1 (Tucker et al. 2019), so its signal is its own mean.
    """
    x, theta, phi = gaussian_model(seed)
    results = {}
    for k in sample_sizes:
        moments = {e: gradient_moments(jax.random.key(seed + 1), x, theta, phi, estimator=e,
                                       num_samples=k, num_keys=num_keys)
                   for e in ("reparam", "stl", "dreg")}
        for e, m in moments.items():
            signal = {part: (m if e == "stl" else moments["dreg"])[part][0] for part in m}
            results[(e, k)] = {part: float(jnp.mean(jnp.abs(signal[part]) / m[part][1])) for part in m}
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-keys", type=int, default=2000)
    args = parser.parse_args()
    results = table(num_keys=args.num_keys)
    sizes = sorted({k for _, k in results})
    print(f"encoder-gradient SNR (mean over the {DIM} components of b), {args.num_keys} keys per cell")
    print("| estimator | " + " | ".join(f"K={k}" for k in sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    for e in ("reparam", "stl", "dreg"):
        print(f"| {e} | " + " | ".join(f"{results[(e, k)]['encoder']:.3f}" for k in sizes) + " |")
    print(f"| (decoder, reparam) | " + " | ".join(f"{results[('reparam', k)]['decoder']:.2f}" for k in sizes) + " |")


if __name__ == "__main__":
    main()
