#!/usr/bin/env bash
# tests/lab/cluster/kube-check.sh [--private] - can a node of the cluster lab run Kubernetes
# as the cluster layer will install it? (root; after `tests/lab/up.sh cluster`)
#
# Boots one node (kcheck, or kcheck-p with --private: reached through the bastion, artifacts
# from the bastion's relay), and over SSH as debian + sudo -- nothing through the back door --
# installs from the artifact server and starts as 7 systemd units: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, containerd (+ runc, CNI bridge/host-local/
# loopback/portmap), kubelet, kube-proxy (iptables mode). Deliberately minimal (an all-in-one
# node; one CA and one admin certificate for every component, AlwaysAllow), because
# the point is the node, not the bootstrap: the node gets Ready, a busybox httpd pod serves
# on its CNI pod IP and through a ClusterIP Service (kube-proxy), a pod reaches the
# `kubernetes` Service (10.43.0.1:443), etcdctl says healthy, and after a reboot (a fresh
# network namespace: sysctls and routes persisted the usual way) everything serves again.
# Then the node is deleted.
# The settings the nspawn machine needs are marked "lab:" below; the rest is ordinary.
# Prints the timings and the node's memory with everything running.
# shellcheck disable=SC2016  # the bash -c scripts expand their own arguments
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$HERE/../lib.sh"
# shellcheck source=/dev/null
source "$LAB_STATE/cluster/env.sh" 2>/dev/null || lab_die "the cluster lab is not up: bash tests/lab/up.sh cluster"

