#!/usr/bin/env bash
# tests/lab/cluster/smoke.sh - is the cluster lab fit for the cluster layer? (root; after
# `tests/lab/up.sh cluster`). Boots two public nodes and one private node, then checks:
#   - ssh debian@node with StrictHostKeyChecking=yes against `nodes.sh known-hosts`, to a
#     public node directly and to the private node through the bastion (ssh -J, config file)
#   - sudo -n, hostname = NAME, routes (private: no default route), the artifact server
#     (public: $LAB_CLUSTER_ARTIFACTS_URL; private: the bastion's relay), SHA256SUMS
#   - what a bootstrap needs inside: sysctl net.ipv4.ip_forward=1 (as root via sudo),
#     /proc/sys/net/bridge/bridge-nf-call-iptables (br_netfilter), iptables (nft) NAT rules
#   - containerd + runc from the artifacts (copied with scp) under a systemd unit:
#     ctr images import of pause/busybox, a busybox container prints "ok", the pause
#     container starts and stops
#   - reboot of a node (back on SSH; its network state is fresh, /etc/sysctl.d is applied),
#     node-to-node traffic, then delete leaves nothing
# Prints the timings and an idle node's memory. Exit 0 = fit. Node names: smoke-{a,b,p}
# (SMOKE_PREFIX changes "smoke").
# shellcheck disable=SC2016  # the bash -c scripts expand their own arguments
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$HERE/../lib.sh"
# shellcheck source=/dev/null
source "$LAB_STATE/cluster/env.sh" 2>/dev/null || lab_die "the cluster lab is not up: bash tests/lab/up.sh cluster"

