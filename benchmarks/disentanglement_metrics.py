"""What each disentanglement metric (`vaejax.disentanglement`) costs on 10,000 codes.

Codes: 10 dimensions, the first 5 a noisy monotone function of dSprites' 5 factors (its grid
sizes 3, 6, 40, 32, 32), the other 5 noise, so the classifiers have something to learn. MIG,
SAP, DCI and modularity/explicitness score 10,000 codes (SAP, DCI and explicitness train on
them and test on 5,000 more); the BetaVAE and FactorVAE scores train on 10,000 points and
evaluate on 5,000, batch 64, with a `codes_of` that costs nothing (a linear map of the
factors), so the table is the metric's own cost, not an encoder's. One round each: the slow
ones take minutes.

    python benchmarks/disentanglement_metrics.py
"""
from __future__ import annotations

import time

import numpy as np

from vaejax import disentanglement as dis

SIZES = (3, 6, 40, 32, 32)  # dSprites: shape, scale, orientation, x, y
NUM = 10_000


def _codes_of(factors, rng):
    factors = np.asarray(factors, np.float64)
    signal = factors / np.asarray(SIZES) + 0.05 * rng.normal(size=factors.shape)
    return np.concatenate([signal, rng.normal(size=factors.shape)], axis=1)


def table(log=print) -> str:
    rng = np.random.default_rng(0)
    factors = np.stack([rng.integers(0, s, NUM + NUM // 2) for s in SIZES], axis=1)
    codes = _codes_of(factors, rng)
    train, test = (codes[:NUM], factors[:NUM]), (codes[NUM:], factors[NUM:])
    runs = {
        "MIG": lambda: dis.mig(*train),
        "SAP": lambda: dis.sap(*train, *test),
        "DCI (gradient-boosted trees)": lambda: dis.dci(*train, *test),
        "modularity and explicitness": lambda: dis.modularity_explicitness(*train, *test),
        "BetaVAE score": lambda: dis.beta_vae_score(lambda f: _codes_of(f, rng), SIZES,
                                                    num_train=NUM, num_eval=NUM // 2),
        "FactorVAE score": lambda: dis.factor_vae_score(lambda f: _codes_of(f, rng), SIZES,
                                                        num_train=NUM, num_eval=NUM // 2),
    }
    lines = ["| metric (10,000 codes of 10 dimensions, 5 factors) | seconds |", "| --- | ---: |"]
    for name, run in runs.items():
        start = time.perf_counter()
        run()
        seconds = time.perf_counter() - start
        log(f"  {name}: {seconds:.2f} s")
        lines.append(f"| {name} | {seconds:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
