"""Sønderby et al. (2016), table 1's comparison at one shared budget: the page, figures and
README block, from records/ alone.

    vaejax sweep experiments/sonderby2016_budget.py --workdir sweeps/sonderby2016_budget
    vaejax record sweeps/sonderby2016_budget/runs/RUN docs/sonderby2016/records/ROW_seedS
    vaejax report docs/sonderby2016

Each row (inference model, depth, warm-up) has one record per seed; its seeds trained as one
vmapped group. Test NLL: IWAE K=1000 on the first 1,000 test images (the same images for
every row).
"""
from __future__ import annotations

import pathlib

import numpy as np

from vaejax import plots, published

PAPER = ("Sønderby, Raiko, Maaløe, Sønderby & Winther 2016, *Ladder Variational Autoencoders*, "
         "table 1 (MNIST, 2000 epochs, test NLL by IWAE K=5000)")
HEADLINE = 81.74  # the paper's MNIST result: LVAE, 5 layers, batch norm + warm-up
SEEDS = (0, 1, 2)
MODELS = {"lvae": ("LVAE", "ladder"), "vae": ("VAE", "hierarchical")}
# The paper's columns at each depth, with weight normalisation (WN) for its batch norm:
# (model, weight norm, warm-up)
COLUMNS = (("vae", False, False), ("vae", False, True), ("lvae", False, False), ("lvae", False, True),
           ("vae", True, False), ("vae", True, True), ("lvae", True, True))


def _aids(wn, warmup) -> str:
    return " + ".join(["WN"] * wn + ["warm-up"] * warmup) or "no aids"


def _label(model, depth, wn, warmup) -> str:
    aids = _aids(wn, warmup)
    return f"{MODELS[model][0]}, {depth} layers, {aids}"


# row -> (label, model.kind, stochastic layers, warm-up, weight norm)
ROWS = {f"{model}{depth}{'_wn' if wn else ''}_{'wu' if warmup else 'nowu'}":
        (_label(model, depth, wn, warmup), MODELS[model][1], depth, warmup, wn)
        for depth in (5, 2) for model, wn, warmup in COLUMNS}
KNOWN_ROWS = tuple(f"{row}_seed{seed}" for row in ROWS for seed in SEEDS)


def _per_layer(results: dict, key: str) -> list[float]:
    values = results[key]
    return [values[f"z{i}"] for i in range(1, len(values) + 1)]


def _seeds(records, row) -> list[dict]:
    """The finished seeds of a row: one dict per record with its numbers."""
    out = []
    for seed in SEEDS:
        record = records.get(f"{row}_seed{seed}")
        if record is None or record.results is None:
            continue
        res, model = record.results, record.config["model"]
        out.append({"seed": seed, "nll": res["test/nll"], "neg_elbo": res["test/neg_elbo"],
                    "units": _per_layer(res, "active_units_by_variable"),
                    "kl": _per_layer(res, "test/kl_by_variable"),
                    "latent_dims": list(model["latent_dims"]),
                    "epochs": record.train["epochs"], "epoch_s": record.train["median_epoch_seconds"],
                    "curve": record.train["curve"], "record": record})
    return out


def _mean_sd(values) -> str:
    values = np.asarray(values, float)
    if values.size < 2:
        return f"{values.mean():.2f}"
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f}"


def _layers(values, fmt) -> str:
    """Per-layer means over seeds, bottom layer first: "64 / 31.7 / 8.67"."""
    return " / ".join(fmt(v + 0.0) for v in np.mean(values, axis=0))  # + 0.0: no "-0.0"


