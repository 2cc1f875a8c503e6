"""Burda et al. (2015), table 1: the page, figures and README block, from records/ alone.

    experiments/burda2015.sh ROW                        # train (resumable), then the NLL curve
    vaejax record runs/burda/ROW docs/burda2015/records/ROW
    vaejax report docs/burda2015                        # results.md, figures, README block
    vaejax report --check docs/burda2015                # what CI runs

Each row is a record (`vaejax.published`): run.json, train.json, results.json once trained,
and evals/ (kept checkpoints evaluated like the final model: IWAE K=5000 on all 10,000 test
images, `vaejax eval --epoch`). A row still training is shown at its latest curve point.
"""
from __future__ import annotations

import pathlib

import numpy as np

from vaejax import plots, published

SOURCE = ("Burda, Grosse & Salakhutdinov 2015, *Importance Weighted Autoencoders*, table 1 "
          "(MNIST, 3280 epochs, test NLL with k=5000)")
# row -> (label, the paper's test NLL in nats, its paper row)
ROWS = {
    "vae_k1": ("VAE (k=1), one layer", 86.76),
    "iwae_k5": ("IWAE (k=5), one layer", 85.54),
    "iwae_k50": ("IWAE (k=50), one layer", 84.78),
    "two_layer_vae_k1": ("VAE (k=1), two layers", 85.33),
    "two_layer_iwae_k5": ("IWAE (k=5), two layers", 83.89),
}
CURVE = {"iwae_samples": 5000, "num_test_examples": 10_000}
# Two layers over seeds at a shorter budget: per model, one vmapped group of three trained for
# the first SEED_EPOCHS epochs of the paper's schedule (`vaejax sweep
# experiments/iwae_two_layer.py --config.train.epochs=160` and the model's flags below), each
# seed a record. The ladder (Sønderby et al. 2016) has the same generative model and widths;
# only its inference differs (top-down, precision-weighted).
SEED_EPOCHS = 160
SEED_MODELS = {"two_layer_vae_k1": ("VAE (k=1), bottom-up inference", ""),
               "two_layer_ladder_k1": ("VAE (k=1), ladder inference", " --config.model.kind=ladder"),
               "two_layer_iwae_k5": ("IWAE (k=5), bottom-up inference",
                                     " --config.objective.kind=iwae --config.objective.num_samples=5")}
SEED_ROWS = {f"{model}_e{SEED_EPOCHS}_seed{s}": (model, s) for model in SEED_MODELS
             for s in (0, 1, 2)}
KNOWN_ROWS = (*ROWS, *SEED_ROWS)


def _row(name, record) -> dict:
    label, paper = ROWS[name]
    config = record.config
    curve = record.curve(**CURVE)
    last = curve[-1] if curve else None
    return {
        "name": name, "label": label, "paper": paper, "curve": curve, "last": last,
        "finished": record.results is not None,
        "planned": config["train"]["epochs"], "batch": config["train"]["batch_size"],
        "experiment": record.command["experiment"], "overrides": record.command["overrides"],
        "epochs": record.train["epochs"], "train_h": record.train["train_seconds"] / 3600,
        "epoch_s": record.train["median_epoch_seconds"], "train_curve": record.train["curve"],
        "hardware": published.hardware_name(record.run["hardware"]),
    }


