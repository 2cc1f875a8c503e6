"""Model families of the literature, each from its own experiment file: the page and README
block, from records/ alone.

    experiments/model_families.sh 50 runs/families          # the four unconditional families
    vaejax train --config experiments/cvae.py --workdir runs/cvae/seed0
    vaejax record runs/families/EXP docs/model_families/records/EXP
    vaejax report docs/model_families

The four unconditional models share the data, objective (ELBO), optimizer, batch and epochs
(`experiments/model_families.sh` pins them on the command line, so each row's command holds
them); their test NLL is IWAE K=5000 on the first 2,000 test images. The conditional VAE is
trained by its own file, and its NLL is of log p(x|y): it is listed apart, as it is not
comparable with the others.
"""
from __future__ import annotations

import pathlib

from vaejax import published

# row -> (the model, its paper)
ROWS = {
    "iwae_mnist": ("one-layer VAE, 784-200-200-50 tanh", "Burda et al. 2015"),
    "vampprior": ("VampPrior, 500 pseudo-inputs", "Tomczak & Welling 2018"),
    "iwae_two_layer": ("two stochastic layers, 784-200-200-100(z1)-100-100-50(z2)", "Burda et al. 2015"),
    "iaf": ("IAF posterior", "Kingma et al. 2016"),
}
CONDITIONAL = {"cvae": ("conditional VAE, 784-500-500-20, on the digit", "Sohn et al. 2015")}
KNOWN_ROWS = (*ROWS, *CONDITIONAL)


def _command(record) -> str:
    return (f"vaejax train --config {record.command['experiment']} "
            + " ".join(f"--config.{o}" for o in record.command["overrides"])).strip()


def _table(records, rows, nll_label) -> list[str]:
    lines = [f"| model | paper | epochs | {nll_label} | test −ELBO | active units | s per epoch |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, (model, paper) in rows.items():
        record = records.get(name)
        if record is None or record.results is None:
            continue
        res = record.results
        lines.append(f"| {model} (`{name}`) | {paper} | {record.train['epochs']} | "
                     f"{published.nll_cell(res)} | "
                     f"{res['test/neg_elbo']:.2f} | {published.active_units_cell(res)} | "
                     f"{record.train['median_epoch_seconds']:.1f} |")
    return lines


def render(records, out_dir) -> dict[str, str]:
    out_dir = pathlib.Path(out_dir)
    families = _table(records, ROWS, "test NLL, K=5000, 2,000 images")
    conditional = _table(records, CONDITIONAL, "test −log p(x\\|y), K=5000, 10,000 images")
    hardware = published.hardware_of(records)
    lines = ["# Model families\n",
             "Each family from its own experiment file, trained with the same data (dynamically "
             "binarized MNIST, 50,000 training images), objective (ELBO), optimizer (Adam 1e-3, "
             "ε 1e-4, constant), batch (100) and epochs; test NLL: IWAE K=5000 on the first 2,000 "
             "test images, ± its standard error over images; active units: Cov_x(E_q[z_i]) > 0.01. "
             "These are one short budget for all, not the papers' budgets: the rows compare the "
             "families at equal cost, not with the papers' numbers.\n",
             *families, "",
             "The conditional VAE, trained by its own file (its NLL is of log p(x|y), on all "
             "10,000 test images; Sohn et al. report no number for this setting):\n",
             *conditional, "",
             "The commands:", ""]
    lines += [f"- `{name}`: `{_command(records[name])}`" for name in (*ROWS, *CONDITIONAL)
              if name in records]
    lines += ["", (f"Trained on {hardware}. The runs shared the machine's cores with "
                   "other work, so their seconds per epoch are an upper bound and compare "
                   "poorly across rows (`make bench` times the families on an idle machine).")
              if hardware else "", ""]
    (out_dir / "results.md").write_text("\n".join(lines))
    return {"table": "\n".join(families + [""] + conditional) + "\n"}
