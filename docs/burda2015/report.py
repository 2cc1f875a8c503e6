"""The README's Burda et al. (2015) table and figures, from the runs of experiments/burda2015.sh.

    python docs/burda2015/report.py [runs/burda]

Reads each row's run.json, metrics.jsonl, results.json and evals/ (the test NLL of kept
checkpoints, `vaejax eval --epoch`); writes docs/burda2015/results.md (the table and the
paper's two observations checked on our numbers), nll_curve.png (test NLL, IWAE K=5000 on
all 10,000 test images, against epoch, with the paper's numbers as horizontal lines) and
train_curve.png (each row's training objective per epoch). A row still training is reported
with its epochs so far and its latest curve point.
"""
from __future__ import annotations

import pathlib
import sys

import numpy as np

from vaejax import evaluate, plots, records

HERE = pathlib.Path(__file__).resolve().parent
SOURCE = "Burda, Grosse & Salakhutdinov 2015, table 1 (MNIST, one stochastic layer, 3280 epochs)"
# row -> (label, the paper's test NLL in nats)
ROWS = {
    "vae_k1": ("VAE (k=1)", 86.76),
    "iwae_k5": ("IWAE (k=5)", 85.54),
    "iwae_k50": ("IWAE (k=50)", 84.78),
    "vae_k1_cosine500": ("VAE (k=1), cosine decay over 500 epochs", 86.76),
}
CURVE = {"iwae_samples": 5000, "num_test_examples": 10_000}


def _curve(run_dir: pathlib.Path) -> list[dict]:
    """The K=5000, 10,000-image evaluations of kept checkpoints, and of the final model."""
    points = [e for e in evaluate.read_checkpoint_evals(run_dir)
              if all(e.get(k) == v for k, v in CURVE.items())]
    results_path = run_dir / records.RESULTS
    if results_path.exists():
        final = records.read_json(results_path)
        if all(final.get(k) == v for k, v in CURVE.items()):
            points = [p for p in points if p["epoch"] != final["epoch"]] + [final]
    return sorted(points, key=lambda p: p["epoch"])


def _row(name: str, run_dir: pathlib.Path) -> dict | None:
    if not (run_dir / records.RUN_RECORD).exists():
        return None
    label, paper = ROWS[name]
    config = records.read_run_record(run_dir)["config"]
    metrics = records.read_metrics(run_dir)
    results_path = run_dir / records.RESULTS
    results = records.read_json(results_path) if results_path.exists() else None
    curve = _curve(run_dir)
    last = results if results is not None else (curve[-1] if curve else None)
    return {
        "name": name, "label": label, "paper": paper,
        "planned": config["train"]["epochs"], "batch": config["train"]["batch_size"],
        "epochs": metrics[-1]["epoch"] if metrics else 0,
        "train_h": sum(m["epoch_time"] + m.get("compile_time", 0.0) for m in metrics) / 3600,
        "finished": results is not None,
        "at_epoch": None if last is None else last["epoch"],
        "nll": None if last is None else last["test/nll"],
        "stderr": None if last is None else last.get("test/nll_stderr"),
        "neg_elbo": None if last is None else last["test/neg_elbo"],
        "active": None if last is None else f"{last['active_units']}/{last['latent_dim']}",
        "active_units": None if last is None else last["active_units"],
        "eval_min": None if last is None else last.get("eval_time", 0.0) / 60,
        "epoch_s": float(np.median([m["epoch_time"] for m in metrics])) if metrics else None,
        "curve": curve, "metrics": metrics,
    }


def _fmt(value, spec=".2f") -> str:
    return "" if value is None else format(value, spec)


def _observations(rows: dict[str, dict]) -> list[str]:
    """The paper's two observations, checked on the rows that have a final evaluation."""
    out = []
    for name in ("iwae_k5", "iwae_k50"):
        vae, iwae = rows.get("vae_k1"), rows.get(name)
        if vae is None or iwae is None or vae["nll"] is None or iwae["nll"] is None:
            continue
        common = sorted({p["epoch"] for p in vae["curve"]} & {p["epoch"] for p in iwae["curve"]})
        if common and vae["at_epoch"] != iwae["at_epoch"]:  # compare at the latest shared epoch
            at = lambda row: next(p for p in row["curve"] if p["epoch"] == common[-1])  # noqa: E731
            vae, iwae = ({**row, "at_epoch": common[-1], "nll": at(row)["test/nll"],
                          "neg_elbo": at(row)["test/neg_elbo"],
                          "active_units": at(row)["active_units"],
                          "active": f"{at(row)['active_units']}/{at(row)['latent_dim']}"}
                         for row in (vae, iwae))
        if vae["at_epoch"] != iwae["at_epoch"]:
            out.append(
                f"- {iwae['label']} vs VAE: no epoch evaluated in both yet ({iwae['label']} "
                f"at epoch {iwae['at_epoch']}: test NLL {iwae['nll']:.2f}, test −ELBO "
                f"{iwae['neg_elbo']:.2f}, active units {iwae['active']}); checked once they "
                "share one.")
            continue
        better_nll = iwae["nll"] < vae["nll"]
        worse_elbo = iwae["neg_elbo"] > vae["neg_elbo"]
        more_units = iwae["active_units"] > vae["active_units"]
        out.append(
            f"- {iwae['label']} vs VAE (both at epoch {vae['at_epoch']}): test NLL "
            f"{iwae['nll']:.2f} vs {vae['nll']:.2f} ({'better' if better_nll else 'not better'}: "
            f"the paper's 'better NLL' {'holds' if better_nll else 'does not hold'}); "
            f"test −ELBO {iwae['neg_elbo']:.2f} vs {vae['neg_elbo']:.2f} ({'worse' if worse_elbo else 'not worse'}: the paper's "
            f"'worse ELBO' {'holds' if worse_elbo else 'does not hold'}); active units "
            f"{iwae['active']} vs {vae['active']} ({'more' if more_units else 'not more'}: "
            f"'more active units' {'holds' if more_units else 'does not hold'}).")
    return out