N=$LAB_CLUSTER_NODES_SH
P=${SMOKE_PREFIX:-smoke}
A=$P-a B=$P-b C=$P-p
W=$(mktemp -d)
pass=0 fail=0
cleanup() { "$N" delete "$A" "$B" "$C" >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT
ok() { pass=$((pass + 1)); echo "PASS $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
check() { local what=$1; shift; if out=$("$@" 2>&1); then ok "$what${out:+  ($(tail -n1 <<<"$out"))}"; else bad "$what"; tail -n 15 <<<"$out" | sed 's/^/     /'; fi; }

"$N" delete "$A" "$B" "$C" >/dev/null 2>&1 || true

# ---- boot
t0=$EPOCHREALTIME
out=$("$N" up "$A" "$B") || lab_die "nodes.sh up $A $B failed"
t_pub=$(lab_since "$t0")
IP_A=$(awk -v n="$A" '$1 == n { print $2 }' <<<"$out")
IP_B=$(awk -v n="$B" '$1 == n { print $2 }' <<<"$out")
t0=$EPOCHREALTIME
out=$("$N" up --private "$C") || lab_die "nodes.sh up --private $C failed"
t_priv=$(lab_since "$t0")
IP_C=$(awk -v n="$C" '$1 == n { print $2 }' <<<"$out")
echo "nodes: $A $IP_A, $B $IP_B (public, both booted to ssh in $t_pub s); $C $IP_C (private, to sshd in $t_priv s)"
# idempotent: a second up of running nodes changes nothing and prints the same
check "nodes.sh up again is a no-op with the same addresses" \
  bash -c '[[ "$("$1" up "$2" 2>/dev/null)" == "$2 $3" ]]' _ "$N" "$A" "$IP_A"

# ---- ssh with pinned host keys
{ "$N" known-hosts "$A"; "$N" known-hosts "$B"; "$N" known-hosts "$C"; cat "$LAB_CLUSTER_BASTION_KNOWN_HOSTS"; } >"$W/known_hosts"
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
SJ=(ssh -F "$W/ssh_config" -J "$LAB_CLUSTER_SSH_USER@$LAB_CLUSTER_BASTION")
check "ssh $A (StrictHostKeyChecking=yes): hostname, sudo -n" \
  bash -c '[[ "$("${@:3}" "$2" "hostname; sudo -n true && echo sudo-ok" | xargs)" == "$1 sudo-ok" ]]' _ "$A" "$IP_A" "${S[@]}"
check "ssh -J bastion $C (private, pinned keys): hostname, sudo -n" \
  bash -c '[[ "$("${@:3}" "$2" "hostname; sudo -n true && echo sudo-ok" | xargs)" == "$1 sudo-ok" ]]' _ "$C" "$IP_C" "${SJ[@]}"
check "a wrong host key is refused" bash -c '! ssh -F "$1" -o UserKnownHostsFile=<(sed "s/^[^ ]*/$2/" "$3") "$2" true' _ \
  "$W/ssh_config" "$IP_B" <("$N" known-hosts "$A")
check "$C has no default route" bash -c '! "${@:2}" "$1" ip route show default | grep -q .' _ "$IP_C" "${SJ[@]}"
check "the host does not reach $C (unreachable route)" bash -c '! timeout 3 bash -c "exec 3<>/dev/tcp/$1/22" 2>/dev/null' _ "$IP_C"
check "$A reaches $B (node to node)" "${S[@]}" "$IP_A" "ping -c1 -W2 $IP_B >/dev/null && echo ok"

# ---- artifacts
check "$A: curl $LAB_CLUSTER_ARTIFACTS_URL/kubelet matches SHA256SUMS" "${S[@]}" "$IP_A" \
  "cd /tmp && curl -fsS -O $LAB_CLUSTER_ARTIFACTS_URL/SHA256SUMS -O $LAB_CLUSTER_ARTIFACTS_URL/kubelet && grep ' kubelet\$' SHA256SUMS | sha256sum -c - && rm -f kubelet SHA256SUMS"
check "$C: curl $LAB_CLUSTER_ARTIFACTS_URL_PRIVATE/etcd (the bastion's relay)" "${SJ[@]}" "$IP_C" \
  "cd /tmp && curl -fsS -O $LAB_CLUSTER_ARTIFACTS_URL_PRIVATE/SHA256SUMS -O $LAB_CLUSTER_ARTIFACTS_URL_PRIVATE/etcd && grep ' etcd\$' SHA256SUMS | sha256sum -c - && chmod +x etcd && ./etcd --version | head -n1 && rm -f etcd SHA256SUMS"

# ---- what a bootstrap does as root
check "$A: sudo sysctl -w net.ipv4.ip_forward=1" "${S[@]}" "$IP_A" "sudo -n sysctl -w net.ipv4.ip_forward=1"
check "$A: br_netfilter present (/proc/sys/net/bridge/bridge-nf-call-iptables)" "${S[@]}" "$IP_A" \
  "cat /proc/sys/net/bridge/bridge-nf-call-iptables"
check "$A: iptables NAT rules (iptables-nft)" "${S[@]}" "$IP_A" \
  "sudo -n iptables -t nat -N LAB-SMOKE && sudo -n iptables -t nat -A LAB-SMOKE -d 10.43.0.1/32 -p tcp --dport 443 -j DNAT --to-destination 127.0.0.1:6443 && sudo -n iptables -t nat -F LAB-SMOKE && sudo -n iptables -t nat -X LAB-SMOKE && sudo -n iptables --version"
check "$C: sudo ip route add 10.43.0.0/16 dev eth0 (the Service CIDR, no default route)" "${SJ[@]}" "$IP_C" \
  "sudo -n ip route add 10.43.0.0/16 dev eth0 && ip route get 10.43.0.1 | head -n1"

# ---- containerd from the artifacts (scp), a container runs
t0=$EPOCHREALTIME
AR=$LAB_CLUSTER_ARTIFACTS
check "scp containerd, shim, runc, ctr, images to $A" scp -F "$W/ssh_config" -q \
  "$AR/containerd" "$AR/containerd-shim-runc-v2" "$AR/runc" "$AR/ctr" "$AR/images/pause.oci.tar" "$AR/images/busybox.oci.tar" \
  "$IP_A:/tmp/"
cat >"$W/install.sh" <<'EOF'
set -e
cd /tmp
install -m 0755 containerd containerd-shim-runc-v2 runc ctr /usr/local/bin/
mkdir -p /etc/containerd
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
T
cat >/etc/systemd/system/containerd.service <<U
[Unit]
Description=containerd (lab smoke)
After=network.target lab-cgroup-rw.service
[Service]
ExecStart=/usr/local/bin/containerd --config /etc/containerd/config.toml
Type=notify
Delegate=yes
KillMode=process
Restart=always
[Install]
WantedBy=multi-user.target
U
systemctl daemon-reload
systemctl enable --now containerd 2>/dev/null
for i in $(seq 100); do ctr version >/dev/null 2>&1 && break; sleep 0.1; done
ctr -n k8s.io images import /tmp/pause.oci.tar >/dev/null
ctr -n k8s.io images import /tmp/busybox.oci.tar >/dev/null
ctr -n k8s.io images ls -q | grep '^localhost/lab/' | xargs
EOF
check "$A: containerd as a systemd unit, images imported" "${S[@]}" "$IP_A" "sudo -n bash -s" <"$W/install.sh"
check "$A: ctr run busybox echo ok" bash -c '[[ "$("${@:2}" "$1" "sudo -n ctr -n k8s.io run --rm localhost/lab/busybox:1 smoke-echo sh -c \"echo ok\"" | tr -d "\r")" == ok ]]' _ "$IP_A" "${S[@]}"
check "$A: ctr run the pause container, stop it" "${S[@]}" "$IP_A" \
  "sudo -n ctr -n k8s.io run -d localhost/lab/pause:1 smoke-pause >/dev/null && sleep 0.5 && sudo -n ctr -n k8s.io task ls | grep -q 'smoke-pause.*RUNNING' && sudo -n ctr -n k8s.io task kill -s KILL smoke-pause && sleep 0.5 && sudo -n ctr -n k8s.io task rm -f smoke-pause >/dev/null; sudo -n ctr -n k8s.io c rm smoke-pause && echo pause-ok"
t_ctr=$(lab_since "$t0")
mem_busy=$("$N" stats "$A" 2>/dev/null || true)

# ---- idle memory, reboot
sleep 2
mem_idle=$("$N" stats "$B")
"${S[@]}" "$IP_B" "sudo -n sysctl -qw net.ipv4.ip_forward=1 && sudo -n ip route add 10.43.0.0/16 dev eth0 && printf 'net.ipv4.conf.all.rp_filter = 2\n' | sudo -n tee /etc/sysctl.d/90-smoke.conf >/dev/null" ||
  bad "$B: sysctl, route, sysctl.d before the reboot"
t0=$EPOCHREALTIME
check "reboot $B: back on ssh" "$N" reboot "$B"
check "$B answers ssh after the reboot" "${S[@]}" "$IP_B" "cat /proc/sys/kernel/random/boot_id"
t_reboot=$(lab_since "$t0")
check "$B after the reboot: fresh network state (ip_forward 0, no extra route), /etc/sysctl.d applied" "${S[@]}" "$IP_B" \
  "[ \$(cat /proc/sys/net/ipv4/ip_forward) = 0 ] && ! ip route show 10.43.0.0/16 | grep -q . && [ \$(cat /proc/sys/net/ipv4/conf/all/rp_filter) = 2 ] && echo fresh"

# ---- delete
t0=$EPOCHREALTIME
check "delete $A $B $C leaves no mount, netns, veth, cgroup, state" "$N" delete "$A" "$B" "$C"
t_del=$(lab_since "$t0")
check "no machine of the smoke test remains" bash -c '! "$1" list | grep -E "^($2|$3|$4) "' _ "$N" "$A" "$B" "$C"
ports=$(for n in "$A" "$B" "$C"; do printf 'm%s0 ' "$(printf '%s' "cl-$n" | sha256sum | cut -c1-10)"; done)
check "no switch port (veth) of them remains" bash -c 'for p in $1; do ! ip -n labn-clus link show "$p" && ! ip -n labn-clpriv link show "$p"; done >/dev/null 2>&1' _ "$ports"

echo "---- figures"
echo "boot to ssh (2 public nodes in parallel, incl. a real login as debian): $t_pub s"
echo "boot to sshd (1 private node): $t_priv s"
echo "scp of containerd+runc+ctr+images, containerd up, import, 2 containers: $t_ctr s"
echo "reboot to ssh: $t_reboot s; delete of 3 nodes: $t_del s"
echo "idle node $B: $mem_idle"
echo "node $A with containerd (after the containers): $mem_busy"
echo "$pass passed, $fail failed"
((fail == 0))
