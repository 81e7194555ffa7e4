#!/usr/bin/env bash
# tests/lab/kube/smoke.sh - with `tests/lab/up.sh kube` up, prove the cluster runs real
# workloads: every node Ready; a busybox Pod runs and `kubectl logs` shows its output; a
# Deployment with an HTTP readiness probe becomes Available; a Job completes; `kubectl
# exec` works; a Pod with a missing image (imagePullPolicy Never) reports
# ErrImageNeverPull; a ClusterIP Service answers from the node (kube-proxy), from a pod, and
# from the host (routed through the node). Prints timings; exit 0 = all passed.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$HERE/../lib.sh"
[[ -f "$LAB_STATE/kube/env.sh" ]] || lab_die "the kube lab is not up (tests/lab/up.sh kube)"
# shellcheck disable=SC1091
source "$LAB_STATE/kube/env.sh"
kc() { "$LAB_KUBECTL" "$@"; }
NS=lab-smoke
node=${LAB_KUBE_NODES%% *}
pass=0 fail=0
ok() { pass=$((pass + 1)); printf 'ok   %s\n' "$*"; }
bad() { fail=$((fail + 1)); printf 'FAIL %s\n' "$*"; }
took() { lab_since "$1"; }
t_all=$EPOCHREALTIME

echo "--- server $LAB_KUBE_VERSION at $LAB_KUBE_API, nodes: $LAB_KUBE_NODES"
for n in $LAB_KUBE_NODES; do
  if [[ "$(kc get node "$n" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]; then
    ok "node $n Ready (podCIDR $(kc get node "$n" -o jsonpath='{.spec.podCIDR}'))"
  else bad "node $n not Ready"; fi
done
if v=$(kubectl --kubeconfig "$KUBECONFIG" version 2>&1 | grep -i '^server version'); then
  ok "the host's kubectl talks to it too: $v"
else bad "host kubectl: $v"; fi

kc delete namespace "$NS" --wait=true --timeout=60s >/dev/null 2>&1 || true
kc create namespace "$NS" >/dev/null
for _ in $(seq 100); do kc -n "$NS" get serviceaccount default >/dev/null 2>&1 && break; sleep 0.1; done

# 1. a Pod that prints and exits
t0=$EPOCHREALTIME
kc -n "$NS" apply -f - >/dev/null <<Y
apiVersion: v1
kind: Pod
metadata: {name: hello}
spec:
  restartPolicy: Never
  containers:
  - name: hello
    image: $LAB_KUBE_IMAGE_BUSYBOX
    imagePullPolicy: Never
    command: ["sh", "-c", "echo hello from \$(hostname); ls /var/run/secrets/kubernetes.io/serviceaccount"]
Y
ph=
for _ in $(seq 600); do
  ph=$(kc -n "$NS" get pod hello -o jsonpath='{.status.phase}' 2>/dev/null || true)
  [[ "$ph" == Succeeded || "$ph" == Failed ]] && break; sleep 0.1
done
out=$(kc -n "$NS" logs hello 2>&1 || true)
if [[ "$ph" == Succeeded ]] && grep -q "hello from hello" <<<"$out" && grep -q token <<<"$out"; then
  ok "Pod ran to completion in $(took "$t0") s; kubectl logs: $(head -n1 <<<"$out")"
else bad "Pod hello: phase '$ph', logs: $out"; kc -n "$NS" describe pod hello | tail -n 15; fi

# 2. a Deployment with an HTTP readiness probe
t0=$EPOCHREALTIME
kc -n "$NS" apply -f - >/dev/null <<Y
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: $LAB_KUBE_IMAGE_BUSYBOX
        imagePullPolicy: Never
        command: ["httpd", "-f", "-p", "8080", "-h", "/var/www"]
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
        resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 200m, memory: 32Mi}}
Y
if kc -n "$NS" wait --for=condition=available deploy/web --timeout=120s >/dev/null; then
  ok "Deployment with an HTTP readiness probe Available ($(kc -n "$NS" get deploy web -o jsonpath='{.status.readyReplicas}')/2) in $(took "$t0") s"
else bad "Deployment web not Available"; kc -n "$NS" describe deploy web | tail -n 10; kc -n "$NS" get pods -o wide; fi

# 3. a Job
t0=$EPOCHREALTIME
kc -n "$NS" apply -f - >/dev/null <<Y
apiVersion: batch/v1
kind: Job
metadata: {name: count}
spec:
  completions: 2
  parallelism: 2
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: count
        image: $LAB_KUBE_IMAGE_BUSYBOX
        imagePullPolicy: Never
        command: ["sh", "-c", "for i in 1 2 3; do echo count \$i; done"]
