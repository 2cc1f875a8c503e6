#!/usr/bin/env bash
# The README's model-family table: the one-layer VAE (Burda et al.'s 784-200-200-50), the
# VampPrior, two stochastic layers and the IAF posterior, each from its own experiment file,
# trained with the same data, objective (ELBO), optimizer, batch and epochs, and evaluated by
# IWAE with K=5000 on the same test images.
#
#   experiments/model_families.sh [EPOCHS] [WORKDIR] [EXPERIMENT...]
#
# Resumable: run it again after an interruption and each run continues from its checkpoint
# (a finished, evaluated run is kept as it is). Then `vaejax sweep-report` does not apply
# (these are single runs): the README table is read from each run's results.json.
set -euo pipefail
EPOCHS=${1:-50}
OUT=${2:-runs/families}
shift $(( $# < 2 ? $# : 2 ))
EXPERIMENTS=("${@:-iwae_mnist vampprior iwae_two_layer iaf}")
VAEJAX=${VAEJAX:-vaejax}
common=(
  --config.train.epochs="$EPOCHS" --config.train.batch_size=100 --config.data.num_validation=10000
  --config.objective.kind=elbo --config.objective.num_samples=1
  --config.objective.beta_schedule=constant --config.objective.warmup_steps=0
  --config.optimizer.learning_rate=1e-3 --config.optimizer.eps=1e-4
  --config.optimizer.schedule=constant
  --config.eval.iwae_samples=5000 --config.eval.num_test_examples="${NUM_TEST:-2000}"
)
for exp in ${EXPERIMENTS[@]}; do
  echo "== $exp: $EPOCHS epochs -> $OUT/$exp"
  $VAEJAX train --config "experiments/$exp.py" --workdir "$OUT/$exp" --resume "${common[@]}"
done
