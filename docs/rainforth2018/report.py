"""Rainforth et al. (2018), MNIST: the page from records/ alone.

    vaejax sweep experiments/rainforth2018.py --workdir runs/rainforth/sweep   # resumable
    vaejax record runs/rainforth/sweep/runs/<run> docs/rainforth2018/records/<objective>
    vaejax report docs/rainforth2018

Each row is one objective's run (one vmapped group each), trained at this study's budget
(experiments/rainforth2018.py: 5 epochs at batch 20, 15,000 steps), far below the paper's, so
the rows compare the objectives at equal cost, not with the paper's numbers.
"""
from __future__ import annotations

import pathlib

# row -> (objective, the reference test NLL in nats, as experiments/rainforth2018.py quotes it)
ROWS = {"iwae": ("IWAE, K = 64", None), "miwae": ("MIWAE(8, 8)", 84.97),
        "piwae": ("PIWAE(8, 8)", 84.46), "ciwae": ("CIWAE(β = 0.05), K = 64", 84.57)}


def render(records, out_dir) -> dict[str, str]:
    unknown = sorted(set(records) - set(ROWS))
    if unknown:
        raise ValueError(f"docs/rainforth2018/records has rows the page does not know: {unknown}")
    lines = ["# Rainforth et al. 2018, MNIST\n",
             "Test NLL: IWAE K=5000 on all 10,000 test images, ± its standard error over images. "
             "The budget is this study's (5 epochs, 15,000 steps at batch 20), not the paper's: "
             "the reference numbers (quoted in experiments/rainforth2018.py) are for scale only.\n",
             "| objective | epochs | test NLL, K=5000 | reference | test −ELBO | active units | "
             "s per epoch |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, (label, reference) in ROWS.items():
        record = records.get(name)
        if record is None or record.results is None:
            continue
        res = record.results
        lines.append(f"| {label} | {record.train['epochs']} | {res['test/nll']:.2f} ± "
                     f"{res['test/nll_stderr']:.2f} | {'' if reference is None else f'{reference:.2f}'} | "
                     f"{res['test/neg_elbo']:.2f} | {res['active_units']}/{res['latent_dim']} | "
                     f"{record.train['median_epoch_seconds']:.1f} |")
    hardware = sorted({f"{r.run['hardware']['cpu']} ({r.run['hardware']['cores']} cores)"
                       for r in records.values()})
    lines += ["", "Command: `vaejax sweep experiments/rainforth2018.py` (each row is its point of "
              "the sweep). Trained on " + "; ".join(hardware) + ", the cores shared with other runs.",
              ""]
    (pathlib.Path(out_dir) / "results.md").write_text("\n".join(lines))
    return {}