def _table(rows) -> list[str]:
    lines = ["| model | seeds | epochs | test NLL, K=1000 | paper (2000 epochs) | gap | test −ELBO | "
             "active units per layer (of 64-32-16-8-4) | KL per layer (nats) | s per epoch, 3 seeds |",
             "|---|---:|---:|---:|---:|---:|---:|---|---|---:|"]
    for row in rows:
        seeds = row["seeds"]
        nll = [s["nll"] for s in seeds]
        paper, gap = ((f"{HEADLINE} (BN + warm-up)", f"{np.mean(nll) - HEADLINE:+.2f}")
                      if row["name"] == "lvae5_wn_wu" else ("—", "—"))
        lines.append(
            f"| {row['label']} | {len(seeds)} | {seeds[0]['epochs']} | "
            f"{_mean_sd(nll)} | {paper} | {gap} | "
            f"{_mean_sd([s['neg_elbo'] for s in seeds])} | "
            f"{_layers([s['units'] for s in seeds], lambda v: f'{v:.3g}')} | "
            f"{_layers([s['kl'] for s in seeds], lambda v: f'{round(v, 1) + 0.0:.1f}')} | "
            f"{np.median([s['epoch_s'] for s in seeds]):.1f} |")
    return lines


def _by(rows, kind, depth, warmup, wn=False):
    return next((r for r in rows
                 if (r["kind"], r["depth"], r["warmup"], r["wn"]) == (kind, depth, warmup, wn)), None)


def _mean(row, key) -> float:
    return float(np.mean([s[key] for s in row["seeds"]]))


def _verdict(holds: bool) -> str:
    return "holds" if holds else "does not hold"


def _effect(gain: float, depth: int) -> str:
    return f"{'lowers' if gain > 0 else 'raises'} the test NLL by {abs(gain):.2f} nats at {depth} layers"


def _observations(rows) -> list[str]:
    """The paper's observations, read off the records."""
    lines = []
    for warmup in (True, False):
        ladder, bottom_up = _by(rows, "ladder", 5, warmup), _by(rows, "hierarchical", 5, warmup)
        if ladder and bottom_up:
            kl = {name: np.mean([sum(s["kl"][2:]) for s in row["seeds"]])
                  for name, row in (("LVAE", ladder), ("VAE", bottom_up))}
            units = {name: np.mean([sum(s["units"][2:]) for s in row["seeds"]])
                     for name, row in (("LVAE", ladder), ("VAE", bottom_up))}
            lines.append(f"- *The LVAE uses more of its top layers* ({'with' if warmup else 'without'} "
                         f"warm-up, 5 layers): the KL of layers 3-5, mean over seeds, LVAE "
                         f"{kl['LVAE']:.2f} against VAE {kl['VAE']:.2f} nats ({units['LVAE']:.3g} "
                         f"against {units['VAE']:.3g} of their 28 units active): "
                         f"{_verdict(kl['LVAE'] > kl['VAE'])}.")
    for depth in (5, 2):
        for warmup, wn in ((True, False), (False, False), (True, True)):
            ladder = _by(rows, "ladder", depth, warmup, wn)
            bottom_up = _by(rows, "hierarchical", depth, warmup, wn)
            if ladder and bottom_up:
                nll = _mean(bottom_up, "nll") - _mean(ladder, "nll")
                elbo = _mean(bottom_up, "neg_elbo") - _mean(ladder, "neg_elbo")
                aids = _aids(wn, warmup)
                lines.append(f"- *The LVAE has the better likelihood and the tighter bound* ({depth} "
                             f"layers, {aids}): its test NLL is {abs(nll):.2f} nats "
                             f"{'lower' if nll > 0 else 'higher'} and its −ELBO {abs(elbo):.2f} nats "
                             f"{'lower' if elbo > 0 else 'higher'} than the VAE's: "
                             f"{_verdict(nll > 0)} for the likelihood, {_verdict(elbo > 0)} for the bound.")
    # (aid, the row without it, the row with it) as (warm-up, wn) pairs
    for aid, without, with_ in (("warm-up", (False, False), (True, False)),
                                ("weight normalisation", (True, False), (True, True))):
        for kind, name in (("hierarchical", "VAE"), ("ladder", "LVAE")):
            gains = {}
            for depth in (2, 5):
                a, b = _by(rows, kind, depth, *without), _by(rows, kind, depth, *with_)
                if a and b:
                    gains[depth] = _mean(a, "nll") - _mean(b, "nll")
            if len(gains) == 2:
                lines.append(f"- *{aid[0].upper() + aid[1:]} matters more for deeper models* ({name}): "
                             f"it {_effect(gains[2], 2)} and {_effect(gains[5], 5)}: "
                             f"{_verdict(gains[5] > gains[2])} at this budget.")
    return lines


