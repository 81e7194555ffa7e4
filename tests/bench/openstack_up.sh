#!/usr/bin/env bash
# Benchmark: `provisioner up` of a 3 control + 3 worker environment (plus a
# bastion with a floating IP and three etcd volumes) on the lab OpenStack,
# next to a plain sequential openstacksdk script doing the same creates, in
# the same run. Prints wall time and API calls of both and their ratio.
# Needs the lab: bash tests/lab/up.sh openstack
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck disable=SC1091
source "${LAB_STATE:-/var/tmp/provisioner-lab}/openstack/env.sh"
cargo build --release --quiet
bin=target/release/provisioner
rounds=${ROUNDS:-3}
state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
PROVISIONER_STATE_KEY=$("$bin" state new-key)
export PROVISIONER_STATE_KEY
printf '%-6s %12s %10s %12s %10s\n' round "ours s" "ours calls" "serial s" "serial calls"
sum_ours=0; sum_seq=0
for r in $(seq 1 "$rounds"); do
  name="benchos-$$-$r"
  t0=$(date +%s.%N)
  out=$(env -u OS_CLOUD "$bin" --environments tests/fixtures/environments --state-dir "$state" up "$name" --auto-approve --output json)
  t1=$(date +%s.%N)
  ours=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')
  calls=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["api_calls"])' <<<"$out")
  seq_json=$(OS_CLOUD=lab-demo /usr/bin/python3 tests/bench/sequential_up.py "seq-$$-$r" tests/fixtures/ssh/id_ed25519.pub)
  seq_s=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["wall_s"])' <<<"$seq_json")
  seq_calls=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["api_calls"])' <<<"$seq_json")
  printf '%-6s %12s %10s %12s %10s\n' "$r" "$ours" "$calls" "$seq_s" "$seq_calls"
  sum_ours=$(awk -v a="$sum_ours" -v b="$ours" 'BEGIN{print a+b}')
  sum_seq=$(awk -v a="$sum_seq" -v b="$seq_s" 'BEGIN{print a+b}')
  env -u OS_CLOUD "$bin" --environments tests/fixtures/environments --state-dir "$state" destroy "$name" --auto-approve >/dev/null 2>&1 || echo "warning: destroy of $name failed" >&2
done
awk -v a="$sum_ours" -v b="$sum_seq" -v n="$rounds" 'BEGIN{printf "mean: provisioner up %.2f s, sequential script %.2f s, speed-up %.2fx\n", a/n, b/n, b/a}'
