#!/usr/bin/env bash
# A commit against the working tree: the bench_mlp epoch through `vaejax train`, the two
# interleaved round by round, so that both see the same machine load. Prints per round the
# median epoch time (epochs 2..5, seconds) of each, and the after/before ratio.
#
#   benchmarks/ab_epoch.sh REV [ROUNDS]     # e.g. benchmarks/ab_epoch.sh 5da85b4 7
set -euo pipefail
rev=$1; rounds=${2:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$here/.venv/bin/python}
tmp=$(mktemp -d); trap 'git -C "$here" worktree remove --force "$tmp/before" >/dev/null 2>&1; rm -rf "$tmp"' EXIT
git -C "$here" worktree add -q "$tmp/before" "$rev"
epoch_time() {  # repo workdir -> median epoch time of epochs 2..5
  (cd "$1" && PYTHONPATH="$1" "$python" -c "import sys; from vaejax.cli import main; sys.exit(main())" \
     train --config experiments/bench_mlp.py --workdir "$2" --no-eval --config.train.epochs=5 >/dev/null 2>&1)
  "$python" -c "import json, statistics, sys
m = [json.loads(l) for l in open(sys.argv[1])]
print(statistics.median(r['epoch_time'] for r in m[1:]))" "$2/metrics.jsonl"
}
echo "round before_s after_s ratio"
for round in $(seq 1 "$rounds"); do
  before=$(epoch_time "$tmp/before" "$tmp/run-before-$round")
  after=$(epoch_time "$here" "$tmp/run-after-$round")
  "$python" -c "print($round, round($before, 3), round($after, 3), round($after / $before, 3))"
done
