#!/usr/bin/env bash
# tests/lab/openstack/pods-check.sh SERVER_ID [KUBELET] - check that a server of the lab
# cloud (a machine of debian-12-node, e.g. a worker of `provisioner up lab`) can run pods
# once a kubelet + containerd + runc are installed on it, as the cluster layer will do:
#
#   * Debian's containerd, runc, containernetworking-plugins and iptables (.debs fetched
#     on the host with apt-get download, cached in $LAB_CACHE/openstack/debs: machines have
#     no internet) and a kubelet v1.20 binary (default: the kube lab's build in
#     $LAB_CACHE/kubernetes/*/bin) are put into the machine and installed with dpkg;
#   * containerd as the kube lab's workers configure it (cgroupfs, restrict_oom_score_adj,
#     a registry-free sandbox image), a CNI bridge network 10.88.0.0/24;
#   * a standalone kubelet (no API server: static pods from /etc/kubernetes/manifests),
#     with two pods: one prints a line, one serves HTTP on its pod IP;
#   * passes when the first pod's log holds its line and the second answers on its pod IP.
#
# The files go in through the machine's root on the host and the commands through
# machine.sh exec (not SSH): the point is what the machine can run, which the nspawn
# settings of --profile kubelet decide (tests/lab/nodes/machine.sh; fixtures-kubelet.md).
# The installed packages stay in the machine (delete the server to get rid of them).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$HERE/../lib.sh"
M="$LAB_DIR/nodes/machine.sh"
server=${1:?usage: pods-check.sh SERVER_ID [KUBELET]}
name=os-${server#os-}
kubelet=${2:-$(find "$LAB_CACHE/kubernetes" -path '*/bin/kubelet' 2>/dev/null | sort | tail -n1)}
[[ -x "$kubelet" ]] || lab_die "no kubelet binary (build the kube lab once: tests/lab/up.sh kube, or give its path)"
root=$("$M" root "$name")
x() { "$M" exec "$name" "$@"; }
t0=$EPOCHREALTIME

debs="$LAB_CACHE/openstack/debs"
pkgs=(containerd runc containernetworking-plugins iptables libip4tc2 libip6tc2 libnetfilter-conntrack3
  libnfnetlink0 libnftnl11 libxtables12 libmnl0)
if [[ ! -f "$debs/.complete" ]]; then
  rm -rf "$debs"; mkdir -p "$debs"
  (cd "$debs" && apt-get -o APT::Sandbox::User=root download -q "${pkgs[@]}" >/dev/null) || lab_die "apt-get download ${pkgs[*]} failed"
  touch "$debs/.complete"
fi

# images without a registry (tests/lab/kube/image.sh): busybox, and a "pause" made of it
img=$(mktemp -d); trap 'rm -rf "$img"' EXIT
mkdir -p "$img/rootfs/bin" "$img/rootfs/var/www"
cp /bin/busybox "$img/rootfs/bin/busybox"
for a in sh sleep echo cat httpd wget hostname ip; do ln -s busybox "$img/rootfs/bin/$a"; done
echo pods-check-http >"$img/rootfs/var/www/index.html"
"$LAB_DIR/kube/image.sh" build-rootfs "$img/rootfs" localhost/lab/busybox:1 "$img/busybox.oci.tar" --cmd '["/bin/sh"]' >/dev/null
"$LAB_DIR/kube/image.sh" build-rootfs "$img/rootfs" localhost/lab/pause:1 "$img/pause.oci.tar" \
  --entrypoint '["/bin/sleep","2147483647"]' >/dev/null

w="$root/var/tmp/pods-check"
mkdir -p "$w" "$root/etc/containerd" "$root/etc/cni/net.d" "$root/etc/kubernetes/manifests"
cp "$debs"/*.deb "$img"/*.oci.tar "$w/"
cp "$kubelet" "$w/kubelet"
cat >"$root/etc/containerd/config.toml" <<'T'
version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/lab/pause:1"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
T
cat >"$root/etc/cni/net.d/10-pods-check.conflist" <<'T'
{ "cniVersion": "0.4.0", "name": "pods-check", "plugins": [
  { "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
    "ipam": { "type": "host-local", "ranges": [[{ "subnet": "10.88.0.0/24" }]] } } ] }
T
cat >"$root/etc/kubernetes/kubelet-config.yaml" <<'Y'
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: /
staticPodPath: /etc/kubernetes/manifests
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
readOnlyPort: 0
failSwapOn: false
evictionHard: {memory.available: 50Mi, nodefs.available: 1%, imagefs.available: 1%}
Y
for p in echo http; do
  # shellcheck disable=SC2016  # $(hostname) runs in the pod
  if [[ $p == echo ]]; then cmd='["sh", "-c", "echo pods-check-ok from $(hostname); sleep 3600"]'
  else cmd='["httpd", "-f", "-p", "8080", "-h", "/var/www"]'; fi
  cat >"$root/etc/kubernetes/manifests/pods-check-$p.yaml" <<Y
apiVersion: v1
kind: Pod
metadata: {name: pods-check-$p, namespace: default}
spec:
  containers:
    - name: main
      image: localhost/lab/busybox:1
      imagePullPolicy: Never
      command: $cmd
Y
done

x sh -c "dpkg -i --force-confold /var/tmp/pods-check/*.deb" >/dev/null
x systemctl restart containerd
for _ in $(seq 100); do x ctr version >/dev/null 2>&1 && break; sleep 0.2; done
for t in busybox pause; do x ctr -n k8s.io images import "/var/tmp/pods-check/$t.oci.tar" >/dev/null; done
x systemctl stop pods-check-kubelet >/dev/null 2>&1 || true
x systemctl reset-failed pods-check-kubelet >/dev/null 2>&1 || true
x systemd-run --unit=pods-check-kubelet /var/tmp/pods-check/kubelet --config=/etc/kubernetes/kubelet-config.yaml \
  --container-runtime=remote --container-runtime-endpoint=unix:///run/containerd/containerd.sock \
  --pod-infra-container-image=localhost/lab/pause:1 --v=1 >/dev/null

ok_echo='' ok_http='' podip=''
for _ in $(seq 240); do
  # shellcheck disable=SC2016  # expanded in the machine
  [[ -n "$ok_echo" ]] || ok_echo=$(x sh -c 'cat /var/log/pods/default_pods-check-echo-*/main/*.log 2>/dev/null' | grep -o 'pods-check-ok from [^"]*' | head -n1 || true)
  if [[ -z "$ok_http" ]]; then
    # the pods' IPs on the CNI bridge (host-local's records); the one that serves HTTP
    podip=$(x ls /var/lib/cni/networks/pods-check/ 2>/dev/null | grep -o '^10\.88\.0\.[0-9]*$' | xargs || true)
    for ip in $podip; do
      if x curl -s -m 2 "http://$ip:8080/" 2>/dev/null | grep -q pods-check-http; then ok_http=$ip; break; fi
    done
  fi
  [[ -n "$ok_echo" && -n "$ok_http" ]] && break
  sleep 0.5
done
if [[ -z "$ok_echo" || -z "$ok_http" ]]; then
  x journalctl -u pods-check-kubelet --no-pager -n 40 >&2 || true
  lab_die "$name: pods did not run (echo: '${ok_echo}', http on: '${podip}')"
fi
echo "$name: pods run: log '$ok_echo', HTTP from the pod at $ok_http:8080; $(x sh -c 'ctr -n k8s.io tasks ls -q | wc -l') containers running (kubelet $("$w/kubelet" --version | cut -d' ' -f2), containerd $(x containerd --version | cut -d' ' -f3)) in $(lab_since "$t0") s"