Y
if kc -n "$NS" wait --for=condition=complete job/count --timeout=120s >/dev/null; then
  ok "Job completed ($(kc -n "$NS" get job count -o jsonpath='{.status.succeeded}')/2) in $(took "$t0") s"
else bad "Job count did not complete"; kc -n "$NS" describe job count | tail -n 10; fi

# 4. kubectl exec
t0=$EPOCHREALTIME
pod=$(kc -n "$NS" get pods -l app=web -o jsonpath='{.items[0].metadata.name}')
podip=$(kc -n "$NS" get pod "$pod" -o jsonpath='{.status.podIP}')
if e=$(kc -n "$NS" exec "$pod" -- sh -c 'echo exec-ok; cat /sys/fs/cgroup/memory/memory.limit_in_bytes' 2>&1) && grep -q exec-ok <<<"$e"; then
  ok "kubectl exec in $(took "$t0") s (memory limit seen in the container: $(tail -n1 <<<"$e"))"
else bad "kubectl exec: $e"; fi

# 5. a missing image is not pulled: ErrImageNeverPull
t0=$EPOCHREALTIME
kc -n "$NS" run missing --image=localhost/lab/does-not-exist:1 --image-pull-policy=Never --restart=Never >/dev/null
reason=
for _ in $(seq 300); do
  reason=$(kc -n "$NS" get pod missing -o jsonpath='{.status.containerStatuses[0].state.waiting.reason}' 2>/dev/null || true)
  [[ "$reason" == ErrImageNeverPull ]] && break; sleep 0.1
done
if [[ "$reason" == ErrImageNeverPull ]]; then ok "a missing image reports ErrImageNeverPull after $(took "$t0") s"
else bad "missing image: reason '$reason'"; fi

# 6. a ClusterIP Service (kube-proxy, iptables mode) and the pod network
t0=$EPOCHREALTIME
kc -n "$NS" expose deploy web --port 80 --target-port 8080 >/dev/null
svc=$(kc -n "$NS" get svc web -o jsonpath='{.spec.clusterIP}')
r=
for _ in $(seq 100); do
  r=$("$LAB_MACHINE" exec "$node" curl -s -m 2 "http://$svc/" 2>/dev/null || true)
  grep -q 'provisioner lab busybox' <<<"$r" && break; sleep 0.2
done
if grep -q 'provisioner lab busybox' <<<"$r"; then ok "ClusterIP $svc:80 answers from node $node after $(took "$t0") s"
else bad "ClusterIP $svc from $node: '$r'"; fi
r=$(kc -n "$NS" exec "$pod" -- sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 $svc 80" 2>&1 || true)
if grep -q 'provisioner lab busybox' <<<"$r"; then ok "ClusterIP $svc:80 answers from a pod (pod -> Service -> pod)"
else bad "ClusterIP from a pod: '$r'"; fi
r=$(curl -s -m 3 --noproxy '*' "http://$svc/" || true)
if grep -q 'provisioner lab busybox' <<<"$r"; then ok "ClusterIP $svc:80 answers from the host (routed through $node)"
else bad "ClusterIP from the host: '$r'"; fi
r=$(curl -s -m 3 --noproxy '*' "http://$podip:8080/" || true)
if grep -q 'provisioner lab busybox' <<<"$r"; then ok "pod IP $podip:8080 answers from the host"
else bad "pod IP from the host: '$r'"; fi

# 7. with several workers: pod to pod across nodes (each web pod from a pod on the last node)
last=${LAB_KUBE_NODES##* }
if [[ "$last" != "$node" ]]; then
  kc -n "$NS" run probe --image="$LAB_KUBE_IMAGE_BUSYBOX" --image-pull-policy=Never --restart=Never \
    --overrides="{\"spec\":{\"nodeName\":\"$last\"}}" --command -- sleep 300 >/dev/null
  kc -n "$NS" wait --for=condition=ready pod/probe --timeout=60s >/dev/null || true
  for ip in $(kc -n "$NS" get pods -l app=web -o jsonpath='{range .items[*]}{.status.podIP}@{.spec.nodeName} {end}'); do
    r=$(kc -n "$NS" exec probe -- sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 ${ip%@*} 8080" 2>&1 || true)
    if grep -q 'provisioner lab busybox' <<<"$r"; then ok "pod on $last -> pod ${ip%@*} on ${ip#*@}"
    else bad "pod on $last -> pod ${ip%@*} on ${ip#*@}: '$r'"; fi
  done
fi

kc delete namespace "$NS" --wait=false >/dev/null
echo "--- $pass passed, $fail failed in $(took "$t_all") s"
((fail == 0))
