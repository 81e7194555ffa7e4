# shellcheck shell=bash
# tests/lab/kube/component.sh - a real Kubernetes v1.20 cluster (sourced after lib.sh).
#
#   etcd (Debian etcd-server)          http://127.0.0.1:$LAB_PORT_KUBE_ETCD (12379, peer 12380)
#   kube-apiserver                     https://127.0.0.1:$LAB_PORT_KUBE (16443): client-cert
#                                      auth, RBAC + Node authorization, service-account keys
#     socat forwarder                  $LAB_KUBE_GW:$LAB_PORT_KUBE -> the apiserver, so that
#                                      workers (and pods, via the kubernetes Service) reach it
#   kube-controller-manager            https://127.0.0.1:$LAB_PORT_KUBE_CM (16457), allocates
#                                      node pod CIDRs from $LAB_KUBE_CLUSTER_CIDR
#   kube-scheduler                     https://127.0.0.1:$LAB_PORT_KUBE_SCHED (16459)
#   $LAB_KUBE_WORKERS workers          kube-w1.. : machines of tests/lab/nodes (profile
#                                      kubelet) on network "kube" ($LAB_KUBE_NET, host side
#                                      $LAB_KUBE_GW), each with Debian's containerd + runc +
#                                      CNI plugins, kubelet and kube-proxy (iptables mode)
#
# Binaries: built once from Debian bookworm's `kubernetes` source package (build.sh, ~13 min,
# cached in $LAB_CACHE/kubernetes/<version>/bin); the workers bind them read-only. Images
# (no registry needed): localhost/lab/busybox:1 and localhost/lab/pause:1, OCI tarballs made
# by image.sh, imported into each worker's containerd when it starts; `image.sh import T.tar`
# adds more. Pods of these images must use imagePullPolicy Never or IfNotPresent.
# The lab registry (tests/lab/registry, `up.sh registry kube`): the workers route its address
# ($LAB_REGISTRY_ADDR/32 via $LAB_KUBE_GW) and, when it is up (or comes up later), trust its
# CA through containerd's certs.d (/etc/containerd/certs.d/<host:port>/hosts.toml + ca.crt).
# No credentials on the workers: pods pull with imagePullSecrets (kubelet hands them to CRI).
# No cluster DNS (CoreDNS is not packaged by Debian): Service names do not resolve.
# The eo services (up.sh s3 / eo: moto S3, STAC API, TiTiler) listen on the host's loopback;
# socat relays on the gateway make them reachable from pods (and the host) at
# http://$LAB_KUBE_GW:<same port> ($LAB_KUBE_S3_URL, $LAB_KUBE_STAC_URL, $LAB_KUBE_TITILER_URL).
# They relay whatever listens there: a service started later is reachable without a restart.
# Pod network: CNI bridge + host-local per worker (pod CIDR allocated by the controller-
# manager), no overlay and no masquerading: each worker routes the others' pod CIDRs, and
# the host routes every pod CIDR and the Service CIDR to the workers (via the lab network),
# so the host reaches pod IPs and ClusterIPs; the host keeps ip_forward=0.
#
# A (re)start after down.sh is a fresh cluster: empty etcd, new workers (the PKI is kept).
# State: $LAB_STATE/kube/{pki,etcd,log,run,images,*.kubeconfig,workers,env.sh}; worker
# machines under $LAB_STATE/kube/machines/<name>.
# Settings: LAB_PORT_KUBE, LAB_PORT_KUBE_ETCD, LAB_PORT_KUBE_CM, LAB_PORT_KUBE_SCHED,
# LAB_KUBE_WORKERS (1-9, default 1), LAB_KUBE_NET (a /24, default 10.231.0.0/24),
# LAB_KUBE_SERVICE_CIDR (10.232.0.0/16), LAB_KUBE_CLUSTER_CIDR (10.233.0.0/16).

# shellcheck source-path=SCRIPTDIR source=versions.sh
source "$LAB_DIR/kube/versions.sh"
# shellcheck source-path=SCRIPTDIR source=../registry/component.sh
source "$LAB_DIR/registry/component.sh"   # reg_hosts_toml
LAB_PORT_KUBE="${LAB_PORT_KUBE:-16443}"
LAB_PORT_KUBE_ETCD="${LAB_PORT_KUBE_ETCD:-12379}"
LAB_PORT_KUBE_CM="${LAB_PORT_KUBE_CM:-16457}"
LAB_PORT_KUBE_SCHED="${LAB_PORT_KUBE_SCHED:-16459}"
for _p in "$LAB_PORT_KUBE" "$LAB_PORT_KUBE_ETCD" "$LAB_PORT_KUBE_CM" "$LAB_PORT_KUBE_SCHED"; do
  if ! [[ "$_p" =~ ^[0-9]+$ ]] || ((_p < 1 || _p > 65534)); then
    echo "[lab] ERROR: bad port '$_p' in LAB_PORT_KUBE*" >&2; exit 1
  fi