def _mean_curve(seeds) -> list[dict]:
    epochs = sorted(set.intersection(*[{p["epoch"] for p in s["curve"]} for s in seeds]))
    by_seed = [{p["epoch"]: p for p in s["curve"]} for s in seeds]
    return [{"epoch": e, "train/loss": float(np.mean([b[e]["train/loss"] for b in by_seed]))}
            for e in epochs]


def render(records, out_dir) -> dict[str, str]:
    out_dir = pathlib.Path(out_dir)
    rows = []
    for name, (label, kind, depth, warmup, wn) in ROWS.items():
        seeds = _seeds(records, name)
        if seeds:
            rows.append({"name": name, "label": label, "kind": kind, "depth": depth,
                         "warmup": warmup, "wn": wn, "seeds": seeds})
    table = _table(rows)
    first = rows[0]["seeds"][0]["record"] if rows else None
    command = ("`vaejax sweep " + first.command["experiment"] + "`" if first else "")
    hardware = published.hardware_of(records)
    lines = [
        "# Sønderby et al. 2016: ladder against bottom-up inference, at one shared budget\n",
        f"Reference: {PAPER}. The paper's headline, the LVAE with 5 layers, batch normalisation "
        f"and warm-up, is {HEADLINE} nats, as the benchmark listings of the paper quote its MNIST "
        "result; table 1 itself could not be read here, so its other rows are not quoted.\n",
        f"Every row here is the paper's model (64-32-16-8-4 latents, two-layer MLPs of "
        "512-256-128-64-32 leaky-ReLU units, Bernoulli likelihood, dynamically binarized MNIST, "
        "batch 256, Adam 2e-4), trained by " + command + " for the same short budget: "
        "50 epochs (the paper trains 2000), warm-up over the first 5 (the paper's 10%). "
        "No row has batch normalisation: the rows marked WN normalise every hidden layer by "
        "weight normalisation with data-dependent initialisation instead (`model.normalization"
        "=weight_norm`; docs/models.md says why). Test NLL: IWAE K=1000 on the first 1,000 test "
        "images, "
        "the same for every row (the paper: K=5000 on all 10,000); ± is the sd over seeds 0, 1, 2, "
        "trained as one vmapped group. Active units: Cov_x(E_q[z_i]) > 0.01; KL per layer: the "
        "Monte Carlo E_q[log q(z_i|·) − log p(z_i|z_{i+1})] on the test images, the information "
        "a layer adds given the one above. The two can disagree in a top-down model: a unit "
        "whose posterior mean follows x only through the layer above counts as active while "
        "its layer adds no KL, so the observations below read the KL. The paper's "
        "number belongs to a model trained 40 times longer, with batch normalisation: the gap to "
        "it is the budget's, not a reproduction's.\n",
        *table, "",
    ]
    observations = _observations(rows)
    if observations:
        lines += ["The paper's observations, on these records:", "", *observations, ""]
    lines += ["![active units and KL per layer](units_by_layer.png)", "",
              "![training objective](train_curve.png)", ""]
    if hardware:
        lines += [f"Trained on {hardware}: two sweep shards side by side, one per core, with other "
                  "work at times on the same cores, so the seconds per epoch are an upper bound "
                  "(`make bench` times the models on an idle core).", ""]
    (out_dir / "results.md").write_text("\n".join(lines))
    plots.units_by_layer(
        [{"label": r["label"].replace(f", {r['depth']} layers", ""),
          "active_units": s["units"], "latent_dims": s["latent_dims"], "kl": s["kl"]}
         for r in rows for s in r["seeds"]], out_dir / "units_by_layer.png")
    plots.compare_curves({r["label"]: _mean_curve(r["seeds"]) for r in rows},
                         out_dir / "train_curve.png", key="train/loss",
                         ylabel="training −ELBO, β-weighted during warm-up (nats)",
                         title="Training objective per epoch (mean over seeds)")
    return {"table": "\n".join(table) + "\n"}