N=$LAB_CLUSTER_NODES_SH
priv=0 name=kcheck url=$LAB_CLUSTER_ARTIFACTS_URL
if [[ "${1:-}" == --private ]]; then priv=1 name=kcheck-p url=$LAB_CLUSTER_ARTIFACTS_URL_PRIVATE; fi
W=$(mktemp -d)
keep=${KUBE_CHECK_KEEP:-0}   # 1: leave the node running (to look around)
cleanup() { ((keep)) || "$N" delete "$name" >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT
pass=0 fail=0
check() { local what=$1 out; shift; if out=$("$@" 2>&1); then pass=$((pass + 1)); echo "PASS $what${out:+  ($(tail -n1 <<<"$out"))}"; else fail=$((fail + 1)); echo "FAIL $what"; tail -n 25 <<<"$out" | sed 's/^/     /'; fi; }

"$N" delete "$name" >/dev/null 2>&1 || true
t0=$EPOCHREALTIME
if ((priv)); then out=$("$N" up --private "$name"); else out=$("$N" up "$name"); fi
ip=$(awk '{ print $2 }' <<<"$out")
echo "node $name $ip booted in $(lab_since "$t0") s"
{ "$N" known-hosts "$name"; cat "$LAB_CLUSTER_BASTION_KNOWN_HOSTS"; } >"$W/known_hosts"
cat >"$W/ssh_config" <<EOF
Host *
  User $LAB_CLUSTER_SSH_USER
  IdentityFile $LAB_CLUSTER_SSH_KEY
  IdentitiesOnly yes
  UserKnownHostsFile $W/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
  ConnectTimeout 10
  LogLevel ERROR
EOF
S=(ssh -F "$W/ssh_config")
((priv == 0)) || S+=(-J "$LAB_CLUSTER_SSH_USER@$LAB_CLUSTER_BASTION")
nd() { "${S[@]}" "$ip" "$@"; }   # a command on the node, as debian

# ---------------------------------------------------------------- the install, on the node
cat >"$W/install.sh" <<'EOF'
set -euo pipefail
URL=$1 IP=$2 NAME=$3
SVC_CIDR=10.43.0.0/16 POD_CIDR=10.42.0.0/16 NODE_POD_CIDR=10.42.0.0/24
mkdir -p /usr/local/bin /opt/cni/bin /etc/kubernetes /var/lib/kubernetes /etc/containerd /etc/cni/net.d
# every artifact, verified against SHA256SUMS (relative paths), 4 downloads at a time
D=/var/lib/lab-artifacts
mkdir -p "$D/cni" "$D/images" && cd "$D"
curl -fsS -O "$URL/SHA256SUMS"
awk '{ print $2 }' SHA256SUMS | xargs -P4 -I{} curl -fsS -o {} "$URL/{}"
sha256sum --quiet -c SHA256SUMS
install -m 0755 etcd etcdctl kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl \
  containerd containerd-shim-runc-v2 ctr runc /usr/local/bin/
install -m 0755 cni/* /opt/cni/bin/
# lab: no modprobe (no modules); br_netfilter and overlay are built into the kernel
test -e /proc/sys/net/bridge/bridge-nf-call-iptables
grep -qw overlay /proc/filesystems
# persisted as on any machine: a reboot starts with a fresh network namespace
printf 'net.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\n' >/etc/sysctl.d/90-kubernetes.conf
sysctl -q -p /etc/sysctl.d/90-kubernetes.conf
# a route for the Service CIDR when there is no default route (private nodes), at every boot
if ! ip route show default | grep -q .; then
  printf '[Unit]\nDescription=route to the Service CIDR\nAfter=network.target\nBefore=kubelet.service kube-proxy.service\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/sbin/ip route replace %s dev eth0\n[Install]\nWantedBy=multi-user.target\n' \
    "$SVC_CIDR" >/etc/systemd/system/service-cidr-route.service
  systemctl enable -q --now service-cidr-route.service
fi
# a minimal PKI (openssl comes with ca-certificates): CA, apiserver, one admin client
# certificate that every component uses (authorization: AlwaysAllow)
P=/etc/kubernetes/pki; mkdir -p "$P"; cd "$P"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=lab-check-ca \
  -keyout ca.key -out ca.crt 2>/dev/null
cert() {
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out "$1.crt" -extfile <(printf '%s\n' "$3") 2>/dev/null
}
cert apiserver /CN=kube-apiserver "subjectAltName=DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:localhost,IP:127.0.0.1,IP:$IP,IP:10.43.0.1
extendedKeyUsage=serverAuth"
cert admin /O=system:masters/CN=lab-admin extendedKeyUsage=clientAuth
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
cat >/etc/kubernetes/admin.kubeconfig <<K
apiVersion: v1
kind: Config
clusters: [{name: lab, cluster: {server: "https://127.0.0.1:6443", certificate-authority-data: $(base64 -w0 ca.crt)}}]
users: [{name: admin, user: {client-certificate-data: $(base64 -w0 admin.crt), client-key-data: $(base64 -w0 admin.key)}}]
contexts: [{name: lab, context: {cluster: lab, user: admin}}]
current-context: lab
K
chmod 600 /etc/kubernetes/admin.kubeconfig
printf '#!/bin/sh\nexec kubectl --kubeconfig=/etc/kubernetes/admin.kubeconfig "$@"\n' >/usr/local/bin/kc; chmod 755 /usr/local/bin/kc
KC=/etc/kubernetes/admin.kubeconfig
unit() { # unit NAME DESCRIPTION EXECSTART [EXTRA]
  printf '[Unit]\nDescription=%s\nAfter=network.target lab-cgroup-rw.service %s\n[Service]\nExecStart=%s\nRestart=always\nRestartSec=2\nLimitNOFILE=65536\n%s\n[Install]\nWantedBy=multi-user.target\n' \
    "$2" "${5:-}" "$3" "${4:-}" >"/etc/systemd/system/$1.service"
}
unit etcd "etcd" "/usr/local/bin/etcd --name $NAME --data-dir /var/lib/etcd --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 --initial-cluster $NAME=http://127.0.0.1:2380" "Type=notify"
unit kube-apiserver "kube-apiserver" "/usr/local/bin/kube-apiserver --etcd-servers=http://127.0.0.1:2379 --secure-port=6443 --bind-address=0.0.0.0 --advertise-address=$IP --client-ca-file=$P/ca.crt --tls-cert-file=$P/apiserver.crt --tls-private-key-file=$P/apiserver.key --kubelet-client-certificate=$P/admin.crt --kubelet-client-key=$P/admin.key --kubelet-preferred-address-types=InternalIP --service-cluster-ip-range=$SVC_CIDR --service-account-key-file=$P/sa.pub --service-account-signing-key-file=$P/sa.key --service-account-issuer=https://kubernetes.default.svc --authorization-mode=AlwaysAllow --allow-privileged=true" "" etcd.service
unit kube-controller-manager "kube-controller-manager" "/usr/local/bin/kube-controller-manager --kubeconfig=$KC --root-ca-file=$P/ca.crt --leader-elect=false --allocate-node-cidrs=true --cluster-cidr=$POD_CIDR --node-cidr-mask-size=24 --service-cluster-ip-range=$SVC_CIDR --service-account-private-key-file=$P/sa.key" "" kube-apiserver.service
unit kube-scheduler "kube-scheduler" "/usr/local/bin/kube-scheduler --kubeconfig=$KC --leader-elect=false" "" kube-apiserver.service
# lab: restrict_oom_score_adj (no CAP_SYS_RESOURCE), cgroupfs driver (SystemdCgroup = false)
cat >/etc/containerd/config.toml <<T
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/lab/pause:1"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
T
cat >/etc/cni/net.d/10-lab.conflist <<T
{ "cniVersion": "0.4.0", "name": "lab", "plugins": [
  { "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": { "type": "host-local", "ranges": [[{ "subnet": "$NODE_POD_CIDR" }]], "routes": [{ "dst": "0.0.0.0/0" }] } },
  { "type": "portmap", "capabilities": { "portMappings": true } } ] }
T
unit containerd "containerd" "/usr/local/bin/containerd --config /etc/containerd/config.toml" "Type=notify
Delegate=yes
KillMode=process
ExecStartPost=/bin/sh -c 'for i in \$(seq 100); do ctr version >/dev/null 2>&1 && break; sleep 0.1; done; for t in /var/lib/lab-artifacts/images/*.oci.tar; do ctr -n k8s.io images import \$t >/dev/null; done'"
# lab: cgroupDriver cgroupfs + cgroupRoot /, failSwapOn false, eviction on the host's disk
cat >/etc/kubernetes/kubelet-config.yaml <<Y
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: /
address: $IP
readOnlyPort: 0
authentication: {anonymous: {enabled: false}, webhook: {enabled: false}, x509: {clientCAFile: /etc/kubernetes/pki/ca.crt}}
authorization: {mode: AlwaysAllow}
failSwapOn: false
nodeStatusUpdateFrequency: 2s
evictionHard: {memory.available: 100Mi, nodefs.available: 5%, imagefs.available: 5%, nodefs.inodesFree: 5%}
Y
unit kubelet "kubelet" "/usr/local/bin/kubelet --config=/etc/kubernetes/kubelet-config.yaml --kubeconfig=$KC --container-runtime=remote --container-runtime-endpoint=unix:///run/containerd/containerd.sock --pod-infra-container-image=localhost/lab/pause:1 --hostname-override=$NAME --node-ip=$IP" "" containerd.service
# lab: conntrack sysctls are host-global (read-only here): kube-proxy must not set them
unit kube-proxy "kube-proxy" "/usr/local/bin/kube-proxy --kubeconfig=$KC --proxy-mode=iptables --cluster-cidr=$POD_CIDR --hostname-override=$NAME --bind-address=$IP --conntrack-max-per-core=0 --conntrack-min=0 --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0" ""
systemctl daemon-reload
systemctl enable -q --now etcd
systemctl enable -q --now kube-apiserver kube-controller-manager kube-scheduler containerd
systemctl enable -q --now kubelet kube-proxy
echo installed
EOF

t0=$EPOCHREALTIME
check "install + start 7 units over ssh (curl from $url)" nd "sudo -n bash -s -- $url $ip $name" <"$W/install.sh"
t_install=$(lab_since "$t0")
k() { nd "sudo -n kc $*"; }
t0=$EPOCHREALTIME
check "node $name Ready" nd "for i in \$(seq 240); do sudo -n kc get node $name -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' 2>/dev/null | grep -qx True && exit 0; sleep 0.5; done; exit 1"
t_ready=$(lab_since "$t0")
((fail == 0)) || { nd "sudo -n journalctl --no-pager -n 30 -u kubelet -u containerd" || true; exit 1; }
check "default ServiceAccount" nd "for i in \$(seq 120); do sudo -n kc get sa default >/dev/null 2>&1 && exit 0; sleep 0.5; done; exit 1"
cat >"$W/web.yaml" <<'Y'
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: httpd
        image: localhost/lab/busybox:1
        imagePullPolicy: Never
        command: ["httpd", "-f", "-p", "8080", "-h", "/var/www"]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
Y
t0=$EPOCHREALTIME
check "Deployment web (busybox httpd, readiness probe) Available" \
  nd "sudo -n kc apply -f - >/dev/null && sudo -n kc wait --for=condition=Available deploy/web --timeout=120s" <"$W/web.yaml"
t_pod=$(lab_since "$t0")
pod_ip=$(k get pod -l app=web -o 'jsonpath={.items[0].status.podIP}' 2>/dev/null || true)
svc_ip=$(k get svc web -o 'jsonpath={.spec.clusterIP}' 2>/dev/null || true)
check "the node reaches the pod IP $pod_ip (CNI bridge)" nd "curl -fsS -m 5 http://$pod_ip:8080/ | head -c 200 | wc -c"
check "the node reaches the ClusterIP $svc_ip (kube-proxy iptables)" nd "curl -fsS -m 5 http://$svc_ip/ | wc -c"
cat >"$W/client.sh" <<EOF
kc() { sudo -n kc "\$@"; }
kc run client --image=localhost/lab/busybox:1 --image-pull-policy=Never --restart=Never -- \
  sh -c 'wget -q -O- http://$svc_ip/ >/dev/null && echo web-ok && nc -w 3 10.43.0.1 443 </dev/null && echo api-ok' >/dev/null
for i in \$(seq 120); do
  p=\$(kc get pod client -o jsonpath={.status.phase}); [ "\$p" = Succeeded ] || [ "\$p" = Failed ] && break; sleep 0.5
done
kc logs client | xargs
[ "\$p" = Succeeded ]
EOF
check "a pod reaches web's ClusterIP and the kubernetes Service 10.43.0.1:443" nd "bash -s" <"$W/client.sh"
check "etcdctl endpoint health" nd "ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:2379 endpoint health 2>&1"
check "all 7 units active" nd "systemctl is-active -q etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy && echo all-active"
mem=$("$N" stats "$name")
t0=$EPOCHREALTIME
check "reboot $name: back on SSH" "$N" reboot "$name"
cat >"$W/after.sh" <<'EOF'
for i in $(seq 180); do
  ip=$(sudo -n kc get pod -l app=web -o jsonpath='{.items[0].status.podIP}' 2>/dev/null)
  svc=$(sudo -n kc get svc web -o jsonpath='{.spec.clusterIP}' 2>/dev/null)
  [ -n "$ip" ] && curl -fsS -m 2 "http://$ip:8080/" >/dev/null 2>&1 && curl -fsS -m 2 "http://$svc/" >/dev/null 2>&1 &&
    { echo "pod $ip and ClusterIP $svc serve again"; exit 0; }
  sleep 1
done
exit 1
EOF
check "after the reboot: the units come back, web serves on its new pod IP and its ClusterIP" nd "bash -s" <"$W/after.sh"
t_reboot=$(lab_since "$t0")
echo "---- figures"
echo "install (download + verify + 7 units started): $t_install s; node Ready after a further $t_ready s; Deployment Available in $t_pod s"
echo "reboot until the pod serves again through its Service: $t_reboot s"
echo "node with etcd + control plane + kubelet + kube-proxy + containerd + 1 pod: $mem"
echo "$pass passed, $fail failed"
((fail == 0))
