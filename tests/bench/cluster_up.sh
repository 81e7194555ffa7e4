#!/usr/bin/env bash
# Benchmark: the cluster layer on the cluster lab (tests/lab/up.sh cluster). From reachable,
# fresh machines (tests/lab/cluster/nodes.sh: 3 control-plane + 2 worker nodes, bc-*, not the
# lc-* of tests/lab_cluster.rs), ROUNDS times:
#   T1  `up --target control_plane`: pki, hosts, etcd and the 3 control planes, each done only
#       once its kube-apiserver's /readyz says ok
#   T2  the full `up` after it (workers, kubelets, kubeconfig)
#   T3  from the start of T1 until `kubectl get nodes` (the written kubeconfig) shows 5 Ready
#   T4  a no-op `up`;  T5  a no-op `plan` (must exit 0: no change)
# and prints the times, their mean, the node count and the artifact bytes next to the goals
# (control planes to /readyz <= 60 s, no-op rerun <= 5 s). Removes the machines at the end.
#
#   ROUNDS=N   (default 2)
# Needs the lab: bash tests/lab/up.sh cluster (as root: nodes.sh makes machines)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
LAB_STATE=${LAB_STATE:-/var/tmp/provisioner-lab}
# shellcheck disable=SC1091
source "$LAB_STATE/cluster/env.sh"
[[ -n "${LAB_CLUSTER_NODES_SH:-}" && -n "${LAB_CLUSTER_ARTIFACTS_URL:-}" ]] || { echo "needs the lab: bash tests/lab/up.sh cluster" >&2; exit 1; }
flock /tmp/provisioner-cargo.lock cargo build --release --quiet
bin=$PWD/target/release/provisioner
repo=$PWD
rounds=${ROUNDS:-2}
ENV=bench-cluster
nodes=(bc-cp1 bc-cp2 bc-cp3 bc-w1 bc-w2)
kubectl=$LAB_CLUSTER_KUBE_BIN/kubectl
tmp=$(mktemp -d)
kubeconfig=$tmp/admin.kubeconfig
nodes_sh() { bash "$LAB_CLUSTER_NODES_SH" "$@" </dev/null; }
cleanup() { nodes_sh delete "${nodes[@]}" >/dev/null 2>&1 || echo "warning: nodes.sh delete failed" >&2; rm -rf "$tmp"; }
trap cleanup EXIT
PROVISIONER_STATE_KEY=$("$bin" state new-key)
export PROVISIONER_STATE_KEY
p() { env -u KUBECONFIG -u SSH_AUTH_SOCK -u RUST_LOG "$bin" --environments "$tmp/envs" --state-dir "$tmp/state" "$@" </dev/null; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
# run LOG CMD... : CMD's output to LOG; on failure, show it and stop the bench
run() { local log=$1; shift; "$@" >"$log" 2>&1 || { echo "failed: ${*}" >&2; tail -40 "$log" >&2; exit 1; }; }
ready_nodes() { "$kubectl" --kubeconfig "$kubeconfig" get nodes --no-headers 2>/dev/null | awk '$2 == "Ready"' | wc -l; }

# env_file NAME IP... : the environment of tests/lab_cluster.rs for these nodes (lines "NAME IP")
env_file() {
  local n ip roles
  mkdir -p "$tmp/envs"
  {
    echo "extends: $repo/tests/fixtures/environments/base.yaml"
    echo "node_pools: []"
    echo "bastion: {enabled: false}"
    echo "cluster:"
    echo "  enabled: true"
    echo "  kubernetes_version: v1.20.2"
    echo "  pod_cidr: 10.244.0.0/16"
    echo "  service_cidr: 10.96.0.0/16"
    echo "  nodes:"
    while read -r n ip; do
      if [[ "$n" == *cp* ]]; then roles="[etcd, controlplane]"; else roles="[worker]"; fi
      echo "    - {name: $n, address: $ip, roles: $roles}"
    done
    echo "  ssh:"
    echo "    user: debian"
    echo "    private_key_file: $repo/tests/fixtures/ssh/id_ed25519"
    echo "  artifacts: {url: '$LAB_CLUSTER_ARTIFACTS_URL/{name}'}"
    echo "  kubeconfig: {path: $kubeconfig}"
    echo "  node_config:"
    echo "    cgroup_driver: cgroupfs"
    echo "    restrict_oom_score_adj: true"
    echo "    pause_image: localhost/lab/pause:1"
    echo "    preload_images: [images/pause.oci.tar, images/busybox.oci.tar]"
    echo "    kubelet: {failSwapOn: false, cgroupRoot: /}"
  } >"$tmp/envs/$ENV.yaml"
}

artifact_bytes=$(du -sbL "$LAB_CLUSTER_ARTIFACTS" | cut -f1)
printf '%-6s %14s %10s %14s %14s %14s\n' round "cp /readyz s" "full up s" "5 Ready s" "no-op up s" "no-op plan s"
sum1=0 sum2=0 sum3=0 sum4=0 sum5=0
for r in $(seq 1 "$rounds"); do
  # 1. fresh, reachable machines and empty state (not timed)
  nodes_sh delete "${nodes[@]}" >/dev/null 2>&1 || true
  nodes_sh up "${nodes[@]}" >"$tmp/nodes.out" 2>"$tmp/nodes.log" || { echo "nodes.sh up failed:" >&2; tail -40 "$tmp/nodes.log" >&2; exit 1; }
  grep -E "^bc-(cp|w)[0-9]+ " "$tmp/nodes.out" | env_file
  [[ $(grep -c '{name: bc-' "$tmp/envs/$ENV.yaml") -eq ${#nodes[@]} ]] || { echo "nodes.sh up printed:" >&2; cat "$tmp/nodes.out" >&2; exit 1; }
  rm -rf "$tmp/state" "$kubeconfig"
  # 2. the control planes, through their /readyz gate (and what they need: pki, hosts, etcd)
  t0=$(now)
  run "$tmp/up-cp.log" p up "$ENV" --auto-approve --target control_plane
  t1=$(since "$t0")
  # 3. everything else, then the nodes as the cluster sees them
  t=$(now)
  run "$tmp/up.log" p up "$ENV" --auto-approve
  t2=$(since "$t")
  until [[ $(ready_nodes) -eq ${#nodes[@]} ]]; do
    (($(awk -v a="$t0" -v b="$(now)" 'BEGIN { print (b - a > 600) }'))) && {
      echo "round $r: not ${#nodes[@]} Ready nodes 600 s after up started:" >&2
      "$kubectl" --kubeconfig "$kubeconfig" get nodes >&2 || true; exit 1; }
    sleep 1
  done
  t3=$(since "$t0")
  # 4. no-op rerun and plan (plan must say "no change": exit 0)
  t=$(now)
  run "$tmp/noop-up.log" p up "$ENV" --auto-approve
  t4=$(since "$t")
  t=$(now)
  rc=0; p plan "$ENV" >"$tmp/plan.log" 2>&1 || rc=$?
  t5=$(since "$t")
  ((rc == 0)) || { echo "round $r: the plan after up is not empty (exit $rc):" >&2; tail -40 "$tmp/plan.log" >&2; exit 1; }
  printf '%-6s %14s %10s %14s %14s %14s\n' "$r" "$t1" "$t2" "$t3" "$t4" "$t5"
  read -r sum1 sum2 sum3 sum4 sum5 < <(awk -v a="$sum1 $sum2 $sum3 $sum4 $sum5" -v b="$t1 $t2 $t3 $t4 $t5" \
    'BEGIN { split(a, x); split(b, y); for (i = 1; i <= 5; i++) printf "%s ", x[i] + y[i]; print "" }')
done
awk -v n="$rounds" -v s="$sum1 $sum2 $sum3 $sum4 $sum5" 'BEGIN { split(s, x)
  printf "%-6s %14.2f %10.2f %14.2f %14.2f %14.2f\n", "mean", x[1] / n, x[2] / n, x[3] / n, x[4] / n, x[5] / n }'
awk -v n="$rounds" -v s="$sum1 $sum4 $sum5" -v k="${#nodes[@]}" -v b="$artifact_bytes" 'BEGIN { split(s, x)
  printf "mean over %d rounds, %d nodes (3 control-plane + 2 workers), artifacts %.1f MB (%d bytes): control planes to /readyz %.2f s (goal <= 60 s: %s), no-op up %.2f s (goal <= 5 s: %s), no-op plan %.2f s\n",
    n, k, b / 1e6, b, x[1] / n, (x[1] / n <= 60 ? "met" : "MISSED"), x[2] / n, (x[2] / n <= 5 ? "met" : "MISSED"), x[3] / n }'