def _table(rows) -> list[str]:
    lines = ["| row | epochs trained (of) | test NLL at epoch | test NLL, k=5000 | paper | gap | "
             "test −ELBO | active units |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        last = row["last"]
        if last is None:
            lines.append(f"| {row['label']} | {row['epochs']} ({row['planned']}) | | | "
                         f"{row['paper']:.2f} | | | |")
            continue
        lines.append(
            f"| {row['label']} | {row['epochs']} ({row['planned']}) | {last['epoch']} | "
            f"{published.nll_cell(last)} | {row['paper']:.2f} | "
            f"{last['test/nll'] - row['paper']:+.2f} | "
            f"{last['test/neg_elbo']:.2f} | {published.active_units_cell(last)} |")
    return lines


def _curve_table(rows) -> list[str]:
    epochs = sorted({p["epoch"] for row in rows for p in row["curve"]})
    if not epochs:
        return []
    lines = ["| epoch | " + " | ".join(row["label"] for row in rows) + " |",
             "|---:|" + "---:|" * len(rows)]
    for epoch in epochs:
        cells = [next((f"{p['test/nll']:.2f}" for p in row["curve"] if p["epoch"] == epoch), "")
                 for row in rows]
        lines.append(f"| {epoch} | " + " | ".join(cells) + " |")
    return lines


def _observations(rows) -> list[str]:
    """The paper's three observations (IWAE: better NLL, worse ELBO, more active units),
    checked at every epoch where both the VAE and an IWAE row of one layer were evaluated."""
    by_name = {row["name"]: row for row in rows}
    vae, out = by_name.get("vae_k1"), []
    for name in ("iwae_k5", "iwae_k50"):
        iwae = by_name.get(name)
        if vae is None or iwae is None:
            continue
        at_vae = {p["epoch"]: p for p in vae["curve"]}
        for p in iwae["curve"]:
            q = at_vae.get(p["epoch"])
            if q is None:
                continue
            holds = [p["test/nll"] < q["test/nll"], p["test/neg_elbo"] > q["test/neg_elbo"],
                     p["active_units"] > q["active_units"]]
            out.append(f"- epoch {p['epoch']}, {iwae['label']} against the VAE: test NLL "
                       f"{p['test/nll']:.2f} vs {q['test/nll']:.2f}, test −ELBO "
                       f"{p['test/neg_elbo']:.2f} vs {q['test/neg_elbo']:.2f}, active units "
                       f"{published.active_units_cell(p)} vs {published.active_units_cell(q)}: "
                       + ", ".join(f"{what} {'holds' if ok else 'does not hold'}" for what, ok in
                                   zip(("better NLL", "worse ELBO", "more active units"), holds)))
    return out


def _seed_table(records, rows) -> list[str]:
    """Two layers over seeds at SEED_EPOCHS epochs, per inference model: each seed, their mean
    and spread, the full-budget VAE run's evaluation at that epoch, and how each group trained."""
    lines = [f"| two layers, epoch {SEED_EPOCHS} | test NLL, k=5000 | test −ELBO | active units |",
             "|---|---:|---:|---:|"]
    captions, means = [], {}
    for model, (label, _) in SEED_MODELS.items():
        seeds = [(seed, records[name]) for name, (m, seed) in SEED_ROWS.items()
                 if m == model and name in records and records[name].results is not None]
        for seed, record in seeds:
            res = record.results
            lines.append(f"| {label}, seed {seed} | {published.nll_cell(res)} | "
                         f"{res['test/neg_elbo']:.2f} | {published.active_units_cell(res)} |")
        if not seeds:
            continue
        nll = np.array([record.results["test/nll"] for _, record in seeds])
        means[model] = nll.mean()
        if len(nll) > 1:
            lines.append(f"| {label}, mean ± sd over {len(nll)} seeds | "
                         f"{nll.mean():.2f} ± {nll.std(ddof=1):.2f} | | |")
        train, hardware = seeds[0][1].train, seeds[0][1].run["hardware"]
        captions.append(f"{label}: trained as one group of {len(seeds)} on {hardware['cpu']} "
                        f"({hardware['cores']} cores), {train['train_seconds'] / 3600:.1f} h for "
                        f"{train['epochs']} epochs, {train['median_epoch_seconds']:.1f} s per epoch "
                        "for the group (median).")
    if not means:
        return []
    full = next((row for row in rows if row["name"] == "two_layer_vae_k1"), None)
    at = next((p for p in full["curve"] if p["epoch"] == SEED_EPOCHS), None) if full else None
    if at is not None:
        lines.append(f"| VAE (k=1), seed 0 of the full-budget run, its checkpoint | "
                     f"{published.nll_cell(at)} | {at['test/neg_elbo']:.2f} | "
                     f"{published.active_units_cell(at)} |")
    vae = means.get("two_layer_vae_k1")
    if vae is not None and "two_layer_ladder_k1" in means:
        captions.append(f"Ladder inference against bottom-up at this budget: "
                        f"{means['two_layer_ladder_k1'] - vae:+.2f} nats of mean test NLL "
                        "(negative: the ladder is better). Burda et al.'s "
                        "schedule has no KL warm-up, which the ladder needs (the Sønderby page, "
                        "sonderby2016/results.md, compares both with and without it).")
    if vae is not None and "two_layer_iwae_k5" in means:
        paper = ROWS["two_layer_iwae_k5"][1] - ROWS["two_layer_vae_k1"][1]
        captions.append(f"IWAE (k=5) against the VAE (k=1), both bottom-up, at this budget: "
                        f"{means['two_layer_iwae_k5'] - vae:+.2f} nats of mean test NLL "
                        f"(negative: IWAE is better); the paper's table 1 at 3280 epochs: "
                        f"{paper:+.2f}.")
    return lines + [line for caption in captions for line in ("", caption)]


def render(records, out_dir) -> dict[str, str]:
    out_dir = pathlib.Path(out_dir)
    rows = [_row(name, records[name]) for name in ROWS if name in records]
    commands = [f"- {row['label']}: `vaejax train --config {row['experiment']} "
                + " ".join(f"--config.{o}" for o in row["overrides"])
                + f"` ({row['batch']} per batch; trained on {row['hardware']}, {row['train_h']:.1f} h"
                f" for {row['epochs']} epochs, {row['epoch_s']:.1f} s per epoch, median)"
                for row in rows]
    lines = [
        "# Burda et al. 2015, table 1\n",
        f"Reference: {SOURCE}. Test NLL: IWAE k=5000 on all 10,000 test images, ± its standard "
        "error over images; −ELBO: one posterior sample per image; active units: Burda et al.'s "
        "criterion, Cov_x(E_q[z_i]) > 0.01. Each row's epoch column says where its number "
        "stands: rows still training are shown at their latest evaluated checkpoint.\n",
        *_table(rows), "",
        "The commands (experiments/burda2015.sh runs them and evaluates the kept checkpoints):", "",
        *commands, "",
    ]
    curve = _curve_table(rows)
    if curve:
        lines += ["Test NLL of the kept checkpoints (the learning curves):", "", *curve, ""]
    seeds = _seed_table(records, rows)
    if seeds:
        recorded = {model for name, (model, _) in SEED_ROWS.items() if name in records}
        commands = "; ".join(f"{label}: `vaejax sweep experiments/iwae_two_layer.py "
                             f"--config.train.epochs={SEED_EPOCHS}{flag}`"
                             for model, (label, flag) in SEED_MODELS.items() if model in recorded)
        lines += [f"Two layers over seeds, trained for the first {SEED_EPOCHS} epochs of the "
                  "paper's schedule, seeds 0, 1 and 2 of each model as one vmapped "
                  f"group ({commands}; the sd is over seeds). The ladder VAE (Sønderby et al. "
                  "2016) has the same generative model and widths; only its inference differs:",
                  "", *seeds, ""]
    observations = _observations(rows)
    if observations:
        lines += ["The paper's observations, checked at each epoch both rows were evaluated:", "",
                  *observations, ""]
    lines += ["![test NLL learning curve](nll_curve.png)", "",
              "![training objective](train_curve.png)", ""]
    (out_dir / "results.md").write_text("\n".join(lines))
    curves = [row for row in rows if row["curve"]]
    plots.compare_curves(
        {row["label"]: row["curve"] for row in curves}, out_dir / "nll_curve.png",
        key="test/nll", ylabel="test NLL, IWAE k=5000, 10,000 images (nats)",
        references={f"paper: {row['label']} {row['paper']}": row["paper"] for row in curves},
        reference_runs={f"paper: {row['label']} {row['paper']}": row["label"] for row in curves},
        title="Test NLL of kept checkpoints, against the paper's", log_epochs=True)
    plots.compare_curves(
        {row["label"]: row["train_curve"] for row in rows}, out_dir / "train_curve.png",
        key="train/loss", ylabel="training objective: −ELBO (VAE), −IWAE bound (nats)",
        title="Training objective per epoch", log_epochs=True)
    blocks = {"table": "\n".join(_table(rows)) + "\n"}
    if seeds:
        blocks["seeds"] = "\n".join(seeds) + "\n"
    return blocks