done
LAB_KUBE_WORKERS="${LAB_KUBE_WORKERS:-1}"
[[ "$LAB_KUBE_WORKERS" =~ ^[1-9]$ ]] || { echo "[lab] ERROR: LAB_KUBE_WORKERS must be 1-9" >&2; exit 1; }
LAB_KUBE_NET="${LAB_KUBE_NET:-10.231.0.0/24}"
[[ "$LAB_KUBE_NET" =~ ^([0-9]+\.[0-9]+\.[0-9]+)\.0/24$ ]] || { echo "[lab] ERROR: LAB_KUBE_NET must be a /24 (A.B.C.0/24)" >&2; exit 1; }
KUBE_NET_PREFIX=${BASH_REMATCH[1]}
LAB_KUBE_GW=$KUBE_NET_PREFIX.1
LAB_KUBE_SERVICE_CIDR="${LAB_KUBE_SERVICE_CIDR:-10.232.0.0/16}"
LAB_KUBE_CLUSTER_CIDR="${LAB_KUBE_CLUSTER_CIDR:-10.233.0.0/16}"
KUBE_SERVICE_IP=${LAB_KUBE_SERVICE_CIDR%.*/*}.1   # first address: the kubernetes Service
KUBE_NETNAME=kube
KUBE_S="$LAB_STATE/kube"
KUBE_PKI="$KUBE_S/pki"
KUBE_MACHINE="$LAB_DIR/nodes/machine.sh"
KUBE_IMG_BUSYBOX=localhost/lab/busybox:1
KUBE_IMG_PAUSE=localhost/lab/pause:1
KUBE_PROCS=(relay-s3 relay-stac relay-titiler socat-apiserver kube-scheduler kube-controller-manager kube-apiserver etcd)   # stop order

# kube_registry : "HOST:PORT CA" of the lab registry when it is up (its env.sh), else
# "$LAB_REGISTRY_ADDR:$LAB_PORT_REGISTRY" alone
kube_registry() {
  if [[ -f "$LAB_STATE/registry/env.sh" ]]; then
    # shellcheck disable=SC2016  # expanded by the inner bash
    bash -c 'source "$1" && echo "$LAB_REGISTRY $LAB_REGISTRY_CA"' _ "$LAB_STATE/registry/env.sh"
  else
    echo "$LAB_REGISTRY_ADDR:$LAB_PORT_REGISTRY"
  fi
}

kube_workers() { local i; for ((i = 1; i <= LAB_KUBE_WORKERS; i++)); do echo "kube-w$i"; done; }
kube_worker_ip() { echo "$KUBE_NET_PREFIX.$((10 + ${1#kube-w}))"; }
kc() { "$KUBE_BIN/kubectl" --kubeconfig="$KUBE_S/admin.kubeconfig" "$@"; }

# ---------------------------------------------------------------- binaries, base, images
# kube_prepare : KUBE_BIN (built binaries), KUBE_LOWER (worker rootfs); the Kubernetes build
# (~13 min cold) and the worker base (debootstrap, ~2 min cold) run in parallel.
kube_prepare() {
  local top="$LAB_CACHE/kubernetes/$KUBE_BUILD" pkgs t0=$EPOCHREALTIME bpid lpid out
  pkgs=(etcd-server socat busybox-static gcc libc6-dev openssl openssh-client iproute2
    systemd-container debootstrap zstd)
  [[ -f "$top/bin/.complete" ]] || pkgs+=(golang-go rsync dpkg-dev make debian-archive-keyring)
  lab_apt "${pkgs[@]}"
  out="$KUBE_S/run"; mkdir -p "$out"
  "$LAB_DIR/kube/build.sh" >"$out/build.out" &
  bpid=$!
  "$LAB_DIR/nodes/base.sh" --name kube-worker \
    --extra "containerd runc containernetworking-plugins iptables conntrack" >"$out/base.out" &
  lpid=$!
  wait "$bpid" || lab_die "the Kubernetes build failed (log: $LAB_CACHE/log/kubernetes-$KUBE_BUILD.log)"
  wait "$lpid" || lab_die "the worker base failed (logs: $LAB_CACHE/log/nodes-base-kube-worker-*.log)"
  KUBE_BIN=$(tail -n1 "$out/build.out") KUBE_LOWER=$(tail -n1 "$out/base.out")
  [[ -x "$KUBE_BIN/kube-apiserver" && -d "$KUBE_LOWER/etc" ]] || lab_die "build/base gave no result"
  KUBE_PAUSE_C="$top/pause.c"
  [[ -f "$KUBE_PAUSE_C" ]] || lab_die "$KUBE_PAUSE_C missing: remove $top/bin and rerun (build.sh keeps it)"
  lab_log "kube binaries + worker base ready in $(lab_since "$t0") s"
}

kube_images() {
  local key d
  key=$( { sha256sum "$KUBE_PAUSE_C" "$LAB_DIR/kube/image.sh"; dpkg-query -W -f='${Version}' busybox-static; } | sha256sum | cut -c1-12)
  d="$LAB_CACHE/kube-images/$key"
  if [[ ! -f "$d/.complete" ]]; then
    rm -rf "$d"; mkdir -p "$d"
    "$LAB_DIR/kube/image.sh" lab-images "$d" "$KUBE_PAUSE_C"
    touch "$d/.complete"
  fi
  # the workers bind this dir read-only: only the two lab images in it
  mkdir -p "$KUBE_S/images"
  cp -u "$d/busybox.oci.tar" "$d/pause.oci.tar" "$KUBE_S/images/"
}

# ---------------------------------------------------------------- PKI (openssl, EC P-256)
kube_cert() { # kube_cert NAME SUBJ [EXTENSIONS]  (signed by the lab CA; kept when present)
  local n=$1 subj=$2 ext=${3:-extendedKeyUsage=clientAuth}
  [[ -f "$KUBE_PKI/$n.crt" ]] && return 0
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$subj" \
    -keyout "$KUBE_PKI/$n.key" -out "$KUBE_PKI/$n.csr" 2>/dev/null
  openssl x509 -req -in "$KUBE_PKI/$n.csr" -CA "$KUBE_PKI/ca.crt" -CAkey "$KUBE_PKI/ca.key" \
    -CAcreateserial -days 3650 -out "$KUBE_PKI/$n.crt" -extfile <(printf '%s\n' "$ext") 2>/dev/null ||
    lab_die "openssl: certificate $n failed"
  rm -f "$KUBE_PKI/$n.csr"
}

# kube_kubeconfig FILE CERT USER SERVER : self-contained (certificates embedded)
kube_kubeconfig() {
  local f=$1 c=$2 u=$3 s=$4
  cat >"$f.tmp" <<K
apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: $s
    certificate-authority-data: $(base64 -w0 "$KUBE_PKI/ca.crt")
users:
- name: $u
  user:
    client-certificate-data: $(base64 -w0 "$KUBE_PKI/$c.crt")
    client-key-data: $(base64 -w0 "$KUBE_PKI/$c.key")
contexts:
- name: lab
  context: {cluster: lab, user: $u}
current-context: lab
K
  mv "$f.tmp" "$f"
}

kube_pki() {
  local params w
  params="gw=$LAB_KUBE_GW svc=$KUBE_SERVICE_IP port=$LAB_PORT_KUBE workers=$(kube_workers | xargs)"
  if [[ "$(cat "$KUBE_PKI/params" 2>/dev/null)" != "$params" ]]; then
    # new addresses: new certificates (the CA and SA keys are kept)
    find "$KUBE_PKI" -maxdepth 1 -name '*.crt' ! -name ca.crt -delete 2>/dev/null || true
  fi
  mkdir -p "$KUBE_PKI"; chmod 700 "$KUBE_PKI"
  if [[ ! -f "$KUBE_PKI/ca.crt" ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -subj /CN=provisioner-lab-kube-ca -keyout "$KUBE_PKI/ca.key" -out "$KUBE_PKI/ca.crt" 2>/dev/null
  fi
  if [[ ! -f "$KUBE_PKI/sa.key" ]]; then
    openssl genrsa -out "$KUBE_PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$KUBE_PKI/sa.key" -pubout -out "$KUBE_PKI/sa.pub" 2>/dev/null
  fi
  kube_cert apiserver /CN=kube-apiserver "subjectAltName=DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$LAB_KUBE_GW,IP:$KUBE_SERVICE_IP
extendedKeyUsage=serverAuth"
  kube_cert loopback-serving /CN=localhost "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
  kube_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  kube_cert admin "/O=system:masters/CN=lab-admin"
  kube_cert controller-manager /CN=system:kube-controller-manager
  kube_cert scheduler /CN=system:kube-scheduler
  kube_cert kube-proxy /CN=system:kube-proxy
  for w in $(kube_workers); do kube_cert "kubelet-$w" "/O=system:nodes/CN=system:node:$w"; done
  local local_api="https://127.0.0.1:$LAB_PORT_KUBE"
  kube_kubeconfig "$KUBE_S/admin.kubeconfig" admin lab-admin "$local_api"
  kube_kubeconfig "$KUBE_S/controller-manager.kubeconfig" controller-manager system:kube-controller-manager "$local_api"
  kube_kubeconfig "$KUBE_S/scheduler.kubeconfig" scheduler system:kube-scheduler "$local_api"
  chmod 600 "$KUBE_S"/*.kubeconfig
  echo "$params" >"$KUBE_PKI/params"
}

# ---------------------------------------------------------------- workers
# kube_worker_files NAME ROOT : configuration written into a worker's disk before it boots
kube_worker_files() {
  local n=$1 r=$2 ip e u
  ip=$(kube_worker_ip "$n")
  e=$r/etc/kubernetes; u=$r/etc/systemd/system
  mkdir -p "$e/pki" "$r/etc/containerd" "$r/etc/cni/net.d" "$u/multi-user.target.wants" "$u/containerd.service.d" \
    "$r/opt/lab/kube/bin" "$r/opt/lab/kube/images"
  cp "$KUBE_PKI/ca.crt" "$e/pki/"
  kube_kubeconfig "$e/kubelet.kubeconfig" "kubelet-$n" "system:node:$n" "https://$LAB_KUBE_GW:$LAB_PORT_KUBE"
  kube_kubeconfig "$e/kube-proxy.kubeconfig" kube-proxy system:kube-proxy "https://$LAB_KUBE_GW:$LAB_PORT_KUBE"
  chmod 600 "$e"/*.kubeconfig
  # containerd: Debian's containerd.service reads /etc/containerd/config.toml. The CNI config
  # is rendered by containerd from the template once kubelet passes the node's pod CIDR
  # (allocated by the controller-manager) through the CRI.
  cat >"$r/etc/containerd/config.toml" <<T
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  # imported from pause.oci.tar, never pulled
  sandbox_image = "$KUBE_IMG_PAUSE"
  # no CAP_SYS_RESOURCE on the lab host: negative oom_score_adj (sandbox -998) would fail
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
    conf_template = "/etc/kubernetes/cni.conflist.template"
  # per-registry settings (CA, endpoints): certs.d/<host:port>/hosts.toml, read at each pull
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d"
T
  mkdir -p "$r/etc/containerd/certs.d"
  local reg reg_ca
  read -r reg reg_ca <<<"$(kube_registry)"
  if [[ -n "$reg_ca" && -f "$reg_ca" ]]; then
    mkdir -p "$r/etc/containerd/certs.d/$reg"
    reg_hosts_toml "$r/etc/containerd/certs.d/$reg" "$reg_ca"
  fi
  cat >"$e/cni.conflist.template" <<'T'
{
  "cniVersion": "0.4.0",
  "name": "lab",
  "plugins": [
    { "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": { "type": "host-local", "ranges": [[{ "subnet": "{{.PodCIDR}}" }]],
                "routes": [{ "dst": "0.0.0.0/0" }] } },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
T
  cat >"$e/kubelet-config.yaml" <<Y
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: /              # the machine's own cgroup (cgroup namespace of the nspawn machine)
address: $ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: /etc/kubernetes/pki/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
failSwapOn: false
serializeImagePulls: false
nodeStatusUpdateFrequency: 2s
evictionHard: {memory.available: 100Mi, nodefs.available: 5%, imagefs.available: 5%, nodefs.inodesFree: 5%}
imageGCHighThresholdPercent: 95
imageGCLowThresholdPercent: 90
Y
  cat >"$e/kube-proxy-config.yaml" <<Y
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: /etc/kubernetes/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $LAB_KUBE_CLUSTER_CIDR
hostnameOverride: $n
bindAddress: $ip
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
# nf_conntrack_max and the conntrack timeouts: left alone (0 = do not set)
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
# SNAT all Service traffic: pod -> Service -> pod on the same bridge works without relying on
# br_netfilter, and the host (routed to ClusterIPs through this node) gets its answers
iptables: {masqueradeAll: true}
Y
  cat >"$u/containerd.service.d/lab.conf" <<'U'
[Unit]
After=lab-cgroup-rw.service
Wants=lab-cgroup-rw.service
[Service]
ExecStartPost=/bin/sh -c 'for i in $(seq 100); do ctr version >/dev/null 2>&1 && break; sleep 0.1; done; for t in /opt/lab/kube/images/*.oci.tar; do [ -e "$t" ] && ctr -n k8s.io images import "$t" >/dev/null; done'
U
  cat >"$u/kubelet.service" <<U
[Unit]
Description=kubelet (Kubernetes v1.20, provisioner lab)
After=containerd.service lab-cgroup-rw.service
Requires=containerd.service
[Service]
ExecStart=/opt/lab/kube/bin/kubelet --config=/etc/kubernetes/kubelet-config.yaml \\
  --kubeconfig=/etc/kubernetes/kubelet.kubeconfig --container-runtime=remote \\
  --container-runtime-endpoint=unix:///run/containerd/containerd.sock \\
  --pod-infra-container-image=$KUBE_IMG_PAUSE --hostname-override=$n --node-ip=$ip --v=1
Restart=always
RestartSec=2
[Install]
WantedBy=multi-user.target
U
  cat >"$u/kube-proxy.service" <<U
[Unit]
Description=kube-proxy (Kubernetes v1.20, provisioner lab)
After=network.target lab-cgroup-rw.service
[Service]
ExecStart=/opt/lab/kube/bin/kube-proxy --config=/etc/kubernetes/kube-proxy-config.yaml --v=1
Restart=always
RestartSec=2
[Install]
WantedBy=multi-user.target
U
  ln -sf ../kubelet.service "$u/multi-user.target.wants/kubelet.service"
  ln -sf ../kube-proxy.service "$u/multi-user.target.wants/kube-proxy.service"
  # pod HTTP checks from the node: the base has curl; add the workers to /etc/hosts
  local w
  for w in $(kube_workers); do echo "$(kube_worker_ip "$w") $w"; done >>"$r/etc/hosts"
  echo "$LAB_KUBE_GW lab-host" >>"$r/etc/hosts"
}

kube_worker_up() { # kube_worker_up NAME : fresh machine, booted without waiting
  local n=$1 ip root reg
  ip=$(kube_worker_ip "$n")
  read -r reg _ <<<"$(kube_registry)"
  "$KUBE_MACHINE" delete "$n" --timeout 4 >/dev/null 2>&1 || true
  # no default route (see the fixture notes): a /32 to the lab registry through the host
  "$KUBE_MACHINE" prepare "$n" --lower "$KUBE_LOWER" --state "$KUBE_S/machines/$n" \
    --net "$KUBE_NETNAME" --ip "$ip/24" --profile kubelet \
    --route "$LAB_KUBE_SERVICE_CIDR" --route "${reg%:*}/32:$LAB_KUBE_GW" \
    --bind-ro "$KUBE_BIN:/opt/lab/kube/bin" --bind-ro "$KUBE_S/images:/opt/lab/kube/images"
  root=$("$KUBE_MACHINE" root "$n")
  kube_worker_files "$n" "$root"
  "$KUBE_MACHINE" boot "$n" --wait none
}

# kube_node_ready NAME : Ready=True posted by a kubelet started after $KUBE_T_START
kube_node_ready() {
  local out st hb
  out=$(kc get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}' 2>/dev/null) || return 1
  st=${out%% *} hb=${out#* }
  [[ "$st" == True && -n "$hb" ]] && (($(date -d "$hb" +%s) >= ${KUBE_T_START%.*} - 1))
}

# ---------------------------------------------------------------- control plane
kube_control_plane() {
  local P=$KUBE_PKI
  lab_service etcd kube "$LAB_PORT_KUBE_ETCD" "http://$LAB_HOST:$LAB_PORT_KUBE_ETCD/health" 60 2xx \
    etcd --name lab-kube --data-dir "$KUBE_S/etcd" \
    --listen-client-urls "http://$LAB_HOST:$LAB_PORT_KUBE_ETCD" \
    --advertise-client-urls "http://$LAB_HOST:$LAB_PORT_KUBE_ETCD" \
    --listen-peer-urls "http://$LAB_HOST:$((LAB_PORT_KUBE_ETCD + 1))" \
    --initial-advertise-peer-urls "http://$LAB_HOST:$((LAB_PORT_KUBE_ETCD + 1))" \
    --initial-cluster "lab-kube=http://$LAB_HOST:$((LAB_PORT_KUBE_ETCD + 1))"
  # curl (lab_wait_http) checks the TLS servers against the lab CA
  CURL_CA_BUNDLE=$P/ca.crt lab_service kube-apiserver kube "$LAB_PORT_KUBE" \
    "https://$LAB_HOST:$LAB_PORT_KUBE/readyz" 180 2xx \
    "$KUBE_BIN/kube-apiserver" --bind-address="$LAB_HOST" --secure-port="$LAB_PORT_KUBE" --insecure-port=0 \
    --advertise-address="$LAB_KUBE_GW" --etcd-servers="http://$LAB_HOST:$LAB_PORT_KUBE_ETCD" \
    --client-ca-file="$P/ca.crt" --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
    --kubelet-client-certificate="$P/apiserver-kubelet-client.crt" --kubelet-client-key="$P/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP,Hostname \
    --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --service-cluster-ip-range="$LAB_KUBE_SERVICE_CIDR" --allow-privileged=true --profiling=false
  kube_forwarder
  CURL_CA_BUNDLE=$P/ca.crt lab_service kube-controller-manager kube "$LAB_PORT_KUBE_CM" \
    "https://$LAB_HOST:$LAB_PORT_KUBE_CM/healthz" 60 2xx \
    "$KUBE_BIN/kube-controller-manager" --kubeconfig="$KUBE_S/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$KUBE_S/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$KUBE_S/controller-manager.kubeconfig" \
    --bind-address="$LAB_HOST" --secure-port="$LAB_PORT_KUBE_CM" --port=0 \
    --tls-cert-file="$P/loopback-serving.crt" --tls-private-key-file="$P/loopback-serving.key" \
    --leader-elect=false --profiling=false \
    --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
    --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" \
    --use-service-account-credentials=true \
    --allocate-node-cidrs=true --cluster-cidr="$LAB_KUBE_CLUSTER_CIDR" --node-cidr-mask-size=24 \
    --service-cluster-ip-range="$LAB_KUBE_SERVICE_CIDR"
  CURL_CA_BUNDLE=$P/ca.crt lab_service kube-scheduler kube "$LAB_PORT_KUBE_SCHED" \
    "https://$LAB_HOST:$LAB_PORT_KUBE_SCHED/healthz" 60 2xx \
    "$KUBE_BIN/kube-scheduler" --kubeconfig="$KUBE_S/scheduler.kubeconfig" \
    --authentication-kubeconfig="$KUBE_S/scheduler.kubeconfig" \
    --authorization-kubeconfig="$KUBE_S/scheduler.kubeconfig" \
    --bind-address="$LAB_HOST" --secure-port="$LAB_PORT_KUBE_SCHED" --port=0 \
    --tls-cert-file="$P/loopback-serving.crt" --tls-private-key-file="$P/loopback-serving.key" \
    --leader-elect=false --profiling=false
}

# The apiserver listens on 127.0.0.1 only; workers reach it at the lab network's gateway
# address, where socat forwards (TLS passes through untouched).
kube_forwarder() {
  local pidfile="$KUBE_S/run/socat-apiserver.pid" logf="$KUBE_S/log/socat-apiserver.log" url
  url="https://$LAB_KUBE_GW:$LAB_PORT_KUBE/readyz"
  if ! lab_alive "$pidfile"; then
    if (exec 3<>"/dev/tcp/$LAB_KUBE_GW/$LAB_PORT_KUBE") 2>/dev/null; then
      lab_die "$LAB_KUBE_GW:$LAB_PORT_KUBE is held by a process this lab did not start"
    fi
    lab_spawn "$pidfile" "$logf" socat "TCP-LISTEN:$LAB_PORT_KUBE,bind=$LAB_KUBE_GW,reuseaddr,fork" \
      "TCP:$LAB_HOST:$LAB_PORT_KUBE"
  fi
  CURL_CA_BUNDLE=$KUBE_PKI/ca.crt lab_wait_http socat-apiserver "$url" 20 "$pidfile" ||
    lab_die "$LAB_WAIT_ERR" "$logf"
}

# kube_eo_relays : the host's eo services (loopback) relayed on the gateway for pods: S3
# (moto), STAC API, TiTiler at $LAB_KUBE_GW on the same ports (a TCP relay per connection;
# pods are seen with their own addresses, the host routes every pod CIDR back)
kube_eo_relays() {
  local name port pidfile
  for name in s3:$LAB_PORT_S3 stac:$LAB_PORT_STAC titiler:$LAB_PORT_TILER; do
    port=${name#*:} name=${name%%:*}
    pidfile="$KUBE_S/run/relay-$name.pid"
    lab_alive "$pidfile" && continue
    if (exec 3<>"/dev/tcp/$LAB_KUBE_GW/$port") 2>/dev/null; then
      lab_die "$LAB_KUBE_GW:$port (relay of $name for pods) is held by a process this lab did not start"
    fi
    lab_spawn "$pidfile" "$KUBE_S/log/relay-$name.log" socat "TCP-LISTEN:$port,bind=$LAB_KUBE_GW,reuseaddr,fork" \
      "TCP:$LAB_HOST:$port"
  done
  # listening (the services behind may not be up: checked by their own components)
  for name in s3:$LAB_PORT_S3 stac:$LAB_PORT_STAC titiler:$LAB_PORT_TILER; do
    for _ in $(seq 50); do
      ss -ltnH "sport = :${name#*:}" 2>/dev/null | grep -q "$LAB_KUBE_GW:" && break
      sleep 0.1
    done
  done
}

# ---------------------------------------------------------------- up / down
lab_up_kube() {
  local t0=$EPOCHREALTIME w fresh=0 ready pending t1 cidr first=
  [[ $EUID -eq 0 ]] || lab_die "kube needs root (machines, netns, mounts)"
  mkdir -p "$KUBE_S/run" "$KUBE_S/log"
  kube_prepare
  if ! lab_alive "$KUBE_S/run/etcd.pid"; then
    # a fresh cluster: nothing of an earlier run may survive (stale nodes, pods, workers)
    lab_down_kube_procs
    rm -rf "$KUBE_S/etcd"
    fresh=1
  fi
  "$KUBE_MACHINE" net-up "$KUBE_NETNAME" "$LAB_KUBE_NET" "$LAB_KUBE_GW"
  kube_pki
  kube_images
  KUBE_T_START=$EPOCHREALTIME
  # workers boot while the control plane starts (kubelets retry until the apiserver answers)
  pending=()
  for w in $(kube_workers); do
    if ((fresh)) || [[ "$("$KUBE_MACHINE" status "$w" 2>/dev/null | cut -d' ' -f1)" != running ]]; then
      kube_worker_up "$w"; pending+=("$w")
    fi
  done
  kube_workers >"$KUBE_S/workers"
  kube_control_plane
  kube_eo_relays
  ((${#pending[@]} == 0)) || "$KUBE_MACHINE" wait "${pending[@]}" --timeout 180 ||
    lab_die "kube workers did not boot (consoles: $KUBE_S/machines/*/console.log)"
  t1=$EPOCHREALTIME
  for w in $(kube_workers); do
    ready=0
    for _ in $(seq 360); do
      if [[ " ${pending[*]} " == *" $w "* ]]; then kube_node_ready "$w" && { ready=1; break; }
      else [[ "$(kc get node "$w" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]] && { ready=1; break; }; fi
      sleep 0.5
    done
    if ((!ready)); then
      "$KUBE_MACHINE" exec "$w" journalctl -u kubelet --no-pager -n 40 >&2 || true
      lab_die "node $w did not become Ready"
    fi
    # host routes: this node's pod CIDR, and the Service CIDR through the first worker
    cidr=$(kc get node "$w" -o jsonpath='{.spec.podCIDR}')
    [[ -z "$cidr" ]] || ip route replace "$cidr" via "$(kube_worker_ip "$w")" dev "labn-$KUBE_NETNAME"
    if [[ -z "$first" ]]; then
      first=$w
      ip route replace "$LAB_KUBE_SERVICE_CIDR" via "$(kube_worker_ip "$w")" dev "labn-$KUBE_NETNAME"
    fi
  done
  # flat pod network without an overlay: every worker routes the other workers' pod CIDRs
  # to them (the host routes all of them, above), so pod IPs are seen unchanged everywhere
  local v vcidr
  for w in $(kube_workers); do
    for v in $(kube_workers); do
      [[ "$v" != "$w" ]] || continue
      vcidr=$(kc get node "$v" -o jsonpath='{.spec.podCIDR}')
      [[ -z "$vcidr" ]] || "$KUBE_MACHINE" exec "$w" ip route replace "$vcidr" via "$(kube_worker_ip "$v")"
    done
  done
  # pods can only be created once the controller-manager made the default ServiceAccount
  for _ in $(seq 120); do kc -n default get serviceaccount default >/dev/null 2>&1 && break; sleep 0.25; done
  lab_log "kube: nodes Ready $(lab_since "$t1") s after boot; cluster up in $(lab_since "$t0") s"
  kube_write_env
}

kube_write_env() {
  local version
  version=$(kc get --raw /version | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p')
  {
    echo "# written by tests/lab/up.sh kube: Kubernetes $version (etcd, apiserver, controller-manager,"
    echo "# scheduler on the host; kubelet + kube-proxy + containerd in nspawn machines)"
    echo "export KUBECONFIG=$KUBE_S/admin.kubeconfig"
    echo "export LAB_KUBE_API=https://$LAB_HOST:$LAB_PORT_KUBE"
    echo "export LAB_KUBE_VERSION=$version"
    echo "export LAB_KUBE_NODES=\"$(kube_workers | xargs)\""
    echo "export LAB_KUBE_NODE_IPS=\"$(for w in $(kube_workers); do kube_worker_ip "$w"; done | xargs)\""
    echo "export LAB_KUBE_IMAGE_BUSYBOX=$KUBE_IMG_BUSYBOX"
    echo "export LAB_KUBE_IMAGE_PAUSE=$KUBE_IMG_PAUSE"
    echo "export LAB_KUBECTL=$KUBE_BIN/kubectl   # v1.20 client, matches the server"
    echo "export LAB_KUBE_IMAGE_SH=$LAB_DIR/kube/image.sh   # import TARBALL | build-rootfs DIR NAME:TAG OUT.tar"
    echo "export LAB_KUBE_CA=$KUBE_PKI/ca.crt"
    echo "export LAB_KUBE_SERVICE_CIDR=$LAB_KUBE_SERVICE_CIDR LAB_KUBE_CLUSTER_CIDR=$LAB_KUBE_CLUSTER_CIDR"
    echo "export LAB_MACHINE=$KUBE_MACHINE   # exec NODE CMD... runs a command on a worker"
    echo "# the host's eo services relayed for pods (up.sh s3/eo must be up for them to answer)"
    echo "export LAB_KUBE_GW=$LAB_KUBE_GW"
    echo "export LAB_KUBE_S3_URL=http://$LAB_KUBE_GW:$LAB_PORT_S3   # moto (same credentials)"
    echo "export LAB_KUBE_STAC_URL=http://$LAB_KUBE_GW:$LAB_PORT_STAC"
    echo "export LAB_KUBE_TITILER_URL=http://$LAB_KUBE_GW:$LAB_PORT_TILER"
    lab_env_noproxy
    echo "case \",\${NO_PROXY:-},\" in *,$LAB_KUBE_GW,*) ;; *) export NO_PROXY=\"$LAB_KUBE_GW,\${NO_PROXY:-}\" no_proxy=\"$LAB_KUBE_GW,\${no_proxy:-}\" ;; esac"
  } >"$KUBE_S/env.sh"
}

# stop the host processes (reverse order), by recorded PID
lab_down_kube_procs() {
  local p
  for p in "${KUBE_PROCS[@]}"; do lab_stop "$KUBE_S/run/$p.pid" "$p"; done
}

lab_down_kube() {
  local w pids=() rc=0 p
  # workers first (their kubelets and kube-proxies watch the apiserver): clean poweroff in
  # parallel, power cut after 4 s (pods that ignore SIGTERM would hold a clean poweroff
  # for 10 s; the disk is thrown away anyway); the machines, disks, netns and cgroups go
  for w in $( { cat "$KUBE_S/workers" 2>/dev/null || true; kube_workers; } | sort -u); do
    [[ "$("$KUBE_MACHINE" status "$w" 2>/dev/null || true)" != absent ]] || continue
    "$KUBE_MACHINE" delete "$w" --timeout 4 & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  lab_down_kube_procs
  if [[ -d "$LAB_STATE/nodes/nets/$KUBE_NETNAME" ]]; then "$KUBE_MACHINE" net-down "$KUBE_NETNAME" || rc=1; fi
  rm -f "$KUBE_S/workers"
  rm -rf "$KUBE_S/machines"
  return "$rc"
}

# ---------------------------------------------------------------- checks (check.sh)
# shellcheck disable=SC2016  # $1, $2 are expanded by the inner bash
lab_check_kube() {
  local n
  lab_check "kube-apiserver $LAB_KUBE_API/readyz (client certificate)" \
    "$LAB_KUBECTL" get --raw /readyz
  lab_check "server version $LAB_KUBE_VERSION" bash -c '[[ $("$1" version --short 2>/dev/null | grep -i server) == *"$2"* ]]' _ \
    "$LAB_KUBECTL" "$LAB_KUBE_VERSION"
  for n in $LAB_KUBE_NODES; do
    lab_check "node $n Ready" bash -c '[[ $("$1" get node "$2" -o jsonpath="{.status.conditions[?(@.type==\"Ready\")].status}") == True ]]' _ \
      "$LAB_KUBECTL" "$n"
    lab_check "node $n has the lab images" bash -c '"$1" exec "$2" ctr -n k8s.io images ls -q | grep -c "^localhost/lab/\(busybox\|pause\):1$" | grep -qx 2' _ \
      "$LAB_MACHINE" "$n"
  done
  lab_check "kube smoke test (tests/lab/kube/smoke.sh: pods, Deployment, Job, exec, Services)" \
    bash "$LAB_DIR/kube/smoke.sh"
}
