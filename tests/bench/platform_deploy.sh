#!/usr/bin/env bash
# Benchmark: the platform layer on the kube lab (tests/lab/up.sh kube). Deploys the
# data-platform stack of environments/lab.yaml from empty state, then a no-op deploy
# and a no-op plan against the live cluster (server-side dry-run of every object),
# ROUNDS times, and prints the times with the object count next to the goals
# (no-op plan <= 2 s, no-op deploy <= 3 s). Removes what it deployed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck disable=SC1091
source "${LAB_STATE:-/var/tmp/provisioner-lab}/kube/env.sh"
cargo build --release --quiet
bin=$PWD/target/release/provisioner
rounds=${ROUNDS:-3}
state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
PROVISIONER_STATE_KEY=$("$bin" state new-key)
export PROVISIONER_STATE_KEY
p() { "$bin" --state-dir "$state" "$@"; }
objects=$(p render lab --output json | python3 -c 'import json,sys; print(sum(len(r["objects"]) for r in json.load(sys.stdin)))')
releases=$(p render lab --output json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}'; }
printf '%-6s %14s %16s %14s\n' round "full deploy s" "no-op deploy s" "no-op plan s"
sum_full=0; sum_deploy=0; sum_plan=0
for r in $(seq 1 "$rounds"); do
  full=$(secs p deploy lab --auto-approve)
  noop=$(secs p deploy lab --auto-approve)
  plan_s=$(secs p plan lab --deploy || true)
  # plan must say "no change" (exit 0) for the figure to mean anything
  p plan lab --deploy >/dev/null 2>&1 || { echo "round $r: the plan after a deploy is not empty" >&2; exit 1; }
  printf '%-6s %14s %16s %14s\n' "$r" "$full" "$noop" "$plan_s"
  sum_full=$(awk -v a="$sum_full" -v b="$full" 'BEGIN{print a+b}')
  sum_deploy=$(awk -v a="$sum_deploy" -v b="$noop" 'BEGIN{print a+b}')
  sum_plan=$(awk -v a="$sum_plan" -v b="$plan_s" 'BEGIN{print a+b}')
  p destroy lab --auto-approve --refresh=false >/dev/null 2>&1 || echo "warning: destroy failed" >&2
done
awk -v f="$sum_full" -v d="$sum_deploy" -v pl="$sum_plan" -v n="$rounds" -v o="$objects" -v rl="$releases" 'BEGIN{
  printf "mean over %d rounds, %d releases, %d objects: full deploy %.2f s, no-op deploy %.2f s (goal <= 3 s: %s), no-op plan %.2f s (goal <= 2 s: %s)\n",
    n, rl, o, f/n, d/n, (d/n <= 3 ? "met" : "MISSED"), pl/n, (pl/n <= 2 ? "met" : "MISSED") }'
