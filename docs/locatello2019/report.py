"""Locatello et al. (2019), the unsupervised study on dSprites at a CPU budget: the page,
figures and README block, from records/ alone.

    vaejax sweep experiments/locatello2019.py --workdir sweeps/locatello2019_cpu \\
        --config.train.epochs=1 --config.data.num_train=65536 \\
        --config.eval.disentanglement_examples=2000 --max-group-size 3 [--shard g/36]
    vaejax record sweeps/locatello2019_cpu/runs/RUN docs/locatello2019/records/METHOD_STRENGTH_seedS
    vaejax report docs/locatello2019

With `--max-group-size 3` each group is one setting's three seeds, so `--shard g/36` trains
group g alone (plan order: a method's six strengths, then the next method's). Each model is
one record, named by its method, strength and seed. Every number on the page is read from the
records: the metrics from results.json (`disentanglement/*`), the training loss from the last
epoch of train.json.
"""
from __future__ import annotations

import pathlib

import numpy as np

from vaejax import config as config_lib
from vaejax import disentanglement, plots, published

PAPER = ("Locatello, Bauer, Lucic, Rätsch, Gelly, Schölkopf & Bachem 2019, *Challenging Common "
         "Assumptions in the Unsupervised Learning of Disentangled Representations* (ICML)")
STUDY = config_lib.load_module(pathlib.Path(__file__).parents[2] / "experiments" / "locatello2019.py")
METHODS = {"beta_vae": "β-VAE", "beta_tcvae": "β-TCVAE", "factor_vae": "FactorVAE",
           "dip_vae_i": "DIP-VAE-I", "dip_vae_ii": "DIP-VAE-II", "annealed_vae": "AnnealedVAE"}
# the six metrics of the paper's figures: results.json key -> label
METRICS = {"disentanglement/beta_vae_eval_accuracy": "BetaVAE score",
           "disentanglement/factor_vae_eval_accuracy": "FactorVAE score",
           "disentanglement/mig": "MIG",
           "disentanglement/dci_disentanglement": "DCI disentanglement",
           "disentanglement/modularity": "Modularity",
           "disentanglement/sap": "SAP"}
# The unsupervised scores a model could be selected by, from results.json (the final model on
# the first 10,000 test images), negated so that higher is better, as for the metrics: the
# ELBO (β = 1 for every method, so one scale for all) and the reconstruction term alone.
SCORES = {"test/neg_elbo": "ELBO", "test/distortion": "−reconstruction error"}


MIN_MODELS = 10     # the rank-correlation findings are read over at least this many models
MIN_PER_METHOD = 3  # and a method is compared with at least this many of its own


def row_name(method: str, strength: float, seed: int) -> str:
    return f"{method}_{strength:g}_seed{seed}"


KNOWN_ROWS = tuple(row_name(method, value, seed)
                   for method, (_, _, values, _) in STUDY.STRENGTHS.items()
                   for value in values for seed in STUDY.SEEDS)


def _models(records) -> list[dict]:
    """One dict per finished model: method, strength, seed, each metric, the losses."""
    out = []
    for method, (kind, setting, values, _) in STUDY.STRENGTHS.items():
        for value in values:
            for seed in STUDY.SEEDS:
                record = records.get(row_name(method, value, seed))
                if record is None or record.results is None:
                    continue
                res, objective = record.results, record.config["objective"]
                if objective["kind"] != kind or float(objective[setting]) != value:
                    raise published.RecordError(
                        f"record {row_name(method, value, seed)} trained objective "
                        f"{objective['kind']} with {setting}={objective.get(setting)}")
                out.append({"method": METHODS[method], "strength": value, "seed": seed,
                            **{label: res[key] for key, label in METRICS.items()},
                            **{label: -res[key] for key, label in SCORES.items()},
                            "record": record})
    return out


def _mean_sd(values, digits: int = 2) -> str:
    values = np.asarray(values, float)
    mean = f"{values.mean():.{digits}f}"
    return mean if values.size < 2 else f"{mean} ± {values.std(ddof=1):.{digits}f}"


def _table(models) -> list[str]:
    lines = ["| method | strength | seeds | " + " | ".join(METRICS.values()) + " | test −ELBO |",
             "|---|---:|---:|" + "---:|" * (len(METRICS) + 1)]
    keys = dict.fromkeys((m["method"], m["strength"]) for m in models)
    for method, strength in keys:
        mine = [m for m in models if (m["method"], m["strength"]) == (method, strength)]
        lines.append(f"| {method} | {strength:g} | {len(mine)} | "
                     + " | ".join(_mean_sd([m[label] for m in mine], 3) for label in METRICS.values())
                     + f" | {_mean_sd([-m['ELBO'] for m in mine])} |")
    return lines


def spread(models, method: str, metric: str) -> tuple[float, float] | None:
    """(seed spread, strength spread) of one method's metric: the mean over strengths of the
    sd across seeds, and the sd across strengths of the mean over seeds. None where the
    method has fewer than two strengths with two seeds each."""
    by_strength = {}
    for m in models:
        if m["method"] == method:
            by_strength.setdefault(m["strength"], []).append(m[metric])
    by_strength = {k: v for k, v in by_strength.items() if len(v) >= 2}
    if len(by_strength) < 2:
        return None
    seeds = float(np.mean([np.std(v, ddof=1) for v in by_strength.values()]))
    strengths = float(np.std([np.mean(v) for v in by_strength.values()], ddof=1))
    return seeds, strengths


