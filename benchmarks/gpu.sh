#!/usr/bin/env bash
# Issue #12's GPU check, one prepared script for a machine with a GPU and no network.
#
#   benchmarks/gpu.sh prepare   # here, with PyPI: .gpu/ (git-ignored) holds the wheels that
#                               # the GPU machine's image lacks and the MNIST and Fashion-MNIST files
#   benchmarks/gpu.sh run       # there, in the repository root, with .gpu/ beside it:
#     0. installs vaejax and the wheels of .gpu/ (no network, no dependency resolution);
#     1. checks that JAX's backend is the GPU, and a jitted training epoch's output is on it;
#     2. benchmarks/bench_sweep.py: a vmapped group of 16 bench_mlp members against the 16
#        runs one after another (compile, training, peak device memory);
#     3. trains and evaluates experiments/default.py (Fashion-MNIST, 10 epochs, IWAE K=250) with
#        `vaejax train`, timed.
#   Writes $OUT/gpu.md (default: .gpu/out/), to go into benchmarks/RESULTS.md, and the logs.
#
# With the session's `device` tool:  run(command="benchmarks/gpu.sh run", carry=[".gpu"],
# timeout_s=540). ALLOW_CPU=1 runs step 1-3 on any backend (to try the script without a GPU);
# SKIP_INSTALL=1 skips step 0 (an environment that has vaejax already); QUICK=1 shrinks steps 2
# and 3 (2,000 images, 1 epoch, 500 test images) to try the script in a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
GPU_DIR=.gpu
PYTHON=${PYTHON:-python3}
# Not in the GPU image (KINDS.md of the device tool lists what is): vaejax's own dependencies.
WHEELS=(ml_collections distrax tensorflow-probability tensorboardX dm-tree gast decorator)

prepare() {
  rm -rf "$GPU_DIR/wheels" && mkdir -p "$GPU_DIR/wheels" "$GPU_DIR/data/mnist" "$GPU_DIR/data/fashion_mnist"
  # The GPU image's Python is 3.12 on x86-64 (manylinux); pure-Python wheels fit any.
  $PYTHON -m pip download --quiet --no-deps --only-binary :all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform any \
    -d "$GPU_DIR/wheels" "${WHEELS[@]}"
  cp "${VAEJAX_MNIST_DIR:-../shared/data/mnist}"/*-ubyte.gz "$GPU_DIR/data/mnist/"
  cp /usr/share/datasets/fashion-mnist/*-ubyte.gz "$GPU_DIR/data/fashion_mnist/"
  du -sh "$GPU_DIR"
}

run() {
  OUT=${OUT:-$GPU_DIR/out}
  mkdir -p "$OUT"
  export VAEJAX_DATA_DIR="$PWD/$GPU_DIR/data" VAEJAX_CACHE="$PWD/$GPU_DIR/cache" PYTHONUNBUFFERED=1
  if [ "${SKIP_INSTALL:-0}" != 1 ]; then
    $PYTHON -m pip install --quiet --no-index --no-deps "$GPU_DIR"/wheels/*.whl
    $PYTHON -m pip install --quiet --no-index --no-deps --no-build-isolation -e .
  fi
  {
    echo "# GPU check ($(date -u +'%Y-%m-%d %H:%M UTC'))"
    echo
    $PYTHON - <<'EOF'
import os, time
import jax, jax.numpy as jnp
from vaejax import config as config_lib
from vaejax.data import load_splits
from vaejax.program import Program

backend = jax.default_backend()
print(f"JAX {jax.__version__}, backend {backend}, devices {jax.devices()}")
if backend != "gpu" and os.environ.get("ALLOW_CPU") != "1":
    raise SystemExit(f"backend is {backend}, not gpu (ALLOW_CPU=1 to go on anyway)")
config = config_lib.load_config("experiments/bench_mlp.py")
splits = load_splits(config, log=lambda *_: None)
program = Program.build(config, splits.train.images.shape[1:], splits.train.images.shape[0])
hyper = program.hyper(config)
state = jax.jit(program.init_state)(hyper)
epoch = jax.jit(program.train_epoch)
for i in range(3):
    start = time.perf_counter()
    state, metrics = epoch(state, hyper, splits.train, jnp.int32(i))
    jax.block_until_ready(state)
    print(f"- bench_mlp epoch {i + 1} (390 steps of 128): {time.perf_counter() - start:.3f} s"
          + (" (with compilation)" if i == 0 else "") + f", loss {float(metrics['loss'].mean()):.2f}")
leaf = jax.tree.leaves(state.params)[0]
print(f"- the trained parameters live on {leaf.devices()}")
assert all(d.platform == backend for d in leaf.devices())
EOF
    echo
    echo "## A vmapped group of 16 against 16 runs one after another"
    echo
    $PYTHON benchmarks/bench_sweep.py --num-train "$([ "${QUICK:-0}" = 1 ] && echo 2000 || echo 0)"
    echo "## experiments/default.py (Fashion-MNIST, 10 epochs) with \`vaejax train\`"
    echo
    quick=()
    if [ "${QUICK:-0}" = 1 ]; then
      quick=(--config.data.num_train=2000 --config.train.epochs=1 --config.eval.num_test_examples=500)
    fi
    start=$(date +%s)
    $PYTHON -m vaejax.cli train --config experiments/default.py --workdir "$GPU_DIR/default" \
      --overwrite "${quick[@]}" > "$OUT/default.log" 2>&1
    echo "- wall time $(( $(date +%s) - start )) s (data, compilation, 10 epochs, evaluation, figures)"
    grep -E "^train: epoch (1|10)/|^eval:|^data:" "$OUT/default.log" | sed 's/^/- /'
  } 2>&1 | tee "$OUT/gpu.md"
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: benchmarks/gpu.sh prepare|run" >&2; exit 2 ;;
esac
