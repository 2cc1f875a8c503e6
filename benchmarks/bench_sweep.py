"""A vmapped sweep group against the same runs one after another, and memory against --dry-run.

16 members, one epoch each, of one of two studies (`--study`):
  - mlp: experiments/bench_mlp.py (784-400-20 MLP VAE, batch 128, Adam 1e-3), KL weight
    {0.5, 1, 2, 4} x seed {0, 1, 2, 3}, on dynamically binarized Fashion-MNIST;
  - dsprites: experiments/locatello2019.py (disentanglement_lib's conv VAE on 64 x 64
    dSprites, batch 64, Adam 1e-4), the β-VAE at β = 1 over seeds 0..15: the study's groups.
  - vmapped: what `vaejax sweep` runs, `jax.vmap(program.train_epoch)` over the stacked
    states, compiled once;
  - one after another: what 16 `vaejax train` runs do, a program built, compiled and run
    per member (as `train.train`: jit(init_state), jit(train_epoch) lowered and compiled).
Compile time is included in both totals. Peak memory is the growth of the process's resident
set (VmHWM after resetting it through /proc/self/clear_refs, minus VmRSS before) while the
state is created and the epoch runs, after compilation; on a GPU, `memory_stats()`'s peak.
Each measurement runs in a fresh subprocess.

    python benchmarks/bench_sweep.py [--study mlp|dsprites] [--num-train 10000]   # a markdown table
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
BETAS = (0.5, 1.0, 2.0, 4.0)
SEEDS = (0, 1, 2, 3)
# study -> (experiment file, its overrides, the 16 members' overrides, what the table says)
STUDIES = {
    "mlp": ("bench_mlp.py", [], [[f"objective.beta={b}", f"seed={s}"] for b in BETAS for s in SEEDS],
            "16 x experiments/bench_mlp.py (beta {0.5, 1, 2, 4} x seed {0..3}), 1 epoch each on "
            "{n:,} Fashion-MNIST training images"),
    "dsprites": ("locatello2019.py", ["eval.disentanglement=False"],
                 [[f"seed={s}"] for s in range(16)],
                 "16 x experiments/locatello2019.py (the conv VAE, β-VAE at β = 1, seeds 0..15), "
                 "1 epoch each on {n:,} dSprites training images"),
}


def _status_kb(field: str) -> int | None:
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        pathlib.Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _device_peak(device):
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    return None if not stats else stats.get("peak_bytes_in_use")


def worker(mode: str, num_train: int, study: str = "mlp") -> dict:
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    from vaejax import config as config_lib  # noqa: PLC0415
    from vaejax import sweep  # noqa: PLC0415
    from vaejax.data import load_splits  # noqa: PLC0415
    from vaejax.program import Program  # noqa: PLC0415

    experiment, overrides, members, _ = STUDIES[study]
    config = config_lib.load_config(REPO / "experiments" / experiment,
                                    [*overrides, f"data.num_train={num_train}", "train.epochs=1"])
    splits = load_splits(config, log=lambda *a: None)
    configs = [config_lib.apply_overrides(config, member) for member in members]
    hypers = [Program.build(c, splits.train.images.shape[1:], splits.train.images.shape[0]).hyper(c)
              for c in configs]
    device = jax.devices()[0]
    out = {"mode": mode, "study": study, "num_train": int(splits.train.images.shape[0]),
           "members": len(configs),
           "backend": jax.default_backend(), "device_kind": device.device_kind}

    def build():
        return Program.build(config, splits.train.images.shape[1:], splits.train.images.shape[0])

    def measure_memory(run):
        """Runs `run()` (compiled already); returns the peak bytes it added."""
        rss0 = _status_kb("VmRSS")
        reset = _reset_peak()
        run()
        hwm = _status_kb("VmHWM")
        peak = {"rss_peak_bytes": (hwm - rss0) * 1024 if reset and hwm and rss0 else None}
        if jax.default_backend() != "cpu":
            peak["device_peak_bytes"] = _device_peak(device)
        return peak

    if mode == "vmap":
        start = time.perf_counter()
        program = build()
        stacked = jax.tree.map(lambda *x: jnp.stack(x), *hypers)
        init = jax.jit(jax.vmap(program.init_state)).lower(stacked).compile()
        abstract = jax.eval_shape(jax.vmap(program.init_state), stacked)
        epoch = jax.jit(jax.vmap(program.train_epoch, in_axes=(0, 0, None, None)),
                        donate_argnums=0).lower(abstract, stacked, splits.train,
                                                jnp.int32(0)).compile()
        out["compile_s"] = time.perf_counter() - start

        def run():
            state, metrics = epoch(init(stacked), stacked, splits.train, jnp.int32(0))
            jax.block_until_ready((state, metrics))

        train_start = time.perf_counter()
        out.update(measure_memory(run))
        out["train_s"] = time.perf_counter() - train_start
    else:
        out["compile_s"] = out["train_s"] = 0.0
        for i, hyper in enumerate(hypers):
            start = time.perf_counter()
            program = build()
            init = jax.jit(program.init_state).lower(hyper).compile()
            abstract = jax.eval_shape(program.init_state, hyper)
            epoch = jax.jit(program.train_epoch, donate_argnums=0).lower(
                abstract, hyper, splits.train, jnp.int32(0)).compile()
            out["compile_s"] += time.perf_counter() - start

            def run():
                state, metrics = epoch(init(hyper), hyper, splits.train, jnp.int32(0))  # noqa: B023
                jax.block_until_ready((state, metrics))

            train_start = time.perf_counter()
            if i == 0:
                out.update(measure_memory(run))
            else:
                run()
            out["train_s"] += time.perf_counter() - train_start
    out["total_s"] = out["compile_s"] + out["train_s"]
    members = len(configs) if mode == "vmap" else 1
    out["estimate"] = sweep.memory_estimate(config, splits.train.images.shape[1:], members)
    return out


def _spawn(mode: str, num_train: int, study: str = "mlp") -> dict:
    command = [sys.executable, __file__, "--worker", mode, "--num-train", str(num_train),
               "--study", study]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if proc.returncode:
        raise RuntimeError(f"{mode} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _mb(value) -> str:
    return "n/a" if value is None else f"{value / 2**20:.0f}"


def table(vmap: dict, seq: dict) -> str:
    n = vmap["num_train"]
    peak = "device_peak_bytes" if "device_peak_bytes" in vmap else "rss_peak_bytes"
    what = "device peak" if peak == "device_peak_bytes" else "peak RSS growth"
    rows = [
        ("compile (s)", f"{vmap['compile_s']:.1f}", f"{seq['compile_s']:.1f}"),
        (f"train 1 epoch of {n:,} images per member (s)", f"{vmap['train_s']:.1f}",
         f"{seq['train_s']:.1f}"),
        ("total (s)", f"{vmap['total_s']:.1f}", f"{seq['total_s']:.1f}"),
        ("speedup, total", f"{seq['total_s'] / vmap['total_s']:.1f}x", "1x"),
        ("speedup, training only", f"{seq['train_s'] / vmap['train_s']:.1f}x", "1x"),
        (f"measured {what} while training (MB)", _mb(vmap.get(peak)),
         _mb(seq.get(peak)) + " (one run at a time)"),
        ("--dry-run estimate (MB)", _mb(vmap["estimate"]["total_bytes"]),
         _mb(seq["estimate"]["total_bytes"]) + " (one run)"),
    ]
    what_ran = STUDIES[vmap.get("study", "mlp")][3].format(n=n)
    head = (f"Sweep group: {what_ran}, {vmap['backend']} ({vmap['device_kind']}), "
            f"{os.cpu_count()} cores visible.\n\n")
    lines = ["| | vmapped group of 16 (`vaejax sweep`) "
             "| 16 runs one after another (`vaejax train`) |", "|---|---:|---:|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return head + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-train", type=int, default=10_000,
                        help="training images per epoch (0 = all 50,000)")
    parser.add_argument("--study", choices=tuple(STUDIES), default="mlp")
    parser.add_argument("--worker", choices=("vmap", "seq"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.num_train, args.study)))
        return
    vmap = _spawn("vmap", args.num_train, args.study)
    seq = _spawn("seq", args.num_train, args.study)
    print(table(vmap, seq))


if __name__ == "__main__":
    main()