def main(runs_dir="runs/burda"):
    runs_dir = pathlib.Path(runs_dir)
    rows = {name: row for name in ROWS if (row := _row(name, runs_dir / name)) is not None}
    lines = [
        "# Burda et al. 2015, table 1, one stochastic layer\n",
        f"Reference: {SOURCE}. Ours: experiments/iwae_mnist.py (784-200-200-50 tanh, dynamically "
        "binarized MNIST, Adam ε=1e-4 with the paper's 10^(−i/7) over 3^i-epoch stages, batch "
        "100 instead of the paper's 20), trained and evaluated by experiments/burda2015.sh. "
        "Test NLL: IWAE K=5000 on all 10,000 test images (± its standard error over images); "
        "−ELBO: one posterior sample per image. Times: training on one CPU core each (pinned "
        "with taskset; the machine's other core ran another row), evaluation of the final "
        "model (of the latest curve point for a row still training; one that ran beside a "
        "training on the same core took about twice as long). The learning rate drops by "
        "10^(−1/7) at the end of epochs 1, 4, 13, 40, 121, 364 and 1093 (the curve's epoch "
        "axis is logarithmic).\n",
        "| row | epochs (of planned) | train time | test NLL | paper | gap | test −ELBO | "
        "active units | eval time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows.values():
        gap = None if row["nll"] is None else row["nll"] - row["paper"]
        state = "" if row["finished"] else (
            f" (training; NLL at epoch {row['at_epoch']})" if row["nll"] is not None else " (training)")
        nll = "" if row["nll"] is None else f"{row['nll']:.2f}"
        if row["stderr"] is not None:
            nll += f" ± {row['stderr']:.2f}"
        eval_time = "" if row["eval_min"] is None else f"{row['eval_min']:.1f} min"
        lines.append(
            f"| {row['label']}{state} | {row['epochs']} ({row['planned']}) | "
            f"{row['train_h']:.1f} h | {nll} | {row['paper']:.2f} | {_fmt(gap, '+.2f')} | "
            f"{_fmt(row['neg_elbo'])} | {row['active'] or ''} | {eval_time} |")
    training = [row for row in rows.values() if not row["finished"] and row["epoch_s"]]
    if training:
        lines += ["", "Rows still training, and what their full budget costs here:", ""]
        lines += [f"- {row['label']}: {row['epochs']} of {row['planned']} epochs in "
                  f"{row['train_h']:.1f} h, {row['epoch_s']:.1f} s per epoch (median): the "
                  f"paper's {row['planned']} epochs would take "
                  f"{row['planned'] * row['epoch_s'] / 3600:.0f} h on one core."
                  for row in training]
    epochs = sorted({p["epoch"] for row in rows.values() for p in row["curve"]})
    if epochs:
        lines += ["", "The learning curves (test NLL, same evaluation, of the checkpoints kept "
                  "every 80 epochs, every 40 for IWAE k=50, and of the final model):", "",
                  "| epoch | " + " | ".join(row["label"] for row in rows.values()) + " |",
                  "|---:|" + "---:|" * len(rows)]
        for epoch in epochs:
            cells = [next((f"{p['test/nll']:.2f}" for p in row["curve"] if p["epoch"] == epoch), "")
                     for row in rows.values()]
            lines.append(f"| {epoch} | " + " | ".join(cells) + " |")
    lines += ["", "The paper's observations, checked on these numbers:", ""]
    lines += _observations(rows) or ["- (not yet: an IWAE row and the VAE row need evaluations)"]
    lines += ["", "![test NLL learning curve](nll_curve.png)", "",
              "![training objective](train_curve.png)", ""]
    (HERE / "results.md").write_text("\n".join(lines))
    # one line per paper number: the cosine row's target is the VAE's, drawn once
    papers = [row for row in rows.values() if row["name"] in ("vae_k1", "iwae_k5", "iwae_k50")]
    plots.compare_curves(
        {row["label"]: row["curve"] for row in rows.values()}, HERE / "nll_curve.png",
        key="test/nll", ylabel="test NLL, IWAE K=5000, 10,000 images (nats)",
        references={f"paper: {row['label']} {row['paper']}": row["paper"] for row in papers},
        reference_runs={f"paper: {row['label']} {row['paper']}": row["label"] for row in papers},
        title="Test NLL of kept checkpoints, against the paper's", log_epochs=True)
    plots.compare_curves(
        {row["label"]: row["metrics"] for row in rows.values()}, HERE / "train_curve.png",
        key="train/loss", ylabel="training objective: −ELBO (VAE), −IWAE bound (nats)",
        title="Training objective per epoch", log_epochs=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main(*sys.argv[1:])
