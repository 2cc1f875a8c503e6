"""The README's latent size x beta results, from the sweep of experiments/latent_kl_sweep.py.

    python docs/latent_kl/report.py [sweeps/latent_kl] [LOG...]

Runs `vaejax sweep-report` on the sweep (its results.md, results.csv and figures/), then
writes docs/latent_kl/results.md: how the sweep ran (each group's training and evaluation
time, from its members' records; the peak memory of each process, read from the LOGs of
`/usr/bin/time -v vaejax sweep ...` when given), the mean ± std over seeds and every run; and
copies the figures to docs/latent_kl/figures/.
"""
from __future__ import annotations

import pathlib
import re
import shutil
import sys

import numpy as np

from vaejax import records
from vaejax.sweep import results as results_lib

HERE = pathlib.Path(__file__).resolve().parent


def _groups(rows: list[dict], sweep_dir: pathlib.Path) -> list[str]:
    """One table row per group: members, epochs, training time (the sum of a member's epoch
    and compile times: the members train together), median epoch, evaluation time."""
    lines = ["| group | runs | epochs | training | median epoch | evaluation (IWAE K=250) |",
             "|---|---:|---:|---:|---:|---:|"]
    by_group: dict[str, list[dict]] = {}
    for row in rows:
        by_group.setdefault(row["group"] or row["name"], []).append(row)
    for group, members in by_group.items():
        metrics = records.read_metrics(sweep_dir / "runs" / members[0]["name"])
        if not metrics:
            lines.append(f"| {group} | {len(members)} | 0 | | | |")
            continue
        train = sum(m["epoch_time"] + m.get("compile_time", 0.0) for m in metrics)
        results_path = sweep_dir / "runs" / members[0]["name"] / records.RESULTS
        evaluation = records.read_json(results_path)["eval_time"] if results_path.exists() else None
        lines.append(
            f"| {group} | {len(members)} | {metrics[-1]['epoch']} | {train / 60:.1f} min | "
            f"{np.median([m['epoch_time'] for m in metrics]):.1f} s | "
            + ("" if evaluation is None else f"{evaluation / 60:.1f} min") + " |")
    return lines


def _peak_memory(logs: list[str]) -> list[str]:
    """"- <log>: peak RSS 1.23 GB" for each log with /usr/bin/time -v's report."""
    out = []
    for log in logs:
        text = pathlib.Path(log).read_text()
        found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
        elapsed = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text)
        if found:
            out.append(f"- `{pathlib.Path(log).name}`: peak resident memory "
                       f"{int(found.group(1)) / 1e6:.2f} GB over {elapsed.group(1) if elapsed else '?'} "
                       "(the whole process: JAX, the data, every group it trained)")
        else:
            out.append(f"- `{pathlib.Path(log).name}`: no peak memory (the process was stopped "
                       "before /usr/bin/time could report it)")
    return out


def main(sweep_dir="sweeps/latent_kl", *logs):
    sweep_dir = pathlib.Path(sweep_dir)
    rows = results_lib.report(sweep_dir)
    sweep_md = (sweep_dir / "results.md").read_text()
    figures = HERE / "figures"
    figures.mkdir(exist_ok=True)
    for name in results_lib.FIGURES:
        shutil.copy(sweep_dir / "figures" / name, figures / name)
    finished = sum(r["status"] == "finished" for r in rows)
    disk = sum(f.stat().st_size for f in sweep_dir.rglob("*") if f.is_file())
    group_disk = sum(f.stat().st_size for f in (sweep_dir / "groups").rglob("*") if f.is_file())
    lines = [
        "# Latent size × β on MNIST (experiments/latent_kl_sweep.py)\n",
        f"{finished} of {len(rows)} runs finished. MLP VAE (784-512-256-z, ReLU, Bernoulli "
        "likelihood, dynamically binarized MNIST), 10 epochs of batch 128 each, Adam; test "
        "metrics on all 10,000 test images, NLL by IWAE with K=250. Machine: a 2-core AMD EPYC "
        "VM, CPU only, each group on one core beside another job on the other.\n",
        "```bash",
        "vaejax sweep experiments/latent_kl_sweep.py --workdir sweeps/latent_kl   # again to resume",
        "python docs/latent_kl/report.py sweeps/latent_kl                       # this page",
        "```\n",
        "## How it ran\n",
        "The 15 runs of a latent dim (5 β × 3 seeds) train as one vmapped program, and are "
        "evaluated together.\n",
        *_groups(rows, sweep_dir), "",
        *_peak_memory(list(logs)),
        f"- disk: {disk / 1e9:.2f} GB for the whole sweep directory, of which "
        f"{group_disk / 1e9:.2f} GB are the groups' stacked checkpoints (the last of each "
        "finished group; each run keeps its own slice of it too).\n",
        sweep_md.replace("](figures/", "](figures/").replace("# Sweep latent_kl\n", "", 1),
    ]
    (HERE / "results.md").write_text("\n".join(lines))
    print(f"wrote {HERE / 'results.md'} and {len(results_lib.FIGURES)} figures")


if __name__ == "__main__":
    main(*sys.argv[1:])
