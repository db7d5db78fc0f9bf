#!/bin/bash
# Study-level before/after of #20 (issue #20, item 5): the evaluation stage of one N_E
# cell of the Pong study (every policy of the cell + the live expert and random
# references, 3 seeds x 10 sampled episodes, on-policy agreement on), run alone at two
# commits one after the other, each from its own git worktree on a fresh copy of the
# cell's policies. Summarised by benchmarks/eval_before_after.py into
# benchmarks/results/eval_before_after.json.
#
#   bash benchmarks/eval_before_after.sh BEFORE_SHA AFTER_SHA RUNS_DIR [N_E]
#
# RUNS_DIR holds the study (pong_ne: data and world model; pong_ne$N_E: the cell's
# policies), as `ditto run --preset ne` wrote it.
set -euo pipefail
BEFORE=$1; AFTER=$2; R=$(realpath "$3"); NE=${4:-2}
REPO=$(cd "$(dirname "$0")/.." && pwd)
D="--config.paths.data=$R/pong_ne/data --config.paths.wm=$R/pong_ne/wm"
for sha in "$AFTER" "$BEFORE"; do
  wt="$R/ba_wt_$sha"; wd="$R/ba_$sha"
  [ -d "$wt" ] || git -C "$REPO" worktree add -f "$wt" "$sha" -q
  rm -rf "$wd"; mkdir -p "$wd"
  cp -r "$R/pong_ne$NE/policies" "$R/pong_ne$NE/pipeline_config.json" "$wd/"
  (cd "$wt" && /usr/bin/time -v env PYTHONPATH="$wt" python -m ditto_jax.cli run \
     --preset ne --quiet --workdir "$wd" $D --config.expert_episodes="$NE" \
     --config.methods=dbc,ditto_bctr,ditto_bcinit,ditto,bc --stages eval) \
     > "$R/ba_$sha.log" 2>&1
done
python "$REPO/benchmarks/eval_before_after.py" --runs "$R" --before "$BEFORE" --after "$AFTER"