def _spread_table(models) -> tuple[list[str], list[bool]]:
    methods = list(dict.fromkeys(m["method"] for m in models))
    lines = ["| method | " + " | ".join(METRICS.values()) + " |", "|---|" + "---|" * len(METRICS)]
    verdicts = []
    for method in methods:
        cells = []
        for metric in METRICS.values():
            s = spread(models, method, metric)
            if s is None:
                cells.append("")
                continue
            verdicts.append(s[0] >= s[1])
            cells.append(f"{s[0]:.3f} / {s[1]:.3f}")
        if any(cells):
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines, verdicts


def _correlations(models) -> tuple[list[str], np.ndarray]:
    labels = [*METRICS.values(), *SCORES.values()]
    return labels, disentanglement.rank_correlation([[m[label] for label in labels] for m in models])


def _winners(models) -> dict[str, str]:
    """Per metric, the method with the best mean over its models."""
    methods = list(dict.fromkeys(m["method"] for m in models))
    return {metric: max(methods, key=lambda method: np.mean(
        [m[metric] for m in models if m["method"] == method])) for metric in METRICS.values()}


def _findings(models, verdicts, labels, matrix) -> list[str]:
    """The paper's findings read on `models`, each one line that ends in holds, does not hold,
    or cannot be judged yet (with why). verdicts: per (method, metric) pair, whether the seed
    spread is at least the strength spread; matrix: the rank correlations over `labels` (the
    metrics, then SCORES), or None while fewer than MIN_MODELS models are trained."""
    return [_seed_finding(models, verdicts), *_correlation_findings(models, labels, matrix),
            _winner_finding(models)]


def _seed_finding(models, verdicts) -> str:
    if not verdicts:
        return ("- *Random seeds matter as much as hyperparameters*: cannot be judged yet, "
                "no method has two strengths with two seeds each.")
    methods = list(dict.fromkeys(m["method"] for m in models))
    trained = "; ".join(f"{method}: " + ", ".join(
        f"{v:g}" for v in sorted({m["strength"] for m in models if m["method"] == method}))
        for method in methods)
    share = sum(verdicts) / len(verdicts)
    return (f"- *Random seeds matter as much as hyperparameters.* In {sum(verdicts)} of "
            f"{len(verdicts)} (method, metric) pairs the spread across seeds is at least the "
            f"spread across strengths (table above): "
            f"{'holds' if share >= 0.5 else 'does not hold'} at this budget, for the "
            f"strengths trained ({trained}).")


def _correlation_findings(models, labels, matrix) -> list[str]:
    if matrix is None:
        return ["- *Metrics agree only partly*, and whether the unsupervised loss picks the "
                f"models the metrics prefer: cannot be judged yet, {len(models)} models "
                f"(fewer than {MIN_MODELS}; the figure shows their correlations)."]
    n, lines = len(METRICS), []
    off = matrix[:n, :n][~np.eye(n, dtype=bool)]
    off = off[np.isfinite(off)]  # a metric constant over the models has no rank correlation
    if off.size:
        weak = [f"{labels[i]} and {labels[j]} ({matrix[i, j]:.2f})" for i in range(n)
                for j in range(i + 1, n) if np.isfinite(matrix[i, j]) and round(matrix[i, j], 6) < 0.5]
        lines.append(
            f"- *Metrics agree only partly.* The rank correlations between the six metrics over "
            f"the {len(models)} models range from {off.min():.2f} to {off.max():.2f} (median "
            f"{np.median(off):.2f}); {len(weak)} of {off.size // 2} pairs are below 0.5"
            + (f": {'; '.join(weak)}" if weak else "")
            + f": {'holds' if weak else 'does not hold'}.")
    for k, score in enumerate(SCORES.values()):
        row = matrix[n + k, :n]
        agree = [label for label, value in zip(labels, row) if np.isfinite(value) and value > 0.5]
        lines.append(
            f"- *Does the unsupervised loss pick the models the metrics prefer?* The rank "
            f"correlation of the test {score} with each metric: "
            + ", ".join(f"{label} {value:.2f}" for label, value in zip(labels, row)
                        if np.isfinite(value))
            + f": above 0.5 for {len(agree)} of the {n} metrics"
            + (f" ({', '.join(agree)})" if agree else "") + ".")
    return lines


