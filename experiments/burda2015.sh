#!/usr/bin/env bash
# Burda et al. (2015), table 1: the README's rows, each trained for the paper's 3280 epochs
# (experiments/iwae_mnist.py, one stochastic layer; experiments/iwae_two_layer.py, two), then
# its test-NLL learning curve: the
# kept checkpoints at CURVE_EPOCHS evaluated like the final model (IWAE K=5000, all 10,000 test
# images) with `vaejax eval --epoch`. Every 80th epoch's checkpoint is kept; every 40th for
# IWAE k=50, about 20x slower per epoch than the VAE on CPU, so a short budget has a curve too.
#
#   experiments/burda2015.sh [ROW...]        # rows: vae_k1 iwae_k5 iwae_k50 (default: these),
#                                            # vae_k1_cosine500 (a shorter schedule) and
#                                            # two_layer_vae_k1 and two_layer_iwae_k5 (seed 0,
#                                            # two stochastic layers)
#   vaejax record $OUT/ROW docs/burda2015/records/ROW   # the row's record (no checkpoints)
#   vaejax report docs/burda2015             # the page, figures and README table
#
# Resumable: run it again after an interruption. Training resumes from its last checkpoint, a
# finished run is kept, and a curve point already evaluated is not evaluated again.
set -euo pipefail
OUT=${OUT:-runs/burda}
ROWS=("${@:-vae_k1 iwae_k5 iwae_k50}")
CURVE_EPOCHS=${CURVE_EPOCHS-40 80 160 320 640 1200 2000 2640 3200}  # CURVE_EPOCHS= : none
VAEJAX=${VAEJAX:-vaejax}
declare -A FLAGS=(
  [vae_k1]="--config.objective.kind=elbo"
  [iwae_k5]="--config.objective.kind=iwae --config.objective.num_samples=5"
  [iwae_k50]="--config.objective.kind=iwae --config.objective.num_samples=50 --config.train.keep_every=40"
  # the VAE row with the learning rate decayed by a cosine over 500 epochs instead
  [vae_k1_cosine500]="--config.objective.kind=elbo --config.optimizer.schedule=cosine --config.train.epochs=500"
  [two_layer_vae_k1]="--config.objective.kind=elbo"
  [two_layer_iwae_k5]="--config.objective.kind=iwae --config.objective.num_samples=5 --config.train.keep_every=40"
)
declare -A CONFIGS=([two_layer_vae_k1]=experiments/iwae_two_layer.py
                    [two_layer_iwae_k5]=experiments/iwae_two_layer.py)
for row in ${ROWS[@]}; do
  echo "== $row -> $OUT/$row"
  # shellcheck disable=SC2086
  $VAEJAX train --config "${CONFIGS[$row]:-experiments/iwae_mnist.py}" --workdir "$OUT/$row" --resume ${FLAGS[$row]}
  for epoch in $CURVE_EPOCHS; do
    [ -d "$OUT/$row/checkpoints/$epoch" ] || continue  # past this row's epochs
    if compgen -G "$OUT/$row/evals/epoch-$(printf %06d "$epoch")_k5000_n10000.json" >/dev/null; then
      continue
    fi
    $VAEJAX eval --workdir "$OUT/$row" --epoch "$epoch"
  done
done
