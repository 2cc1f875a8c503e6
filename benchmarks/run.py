"""`make bench`: speed of vaejax against its floor, measured in one run on this machine.

Floor = the floating-point operations of the work (counted by XLA's cost analysis of the
compiled program) / the machine's matrix-multiply rate (a large float32 `jnp.dot`, timed
here). Reports, as a markdown file (default benchmarks/RESULTS.md, the previous results kept
below a new dated section):
  - MLP VAE epoch (experiments/bench_mlp.py: 784-400-20, batch 128, Fashion-MNIST) vs floor
    and vs a plain hand-written jitted-scan JAX script (benchmarks/plain_jax_mlp.py), and the
    test negative ELBO of both after the same number of epochs;
  - where that epoch's time goes, per kind of XLA operation (benchmarks/epoch_profile.py);
  - the conv VAE of TensorFlow's CVAE tutorial (experiments/cvae_mnist.py) epoch time vs floor;
  - compile times; IWAE K=5000 evaluation throughput vs floor; peak memory;
  - a vmapped sweep group of 16 against the same 16 runs one after another, and the
    --dry-run memory estimate against the measured peak, for the MLP VAE and for the
    Locatello study's conv VAE on dSprites (benchmarks/bench_sweep.py);
  - the step time of every objective against the plain IWAE at equal K
    (benchmarks/objectives.py);
  - the step time of every model family against the MLP VAE, and its IWAE evaluation cost
    (benchmarks/model_families.py);
  - the MLP epoch with the in-epoch progress callback against without (benchmarks/progress.py);
  - each disentanglement metric's cost on 10,000 codes (benchmarks/disentanglement_metrics.py);
  - AIS against IWAE as estimators of log p(x), at equal time and equal accuracy
    (benchmarks/ais_vs_iwae.py).

    python benchmarks/run.py [--out benchmarks/RESULTS.md] [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import pathlib
import platform
import resource
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from vaejax import config as config_lib  # noqa: E402
from vaejax import evaluate  # noqa: E402
from vaejax import metrics as metrics_lib  # noqa: E402
from vaejax.data import load_splits  # noqa: E402
from vaejax.program import Program, run_keys  # noqa: E402

import bench_sweep  # noqa: E402
import ais_vs_iwae  # noqa: E402
import disentanglement_metrics as metrics_bench  # noqa: E402
import model_families as families_bench  # noqa: E402
import objectives as objectives_bench  # noqa: E402
import epoch_profile  # noqa: E402
import plain_jax_mlp  # noqa: E402
import progress as progress_bench  # noqa: E402


def quiet(*_):
    pass


def machine() -> str:
    from vaejax import records  # noqa: PLC0415

    cpu = records.hardware()["cpu"]
    dev = jax.devices()[0]
    return (f"{platform.node() or 'host'}: {cpu}, {os.cpu_count()} cores visible, "
            f"JAX {jax.__version__} on {jax.default_backend()} ({dev.device_kind}, "
            f"{jax.device_count()} device(s))")


def matmul_rate(n: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a float32 n x n x n matrix multiply (best of `repeats`)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        dot(a, a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def flops_of(compiled) -> float:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0]
    return float(analysis.get("flops", float("nan")))


def bench_training(config_path, overrides, epochs, rate, log, interleave=None):
    """Compile time, per-epoch seconds (median) and the FLOP floor of one epoch.

    `interleave()`, if given, runs after each of our epochs (another trainer's epoch), so
    that both see the same drift in the machine's speed.
    """
    config = config_lib.load_config(REPO / config_path, overrides)
    splits = load_splits(config, log=quiet)
    program = Program.build(config, splits.train.images.shape[1:], splits.train.images.shape[0])
    hyper = program.hyper(config)
    state = jax.jit(program.init_state)(hyper)
    start = time.perf_counter()
    epoch_fn = jax.jit(program.train_epoch, donate_argnums=0).lower(
        state, hyper, splits.train, jnp.int32(0)).compile()
    compile_time = time.perf_counter() - start
    # XLA counts a scan body once: count one step, times the steps of an epoch.
    keys = run_keys(hyper["seed"])
    batch = splits.train.images[: program.batch_size]
    step_flops = flops_of(jax.jit(program.train_step).lower(state, hyper, batch, keys).compile())
    epoch_flops = step_flops * program.steps_per_epoch
    times = []
    for e in range(epochs):
        start = time.perf_counter()
        state, metrics = epoch_fn(state, hyper, splits.train, jnp.int32(e))
        jax.block_until_ready(state)
        times.append(time.perf_counter() - start)
        log(f"  {config_path} epoch {e + 1}: {times[-1]:.3f} s, "
            f"loss {float(np.mean(metrics['loss'])):.2f}")
        if interleave is not None:
            interleave()
    return {
        "config": config, "program": program, "state": state, "splits": splits, "hyper": hyper,
        "compile_time": compile_time, "epoch_time": statistics.median(times),
        "epoch_times": times, "epoch_flops": epoch_flops, "floor": epoch_flops / rate,
        "steps": program.steps_per_epoch,
    }


def plain_test_neg_elbo(params, test_u8, key) -> float:
    """The plain script's test negative ELBO (one sample, one binarization), nats."""
    x = jax.random.bernoulli(key, test_u8.reshape(test_u8.shape[0], -1) / 255.0).astype(jnp.float32)
    return float(jax.jit(plain_jax_mlp.neg_elbo)(params, jax.random.fold_in(key, 1), x))


def bench_iwae(result, rate, num_examples, k, log):
    program, params = result["program"], result["state"].params
    test = result["splits"].test.images[:num_examples]
    run = functools.partial(
        evaluate.iwae_log_likelihood, program.model, params, test, jax.random.key(0),
        data_shape=program.data_shape, preprocessing=program.preprocessing, num_samples=k,
        chunk_size=500, batch_size=50)
    start = time.perf_counter()
    run()  # compiles
    first = time.perf_counter() - start
    start = time.perf_counter()
    log_px = run()
    seconds = time.perf_counter() - start
    # FLOPs: decode K samples per example + encode once, counted by XLA on one example.
    from vaejax import objectives  # noqa: PLC0415

    encode, decode, prior = objectives.model_functions(program.model, params)
    one = jax.jit(lambda x: objectives.iwae_log_weights(
        jax.random.key(0), x, encode, decode, likelihood=metrics_lib.binary_log_likelihood,
        num_samples=k, prior=prior))
    x0 = jnp.zeros(program.data_shape)
    flops = flops_of(one.lower(x0).compile()) * num_examples
    return {"examples": num_examples, "k": k, "seconds": seconds, "compile": first - seconds,
            "examples_per_sec": num_examples / seconds, "floor": flops / rate,
            "nll": float(-np.mean(log_px))}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "RESULTS.md"))
    parser.add_argument("--quick", action="store_true", help="fewer epochs and examples")
    args = parser.parse_args()
    log = functools.partial(print, flush=True)
    epochs = 2 if args.quick else 5
    quality_epochs = 3 if args.quick else 10

    log(f"machine: {machine()}")
    rate = matmul_rate()
    log(f"matmul: {rate / 1e9:.1f} GFLOP/s (float32 2048^3)")

    log("MLP VAE (bench_mlp.py), epochs interleaved with the plain JAX script's")
    train_x = np.asarray(load_splits(
        config_lib.load_config(REPO / "experiments/bench_mlp.py"), log=quiet).train.images)
    plain_epoch, _ = plain_jax_mlp.trainer(train_x)
    plain_times = []

    def plain_step():
        seconds, loss = plain_epoch()
        plain_times.append(seconds)
        log(f"  plain JAX script epoch {len(plain_times)}: {seconds:.3f} s, loss {loss:.2f}")

    mlp = bench_training("experiments/bench_mlp.py", [], epochs, rate, log, interleave=plain_step)
    plain_time = statistics.median(plain_times)
    log("MLP epoch traced per XLA operation (fresh process)")
    profile = epoch_profile.profile("experiments/bench_mlp.py")
    log(f"  {profile}")

    log(f"quality after {quality_epochs} epochs: vaejax vs plain script")
    q = bench_training("experiments/bench_mlp.py", [f"train.epochs={quality_epochs}"],
                       quality_epochs, rate, quiet)
    m = metrics_lib.elbo_metrics(q["program"].model, q["state"].params, q["splits"].test,
                              jax.random.key(123), data_shape=q["program"].data_shape,
                              preprocessing="dynamic_binarize", batch_size=500)
    vaejax_test = float(m["neg_elbo"])
    _, _, plain_params = plain_jax_mlp.time_epochs(train_x, quality_epochs)
    plain_test = plain_test_neg_elbo(plain_params, np.asarray(q["splits"].test.images), jax.random.key(123))
    log(f"  test -ELBO: vaejax {vaejax_test:.2f}, plain {plain_test:.2f}")

    log("conv VAE (cvae_mnist.py)")
    conv_train = 1600 if args.quick else 3200
    conv = bench_training("experiments/cvae_mnist.py", [f"data.num_train={conv_train}"], 2, rate, log)

    log("IWAE evaluation")
    iwae = bench_iwae(mlp, rate, 100 if args.quick else 500, 5000, log)
    log(f"  K=5000: {iwae['examples_per_sec']:.1f} examples/s, floor "
        f"{iwae['examples'] / iwae['floor']:.1f} examples/s")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    log(f"AIS against IWAE on the MLP VAE after {quality_epochs} epochs (benchmarks/ais_vs_iwae.py)")
    ais_rows = ais_vs_iwae.measure(
        q["program"], q["state"].params, q["splits"].test.take(slice(None, 10 if args.quick else 20)),
        iwae_samples=ais_vs_iwae.IWAE_SAMPLES[:3] if args.quick else ais_vs_iwae.IWAE_SAMPLES,
        ais_steps=ais_vs_iwae.AIS_STEPS[:3] if args.quick else ais_vs_iwae.AIS_STEPS, log=log)
    ais_table = ais_vs_iwae.table(ais_rows, f"the MLP VAE (bench_mlp.py) after {quality_epochs} epochs")

    log("sweep group of 16 vs 16 runs one after another (fresh processes)")
    sweep_train = 2000 if args.quick else 10_000
    sweep_table = bench_sweep.table(bench_sweep._spawn("vmap", sweep_train),
                                    bench_sweep._spawn("seq", sweep_train))
    log("the Locatello study's group of 16 seeds on dSprites vs 16 runs (fresh processes)")
    dsprites_train = 256 if args.quick else 2048
    dsprites_table = bench_sweep.table(bench_sweep._spawn("vmap", dsprites_train, "dsprites"),
                                       bench_sweep._spawn("seq", dsprites_train, "dsprites"))

    log("every objective against the plain IWAE at equal K (benchmarks/objectives.py)")
    objectives_table = objectives_bench.table(rounds=2 if args.quick else 5, log=log)

    log("every model family against the MLP VAE (benchmarks/model_families.py)")
    families_table = families_bench.table(rounds=2 if args.quick else 5, log=log)

    log("in-epoch progress callback against none (benchmarks/progress.py)")
    progress_table = progress_bench.table(rounds=3 if args.quick else 15, log=log)

    log("each disentanglement metric on 10,000 codes (benchmarks/disentanglement_metrics.py)")
    metrics_table = metrics_bench.table(log=log)

    conv_epoch_full = conv["epoch_time"] * (50_000 / conv_train)
    rows = [
        ("MLP VAE epoch (784-400-20, batch 128, 50,000 images, 390 steps)",
         f"{mlp['epoch_time']:.3f} s", f"{mlp['floor']:.3f} s",
         f"{mlp['epoch_time'] / mlp['floor']:.2f}x",
         f"{mlp['epoch_flops'] / 1e9:.0f} GFLOP; plain JAX script {plain_time:.3f} s "
         f"({mlp['epoch_time'] / plain_time:.2f}x of it)"),
        ("MLP epoch traced: seconds per kind of XLA operation",
         f"{sum(profile.values()):.3f} s", f"{mlp['floor']:.3f} s", "",
         f"matrix multiplies {profile['matmul_s']:.3f} s "
         f"({profile['matmul_s'] / mlp['floor']:.2f}x the floor on their own); model "
         f"elementwise {profile['model_elementwise_s']:.3f} s; nested loops (threefry random "
         f"bits) {profile['nested_loops_s']:.3f} s; optimizer, data and copies "
         f"{profile['optimizer_data_copies_s']:.3f} s"),
        (f"conv VAE epoch (seed, batch 32; {conv_train} images timed, scaled to 50,000)",
         f"{conv_epoch_full:.1f} s", f"{conv['floor'] * 50_000 / conv_train:.1f} s",
         f"{conv['epoch_time'] / conv['floor']:.2f}x",
         f"{conv['epoch_flops'] * 50_000 / conv_train / 1e9:.0f} GFLOP per full epoch"),
        (f"IWAE K=5000 evaluation ({iwae['examples']} test images)",
         f"{iwae['seconds']:.1f} s", f"{iwae['floor']:.1f} s",
         f"{iwae['seconds'] / iwae['floor']:.2f}x",
         f"{iwae['examples_per_sec']:.1f} images/s; 10,000 images: "
         f"{10_000 / iwae['examples_per_sec'] / 60:.1f} min"),
        ("compile: MLP epoch / conv epoch / IWAE", f"{mlp['compile_time']:.1f} / "
         f"{conv['compile_time']:.1f} / {iwae['compile']:.1f} s", "", "", ""),
        ("peak host memory (RSS, whole benchmark)", f"{peak_mb:.0f} MB", "", "", ""),
        (f"test -ELBO after {quality_epochs} epochs (nats): vaejax vs plain script",
         f"{vaejax_test:.2f}", "", "", f"plain {plain_test:.2f}; difference "
         f"{vaejax_test - plain_test:+.2f}"),
    ]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"## {stamp}{' (--quick)' if args.quick else ''}", "", f"Machine: {machine()}.",
             f"Matrix-multiply rate: {rate / 1e9:.1f} GFLOP/s (float32, 2048^3, best of 10).", "",
             "| what | measured | floor | vs floor | notes |", "| --- | ---: | ---: | ---: | --- |"]
    lines += [f"| {' | '.join(r)} |" for r in rows]
    lines += ["", sweep_table, "", dsprites_table, "", objectives_table, "", families_table, "", progress_table, "",
              metrics_table, "", ais_table]
    section = "\n".join(lines) + "\n"
    print("\n" + section)
    out = pathlib.Path(args.out)
    header = ("# Benchmark results\n\nWritten by `make bench` (benchmarks/run.py); newest first. "
              "Floor = XLA's FLOP count of the work / the matmul rate measured in the same run.\n\n")
    old = out.read_text() if out.exists() else ""
    old = old[len(header):] if old.startswith(header) else old
    out.write_text(header + section + "\n" + old)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
