"""The README's model-family table and figures, from the runs of experiments/model_families.sh.

    python docs/model_families/report.py [runs/families]

Reads each run's results.json and metrics.jsonl; writes docs/model_families/results.md (the
table), val_neg_elbo.png (validation -ELBO per epoch of every family), nll.png (test NLL and
-ELBO per family) and copies the VampPrior's pseudo_inputs.png and each family's
prior_samples.png here.
"""
from __future__ import annotations

import json
import pathlib
import shutil
import sys

from vaejax import plots, records

HERE = pathlib.Path(__file__).resolve().parent
# experiment -> (label, paper test NLL in nats or None, where the paper number comes from)
FAMILIES = {
    "iwae_mnist": ("VAE, one layer (784-200-200-50)", 86.76, "Burda et al. 2015, table 1, 3280 epochs"),
    "vampprior": ("VampPrior (300-300-40, K=500)", 85.57,
                  "Tomczak & Welling 2018, as quoted by Pythae; early stopping, up to 2000 epochs"),
    "iwae_two_layer": ("two stochastic layers (100-50)", 85.33, "Burda et al. 2015, table 1, 3280 epochs"),
    "iaf": ("IAF posterior, 2 steps (784-200-200-50)", None,
            "Kingma et al. 2016 use a conv ResNet VAE: no comparable number"),
}


def _row(run_dir: pathlib.Path, label: str, paper, source: str) -> dict | None:
    results = records.read_json(run_dir / records.RESULTS) if (run_dir / records.RESULTS).exists() else None
    metrics = records.read_metrics(run_dir)
    if results is None or not metrics:
        return None
    train_time = sum(m["epoch_time"] for m in metrics)
    active = results.get("active_units_by_variable")
    return {
        "name": label, "epochs": metrics[-1]["epoch"], "train_min": train_time / 60,
        "s_per_epoch": sorted(m["epoch_time"] for m in metrics)[len(metrics) // 2],
        "test/neg_elbo": results["test/neg_elbo"], "test/nll": results["test/nll"],
        "stderr": results["test/nll_stderr"], "iwae_min": results["iwae_time"] / 60,
        "examples": results["num_test_examples"],
        "active": (f"{results['active_units']}/{results['latent_dim']}"
                   + (" (" + ", ".join(f"{k} {v}" for k, v in active.items()) + ")" if active else "")),
        "paper": paper, "source": source,
    }


def main(runs_dir="runs/families"):
    runs_dir = pathlib.Path(runs_dir)
    rows, curves = [], {}
    for experiment, (label, paper, source) in FAMILIES.items():
        row = _row(runs_dir / experiment, label, paper, source)
        if row is None:
            print(f"report: {runs_dir / experiment} is not finished; left out")
            continue
        rows.append(row)
        curves[label] = records.read_metrics(runs_dir / experiment)
        for figure in ("prior_samples.png", "pseudo_inputs.png"):
            if (runs_dir / experiment / "figures" / figure).exists():
                shutil.copy(runs_dir / experiment / "figures" / figure, HERE / f"{experiment}_{figure}")
    lines = ["| model | epochs | train time | test −ELBO | test NLL (IWAE K=5000) | active units | "
             "paper NLL (its budget) |", "|---|---:|---:|---:|---:|---|---|"]
    for r in rows:
        paper = f"{r['paper']:.2f} ({r['source']})" if r["paper"] is not None else r["source"]
        lines.append(f"| {r['name']} | {r['epochs']} | {r['train_min']:.0f} min ({r['s_per_epoch']:.1f} s/epoch) "
                     f"| {r['test/neg_elbo']:.2f} | {r['test/nll']:.2f} ± {r['stderr']:.2f} | {r['active']} "
                     f"| {paper} |")
    if rows:
        lines.append("")
        lines.append(f"Test set: the first {rows[0]['examples']} MNIST test images, binarized once "
                     f"per image from the run's eval key; ± is the standard error over images. "
                     "IWAE evaluation took " + ", ".join(f"{r['iwae_min']:.0f} min" for r in rows) + ".")
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plots.compare_curves(curves, HERE / "val_neg_elbo.png")
    plots.nll_by_run(rows, HERE / "nll.png")
    print(f"report: wrote {HERE}")


if __name__ == "__main__":
    main(*sys.argv[1:])
