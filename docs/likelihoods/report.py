"""Likelihoods beyond IWAE on the Burda et al. (2015) rows and Cremer et al.'s (2018)
Fashion-MNIST VAE: AIS against IWAE K=5000, BDMC on data simulated from each model, and the
split of the inference gap (Cremer et al. 2018). The page and README block, from records/
alone.

    experiments/burda2015.sh iwae_k5                          # the trained row (3280 epochs)
    vaejax eval --workdir runs/burda/iwae_k5 --config.eval.ais_steps=1000 \\
        --config.eval.ais_chains=16 --config.eval.ais_num_examples=100 \\
        --config.eval.gap_steps=500 --config.eval.bdmc_examples=10
    vaejax record runs/burda/iwae_k5 docs/likelihoods/records/iwae_k5
    vaejax report docs/likelihoods

The Fashion-MNIST row trains with `vaejax train --config experiments/cremer2018_fashion.py
--workdir runs/likelihoods/fashion_vae`, then is evaluated and recorded the same way.

Each record is a Burda row's run evaluated with these settings (results.json's
eval_settings holds them, so `vaejax reproduce` evaluates a replica the same way).
"""
from __future__ import annotations

import pathlib

from vaejax import published

# row -> the model, as the Burda study names it
ROWS = {"vae_k1": "VAE (k=1), one layer", "iwae_k5": "IWAE (k=5), one layer",
        "fashion_vae": "VAE, Fashion-MNIST (Cremer et al.'s model)"}
KNOWN_ROWS = tuple(ROWS)


def _pm(value, err) -> str:
    return f"{value:.2f} ± {err:.2f}"


def _vae_against_iwae(records) -> str:
    """Burda et al. and Cremer et al.: IWAE training leaves a smaller inference gap."""
    gaps = {name: records[name].results.get("test/gap_inference") for name in ROWS
            if name in records and records[name].results is not None}
    if None in gaps.values() or len(gaps) < 2:
        return ("Whether IWAE training shrinks the inference gap against the VAE's needs both "
                "rows; the VAE's is not evaluated yet.\n")
    vae, iwae = gaps["vae_k1"], gaps["iwae_k5"]
    return (f"IWAE training {'shrinks' if iwae < vae else 'does not shrink'} the inference gap: "
            f"{iwae:.2f} nats for IWAE (k=5) against {vae:.2f} for the VAE.\n")


def render(records, out_dir) -> dict[str, str]:
    table = ["| model | epochs | test NLL, IWAE K=5000, 10,000 images | first N images: IWAE K=5000 "
             "| AIS | AIS − IWAE log p(x) | inference gap | approximation | amortization "
             "| BDMC gap (simulated) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    findings, settings = [], set()
    for name, label in ROWS.items():
        record = records.get(name)
        if record is None or record.results is None or "test/ais_nll" not in record.results:
            continue
        r = record.results
        settings.add((r["ais_num_examples"], r["ais_steps"], r["ais_chains"], r.get("gap_steps"),
                      r.get("bdmc_examples")))
        table.append(
            f"| {label} | {r['epoch']} | {published.nll_cell(r)} | "
            f"{r['test/iwae_nll_subset']:.2f} | {_pm(r['test/ais_nll'], r['test/ais_nll_stderr'])} | "
            f"{_pm(r['test/ais_gain'], r['test/ais_gain_stderr'])} | {r['test/gap_inference']:.2f} | "
            f"{r['test/gap_approximation']:.2f} | {r['test/gap_amortization']:.2f} | "
            f"{r['bdmc/gap']:.2f} |")
        tighter = r["test/ais_gain"] > 2 * r["test/ais_gain_stderr"]
        share = r["test/gap_amortization"] / r["test/gap_inference"]
        findings += [
            f"- {label}: AIS is {'' if tighter else 'not '}tighter than IWAE K=5000 beyond two "
            f"standard errors (by {r['test/ais_gain']:.2f} ± {r['test/ais_gain_stderr']:.2f} nats "
            f"per example); the amortization gap is {share:.0%} of the inference gap "
            f"({r['test/gap_amortization']:.2f} of {r['test/gap_inference']:.2f} nats).",
        ]
    if len(settings) > 1:
        raise ValueError(f"docs/likelihoods: the rows were evaluated with different settings "
                         f"{sorted(settings)}; evaluate them alike")
    n, steps, chains, gap_steps, bdmc = settings.pop() if settings else (0, 0, 0, 0, 0)
    table += ["", f"N = {n} (the first test images), AIS with {steps} steps × {chains} chains "
              f"started at q(z|x); q* by {gap_steps} Adam steps per image; BDMC on {bdmc} "
              "images simulated from each model. Nats per example; the gaps are means over the "
              "N images. The models were trained on " + published.hardware_of(records) + "."]
    block = "\n".join(table) + "\n"
    lines = ["# Likelihoods beyond IWAE: the Burda et al. rows and a Fashion-MNIST VAE\n",
             "Every NLL of the Burda study is an IWAE K=5000 bound. Here the same trained models, "
             "and the Fashion-MNIST VAE of Cremer et al.'s evaluation code "
             "(`experiments/cremer2018_fashion.py`: 784-200-200-50 ELU, Fashion-MNIST binarized "
             "at 0.5, Burda et al.'s schedule over 3280 epochs, the KL warmed up over 400), "
             "are evaluated with annealed importance sampling (HMC transitions, Wu et al. 2017), "
             "bidirectional Monte Carlo on data simulated from each model (Grosse et al. 2015; "
             "the BDMC gap bounds AIS's error at these settings), and the split of the inference "
             "gap log p(x) − ELBO(q) into approximation, log p(x) − ELBO(q*), and amortization, "
             "ELBO(q*) − ELBO(q) (Cremer, Li & Duvenaud 2018), with log p(x) from AIS.\n",
             block, "## What the records say\n", *findings, "", _vae_against_iwae(records),
             "Cremer et al. (2018, table 2) split the gap for this architecture on MNIST, "
             "Fashion-MNIST and CIFAR-10. Their numbers are not quoted here, because they have not "
             "been checked against the paper. What can be compared is "
             "their reading, that with a factorized Gaussian q the amortization gap is the "
             "larger part of the inference gap; the shares above say whether it holds on these "
             "models.\n"]
    (pathlib.Path(out_dir) / "results.md").write_text("\n".join(lines))
    return {"table": block}
