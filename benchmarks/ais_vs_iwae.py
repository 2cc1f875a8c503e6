"""AIS against IWAE as estimators of log p(x): which is tighter for the same seconds?

On the first N test images of a trained model, log p(x) is estimated per example by IWAE at
K = 100 ... 100,000 draws from q(z|x) and by AIS (vaejax.ais, HMC, started at q(z|x), 16
chains) at 10 ... 1000 annealing steps. Both are stochastic lower bounds on log p(x) (in
expectation), so higher is tighter. Each setting is timed after its compilation, over the N
images, one process, and reported in seconds per image; the estimates are paired (the same
images, binarized alike) and compared with the tightest setting run, AIS with the most steps.

Two readings:
  - equal time: for each AIS setting, the IWAE setting that took the closest seconds per
    image, and which of the two is tighter;
  - equal accuracy: the cheapest setting of each estimator whose mean is within 0.1 nats of
    the reference (about the standard error of the paired gap on 20 images).

    python benchmarks/ais_vs_iwae.py --workdir runs/burda/vae_k1 [--examples 20]

In `make bench` (benchmarks/run.py) it runs on the MLP VAE trained there for 10 epochs.
"""
from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from vaejax import evaluate

IWAE_SAMPLES = (100, 1000, 5000, 20_000, 100_000)
AIS_STEPS = (10, 30, 100, 300, 1000)
BATCH = 10  # images per compiled batch, both estimators (eval.ais_batch_size's default)
clock = time.perf_counter  # seconds; the tests give it a clock of their own
AIS_CHAINS = 16
WITHIN = 0.1  # nats: "equal accuracy" means a mean within this of the reference


def _timed(run, images):
    """(`run(images)`, the seconds of a second call: the first compiles, for these shapes)."""
    run(images)
    start = clock()
    out = run(images)
    return out, clock() - start


def measure(program, params, images, *, iwae_samples=IWAE_SAMPLES, ais_steps=AIS_STEPS,
            log=print) -> list[dict]:
    """One row per setting: estimator, setting, seconds per image, log p(x) per image (N,).
    `images`: `vaejax.data.Examples` of the N test images."""
    key = jax.random.key(0)  # one key: both estimators binarize each image alike
    common = dict(data_shape=program.data_shape, preprocessing=program.preprocessing)
    rows = []
    for k in iwae_samples:
        log_px, seconds = _timed(lambda x, k=k: evaluate.iwae_log_likelihood(
            program.model, params, x, key, num_samples=k, chunk_size=min(k, 500),
            batch_size=BATCH, **common), images)
        rows.append({"estimator": "IWAE", "setting": f"K={k:,}", "seconds": seconds / images.num_examples,
                     "log_px": np.asarray(log_px)})
        log(f"  IWAE K={k}: {rows[-1]['seconds']:.3f} s/image, mean log p(x) {log_px.mean():.2f}")
    for steps in ais_steps:
        out, seconds = _timed(lambda x, s=steps: evaluate.ais_log_likelihood(
            program.model, params, x, key, num_steps=s, num_chains=AIS_CHAINS,
            batch_size=BATCH, **common), images)
        rows.append({"estimator": "AIS", "setting": f"{steps} steps x {AIS_CHAINS} chains",
                     "seconds": seconds / images.num_examples, "log_px": np.asarray(out[0])})
        log(f"  AIS {steps} steps: {rows[-1]['seconds']:.3f} s/image, mean log p(x) "
            f"{out[0].mean():.2f}")
    return rows


def table(rows, what: str) -> str:
    """The markdown table and its two readings, against the last AIS row as the reference."""
    reference = [r for r in rows if r["estimator"] == "AIS"][-1]
    n = len(reference["log_px"])
    lines = [f"AIS against IWAE on {what}, {n} images: log p(x) in nats per image (higher is "
             f"tighter); the gap is paired against the reference, AIS {reference['setting']}.",
             "", "| estimator | setting | seconds per image | mean log p(x) | below the reference |",
             "| --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        d = reference["log_px"] - r["log_px"]
        gap = "reference" if r is reference else f"{d.mean():.2f} ± {d.std(ddof=1) / np.sqrt(n):.2f}"
        lines.append(f"| {r['estimator']} | {r['setting']} | {r['seconds']:.3f} | "
                     f"{r['log_px'].mean():.2f} | {gap} |")
    iwae = [r for r in rows if r["estimator"] == "IWAE"]
    ais = [r for r in rows if r["estimator"] == "AIS"]
    lines += ["", "Equal time (the IWAE setting closest in seconds to each AIS setting):", ""]
    for a in ais:
        i = min(iwae, key=lambda r: abs(np.log(r["seconds"] / a["seconds"])))
        better = "AIS" if a["log_px"].mean() > i["log_px"].mean() else "IWAE"
        lines.append(f"- AIS {a['setting']} ({a['seconds']:.3f} s) against IWAE {i['setting']} "
                     f"({i['seconds']:.3f} s): {better} is tighter by "
                     f"{abs(a['log_px'].mean() - i['log_px'].mean()):.2f} nats.")
    lines += ["", f"Equal accuracy (the cheapest setting within {WITHIN} nats of the reference):", ""]
    for name, group in (("IWAE", iwae), ("AIS", ais)):
        close = [r for r in group if (reference["log_px"] - r["log_px"]).mean() <= WITHIN]
        best = min(close, key=lambda r: r["seconds"]) if close else None
        nearest = min(group, key=lambda r: (reference["log_px"] - r["log_px"]).mean())
        lines.append(f"- {name}: " + (
            f"{best['setting']}, {best['seconds']:.3f} s per image." if best else
            f"none of the settings run; the closest, {nearest['setting']} "
            f"({nearest['seconds']:.3f} s), is {(reference['log_px'] - nearest['log_px']).mean():.2f} "
            "nats below."))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="a trained run")
    parser.add_argument("--examples", type=int, default=20)
    args = parser.parse_args()
    from vaejax.runs import load_run  # noqa: PLC0415

    run = load_run(args.workdir)
    images = run.splits.test.take(slice(None, args.examples))
    rows = measure(run.program, run.params, images)
    print(table(rows, f"{args.workdir} (epoch {run.epoch})"))


if __name__ == "__main__":
    main()