def _winner_finding(models) -> str:
    counted = [m for m in models
               if sum(o["method"] == m["method"] for o in models) >= MIN_PER_METHOD]
    methods = list(dict.fromkeys(m["method"] for m in counted))
    if len(methods) < 2:
        return (f"- *No method wins consistently*: cannot be judged yet, fewer than two "
                f"methods with {MIN_PER_METHOD} models or more.")
    winners = _winners(counted)
    verdict = "holds" if len(set(winners.values())) > 1 else "does not hold"
    trained = {method: sorted({m["strength"] for m in counted if m["method"] == method})
               for method in methods}
    study = {METHODS[key]: values for key, (_, _, values, _) in STUDY.STRENGTHS.items()}
    scope = f"the {len(methods)} methods trained ({', '.join(methods)})"
    if any(len(values) < len(study[method]) for method, values in trained.items()):
        scope = (f"the {len(methods)} methods trained so far, at only part of their strengths ("
                 + "; ".join(f"{method} at {', '.join(f'{v:g}' for v in values)}"
                             for method, values in trained.items())
                 + "), so not yet across each method's range")
    return ("- *No method wins consistently.* The method with the best mean per metric (over "
            "its seeds and the strengths trained): "
            + ", ".join(f"{metric} {method}" for metric, method in winners.items())
            + f": {verdict} among {scope}.")


def _scoring_split(models) -> str:
    """Where the scoring time goes, from the records that time each metric
    (`disentanglement_metric_time`); empty when none does."""
    timed = [m["record"].results["disentanglement_metric_time"] for m in models
             if "disentanglement_metric_time" in m["record"].results]
    if not timed:
        return ""
    shares = {name: np.median([t[name] / sum(t.values()) for t in timed]) for name in timed[0]}
    return (f" Each metric's share of it (median of the {len(timed)} models that time it): "
            + ", ".join(f"{name} {share:.0%}" for name, share in
                        sorted(shares.items(), key=lambda item: -item[1])) + ".")


def render(records, out_dir) -> dict[str, str]:
    out_dir = pathlib.Path(out_dir)
    models = _models(records)
    if not models:
        raise published.RecordError("no finished model among the records")
    first = models[0]["record"]
    config = first.config
    steps = first.results.get("step")
    examples = first.results["eval_settings"]["disentanglement_examples"]
    table = _table(models)
    spread_lines, verdicts = _spread_table(models)
    labels, matrix = _correlations(models) if len(models) >= 3 else ([], None)
    judged = matrix if len(models) >= MIN_MODELS else None
    methods = list(dict.fromkeys(m["method"] for m in models))
    budget = (f"{config['train']['epochs']} epoch of the first {config['data']['num_train']:,} "
              f"training images at batch {config['train']['batch_size']}"
              + (f" ({steps:,} steps)" if steps else "") + ", against the paper's 300,000 steps")
    lines = [
        "# Locatello et al. 2019: the unsupervised disentanglement study, at a CPU budget\n",
        f"Reference: {PAPER}, the study of disentanglement_lib's `unsupervised_study_v1`. "
        f"Every model here is the paper's: disentanglement_lib's conv encoder and decoder, "
        f"10 latents, Bernoulli likelihood, Adam at 1e-4, batch 64, on dSprites re-rendered on "
        f"the published factor grid (`vaejax.data.dsprites`: our pixels, not the original "
        f"file's). The budget is {budget}, so these models are early in training: what they "
        f"show is how the study reads, and which of the paper's findings can be judged this early, "
        f"not the paper's numbers. The metrics score images from the whole grid, "
        f"{examples:,} points each (`eval.disentanglement_examples`; disentanglement_lib "
        f"scores 10,000); test −ELBO is on "
        f"the first {first.results['num_test_examples']:,} test images. ± is the sd over seeds.\n",
        f"Trained so far: {len(models)} model{'s' * (len(models) != 1)}, {len(methods)} of the 6 methods "
        f"({', '.join(methods)}), of the {len(KNOWN_ROWS)} the study defines (6 methods × 6 "
        f"strengths × {len(STUDY.SEEDS)} seeds).\n",
        *table, "",
        "![each metric against each method's strength](metrics_vs_strength.png)", "",
        *(["Seeds against strengths: per method and metric, the mean sd across seeds at one "
            "strength / the sd across strengths of the mean over seeds (does the seed move a "
            "metric as much as the setting does?):", "", *spread_lines, ""] if verdicts else []),
        *(["![rank correlation between the metrics](rank_correlation.png)", ""]
          if matrix is not None else []),
        "The paper's findings, on these records:", "",
        *_findings(models, verdicts, labels, judged), "",
    ]
    hardware = published.hardware_of(records)
    if hardware:
        epoch_s = np.median([m["record"].train["median_epoch_seconds"] for m in models])
        scoring_s = [m["record"].results["disentanglement_time"] for m in models]
        lines += [f"Trained on {hardware}, one group of three seeds per core: "
                  f"{epoch_s / 60:.0f} min of training per group (median). Scoring took "
                  f"{min(scoring_s) / 60:.0f} to {max(scoring_s) / 60:.0f} min per model "
                  f"(`disentanglement_time`); it depends on what else ran on the machine."
                  + _scoring_split(models), ""]
    (out_dir / "results.md").write_text("\n".join(lines))
    plots.metrics_vs_strength(models, out_dir / "metrics_vs_strength.png",
                              metrics=list(METRICS.values()))
    if matrix is not None:
        plots.rank_correlation(matrix, labels, out_dir / "rank_correlation.png",
                               title=f"Rank correlation over the {len(models)} models (Spearman)")
    return {"table": "\n".join(table) + "\n"}
