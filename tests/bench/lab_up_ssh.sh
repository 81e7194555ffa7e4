#!/usr/bin/env bash
# Benchmark: time from the start of `provisioner up` to every server answering SSH, on the
# lab cloud whose servers are machines (README "The lab cloud"): the bastion by
# its floating IP and the nodes through it, host keys pinned from the console log. Prints,
# per round: `up` wall time (servers ACTIVE, floating IP and volume attached), when each
# server's host keys were on its console and when it answered SSH, the idle memory of each
# machine 20 s later (PSS and memory-cgroup charge), and the `destroy` time.
#
#   ENV=lab              environments/lab.yaml: 1 control + 1 worker + bastion (default)
#   ENV=bench-machines   tests/fixtures/environments: 3 control + 3 worker + bastion
#   ROUNDS=N             (default 1)
# Needs the lab: bash tests/lab/up.sh s3 openstack (and source its env.sh, or not: this does)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
LAB_STATE=${LAB_STATE:-/var/tmp/provisioner-lab}
# shellcheck disable=SC1091
source "$LAB_STATE/env.sh"
[[ -n "${OS_CLIENT_CONFIG_FILE:-}" && -n "${S3_ENDPOINT_URL:-}" ]] || { echo "needs the lab: bash tests/lab/up.sh s3 openstack" >&2; exit 1; }
flock /tmp/provisioner-cargo.lock cargo build --quiet
bin=target/debug/provisioner
machine=tests/lab/nodes/machine.sh
ENV=${ENV:-lab}
rounds=${ROUNDS:-1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
install -m 600 tests/fixtures/ssh/id_ed25519 "$tmp/key"
PROVISIONER_STATE_KEY=$("$bin" state new-key)
export PROVISIONER_STATE_KEY
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

for r in $(seq 1 "$rounds"); do
  if [[ "$ENV" == lab ]]; then
    name=lab args=(--state-dir "$tmp/state")
  else
    name="$ENV-$$-$r" args=(--environments tests/fixtures/environments --state-dir "$tmp/state")
  fi
  p() { env -u OS_CLOUD -u KUBECONFIG "$bin" "${args[@]}" "$@" </dev/null; }   # the cloud layer only
  p destroy "$name" --auto-approve >/dev/null 2>&1 || true   # leftovers of an interrupted run
  t0=$(now)
  p up "$name" --auto-approve --output json >"$tmp/up.json" 2>"$tmp/up.log" || { tail -20 "$tmp/up.log"; exit 1; }
  t_up=$(since "$t0")
  ready=$(/usr/bin/python3 tests/bench/lab_ssh_ready.py "$tmp/state/$name.state.json" "$tmp/key" "$t0")
  echo "round $r ($name): up ${t_up} s; SSH-ready (host keys on console / SSH answers, s after up started):"
  # shellcheck disable=SC2016  # Python, not shell
  /usr/bin/python3 -c 'import json, sys
d = json.loads(sys.argv[1])
for a, v in sorted(d["servers"].items()):
    print("  %-20s keys %5.1f  ssh %5.1f" % (a, v["keys"], v["ssh"]))
print("  all servers answer SSH %.1f s after `up` started" % d["all_ssh"])' "$ready"
  sleep 20
  echo "  idle memory per machine (20 s later):"
  for m in $(/usr/bin/python3 -c 'import json, sys; print(" ".join(json.loads(sys.argv[1])["machines"].values()))' "$ready"); do
    "$machine" stats "$m" | awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      printf "    %s  PSS %.1f MB  cgroup %.1f MB (rss %.1f MB)  processes %s\n", v["name"], v["pss_kb"] / 1024,
        v["cgroup_usage_bytes"] / 1048576, v["cgroup_rss_bytes"] / 1048576, v["processes"] }'
  done
  t1=$(now)
  p destroy "$name" --auto-approve >/dev/null 2>"$tmp/destroy.log" || { tail -20 "$tmp/destroy.log"; exit 1; }
  echo "  destroy $(since "$t1") s"
done
