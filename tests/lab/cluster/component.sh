# shellcheck shell=bash
# tests/lab/cluster/component.sh - "cluster": bare machines for the cluster layer, which
# bootstraps Kubernetes v1.20 over SSH (sourced after lib.sh; nodes.sh sources it too).
#
# Unlike the kube lab, nothing Kubernetes runs here: the lab gives SSH-reachable Debian 12
# machines and an artifact server; the provisioner installs and starts everything itself.
#
#   artifacts   $LAB_STATE/cluster/artifacts/v1.20/ (flat), served over HTTP at
#               http://10.236.0.1:18090/v1.20/<file> (python3 -m http.server, threaded):
#                 kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy
#                 kubectl       v1.20.2 from the kube lab's build cache (tests/lab/kube/
#                               build.sh; statically linked)
#                 etcd etcdctl  Debian etcd-server / etcd-client 3.4.23 (dynamic: libc.so.6)
#                 containerd containerd-shim-runc-v2 ctr   Debian containerd 1.6.20 (dynamic:
#                               libc.so.6)
#                 runc          Debian runc 1.1.5 (dynamic: libseccomp.so.2, libc.so.6)
#                 cni/bridge cni/host-local cni/loopback cni/portmap   Debian containernetworking-
#                               plugins 1.1.1 (dynamic: libc.so.6)
#                 images/pause.oci.tar   localhost/lab/pause:1   (OCI layout tarballs of the
#                 images/busybox.oci.tar localhost/lab/busybox:1  kube lab, tests/lab/kube/image.sh)
#                 SHA256SUMS    sha256sum format, relative paths, one line per file above
#               Every dynamic library needed is checked (readelf NEEDED) to exist in the
#               nodes' plain Debian 12 rootfs (libseccomp2 is in every Debian 12: apt and
#               systemd need it). Inputs are cached by version: the .debs (apt-get download)
#               in $LAB_CACHE/cluster/debs/, the Kubernetes build and the images where the
#               kube lab keeps them; the directory is re-assembled only when a version changes.
#   networks    clus   10.236.0.0/24, the host's leg 10.236.0.1 (the host reaches every
#                      machine on it; it does not forward: no egress, no DNS)
#               clpriv 10.237.0.0/24, isolated: the host has no leg and no address on it,
#                      only an `unreachable` route (machine.sh net-up ... --isolated): the
#                      host's packets to it fail at once; only the bastion reaches it
#   bastion     machine clbastion (profile basic): 10.236.0.5 (clus, default route via
#               10.236.0.1) and 10.237.0.5 (clpriv); sshd with TCP forwarding (ssh -J);
#               socat relays http://10.237.0.5:18090/ to the artifact server, the only
#               way private nodes reach it ($LAB_CLUSTER_ARTIFACTS_URL_PRIVATE). Its host
#               keys: $LAB_CLUSTER_BASTION_KNOWN_HOSTS. Note: `ssh -J` does not hand -i / -o
#               options to the jump connection; use a config file (-F) or ProxyCommand.
#   nodes       on demand: tests/lab/cluster/nodes.sh (up [--private] NAME... | delete | list
#               | known-hosts | reboot | exec | ip | stats), machines "cl-NAME", hostname NAME
#   users       `debian` on the bastion and every node: login shell bash, passwordless sudo
#               (/etc/sudoers.d/90-lab-debian), tests/fixtures/ssh/id_ed25519.pub in
#               ~debian/.ssh/authorized_keys; root accepts no key. SSH host keys ed25519 +
#               ecdsa, made on the host before the first boot (no RSA: fast boots);
#               `nodes.sh known-hosts NAME` prints them.
#
# What a node offers the bootstrap (profile kubelet of tests/lab/nodes/machine.sh): real
# systemd (units, enable --now, journalctl), CAP_NET_ADMIN and a writable /proc/sys/net in its
# own netns (sysctl net.ipv4.ip_forward=1, net.bridge.*, iptables-nft, routes), /dev/kmsg,
# writable cgroup v1 controllers (lab-cgroup-rw.service, ordered Before= containerd.service,
# kubelet.service and kube-proxy.service: use these unit names or add After=lab-cgroup-rw.service),
# /var/lib/containerd off the overlay (bound to the machine's state dir). The bootstrap must:
#   - not modprobe (no modules, no /lib/modules): br_netfilter and overlay are built into
#     this kernel; check /proc/sys/net/bridge/bridge-nf-call-iptables (present in every
#     netns when br_netfilter is loaded or built in; /sys/module/br_netfilter exists only
#     for a loaded *module*, not here) and /proc/filesystems for overlay;
#   - run containerd with restrict_oom_score_adj = true and SystemdCgroup = false, and the
#     kubelet with cgroupDriver: cgroupfs (the kube lab's worker config is the proven set:
#     tests/lab/kube/component.sh, kube_worker_files);
#   - expect sysctl vm.* / kernel.* to be read-only (the kubelet profile pre-sets the three
#     the kubelet checks) and the hard open-files limit to be 20000 (LimitNOFILE=65536 is
#     clamped by systemd, not an error);
#   - add routes itself: private nodes have no default route, so the Service CIDR (e.g.
#     10.43.0.0/16) must be routed by the bootstrap for host-network clients (ip route add
#     10.43.0.0/16 dev eth0); pods reach ClusterIPs through kube-proxy's DNAT anyway;
#   - have kube-proxy leave the conntrack sysctls alone (host-global here: conntrack
#     maxPerCore/min/tcp timeouts 0);
#   - on private nodes, fetch artifacts from $LAB_CLUSTER_ARTIFACTS_URL_PRIVATE (the bastion's
#     relay) or copy them through the bastion (scp -J);
#   - persist network settings: a reboot (nodes.sh reboot, or `reboot` over SSH) starts the
#     node with a fresh network namespace, as a real reboot: /etc/sysctl.d is applied at
#     boot (systemd-sysctl, net.* only), routes need a unit; the disk is kept;
#   - keep a cluster on one network: public and private nodes do not reach each other
#     (two L2 segments, the host does not forward; only the bastion has a leg on both). From
#     the host, a private cluster's apiserver is reached through the bastion (ssh -L / -J);
#   - route pod CIDRs between nodes itself (no overlay is provided; nodes may add routes).
# tests/lab/cluster/kube-check.sh [--private] does all of it by hand on one node (etcd, the
# control plane, containerd, kubelet, kube-proxy as units; a Deployment, ClusterIP Services)
# and is the reference for the settings marked "lab:" there.
#
# Settings: LAB_PORT_CLUSTER_HTTP (18090), LAB_PORT_CLUSTER_S3 (19101: relay to s3s). State: $LAB_STATE/cluster/{artifacts,machines,
# ssh,run,log,addresses,env.sh}. `down.sh cluster` deletes every cluster machine (nodes and
# bastion), both networks and the HTTP server; the artifacts stay (--purge removes them).

# shellcheck source-path=SCRIPTDIR source=../kube/versions.sh
source "$LAB_DIR/kube/versions.sh"
LAB_PORT_CLUSTER_HTTP="${LAB_PORT_CLUSTER_HTTP:-18090}"
LAB_PORT_CLUSTER_S3="${LAB_PORT_CLUSTER_S3:-19101}"
CLUSTER_S="$LAB_STATE/cluster"
CLUSTER_MACHINE="$LAB_DIR/nodes/machine.sh"
CLUSTER_SERIES=v1.20
CLUSTER_ARTIFACTS="$CLUSTER_S/artifacts/$CLUSTER_SERIES"
CLUSTER_NET=clus CLUSTER_CIDR=10.236.0.0/24 CLUSTER_GW=10.236.0.1
CLUSTER_PNET=clpriv CLUSTER_PCIDR=10.237.0.0/24
CLUSTER_BASTION=clbastion CLUSTER_BASTION_IP=10.236.0.5 CLUSTER_BASTION_PIP=10.237.0.5
CLUSTER_PREFIX=cl-   # machine name of node NAME: cl-NAME
CLUSTER_USER=debian
CLUSTER_PUBKEY="$LAB_DIR/../fixtures/ssh/id_ed25519.pub"
CLUSTER_KEY_SRC="$LAB_DIR/../fixtures/ssh/id_ed25519"
CLUSTER_BASE_EXTRA="sudo curl ca-certificates iptables conntrack ethtool socat kmod"
CLUSTER_DEBS=(etcd-server etcd-client containerd runc containernetworking-plugins)
CLUSTER_RECIPE=1   # bump when the artifact layout below changes
CLUSTER_KUBE_TOP="$LAB_CACHE/kubernetes/$KUBE_BUILD"

cluster_lower() { "$LAB_DIR/nodes/base.sh" --name cluster-node --extra "$CLUSTER_BASE_EXTRA"; }

# ---------------------------------------------------------------- artifacts
# cluster_debs : download (once per version) and unpack the Debian packages; sets
# CLUSTER_DEB_X[pkg]=unpacked dir and CLUSTER_DEB_VERS="pkg=ver ..."
cluster_debs() {
  local d="$LAB_CACHE/cluster/debs" p v f updated=0
  declare -gA CLUSTER_DEB_X=()
  CLUSTER_DEB_VERS=
  mkdir -p "$d"
  for p in "${CLUSTER_DEBS[@]}"; do
    v=$(apt-cache policy "$p" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')
    if [[ -z "$v" || "$v" == "(none)" ]] && ((!updated)); then
      apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null 2>&1 || true; updated=1
      v=$(apt-cache policy "$p" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')
    fi
    [[ -n "$v" && "$v" != "(none)" ]] || lab_die "apt knows no package $p"
    CLUSTER_DEB_VERS+="$p=$v "
    f="$d/${p}_${v//:/%3a}_amd64.deb"
    if [[ ! -f "$d/x-${p}_$v/.complete" ]]; then
      if [[ ! -f "$f" ]]; then
        lab_log "apt-get download $p=$v"
        (cd "$d" && apt-get -o DPkg::Lock::Timeout=600 download -q "$p=$v") >"$LAB_CACHE/log/cluster-debs.log" 2>&1 ||
          lab_die "apt-get download $p=$v failed" "$LAB_CACHE/log/cluster-debs.log"
        [[ -f "$f" ]] || lab_die "apt-get download $p=$v gave no $f" "$LAB_CACHE/log/cluster-debs.log"
      fi
      rm -rf "$d/x-${p}_$v"; mkdir -p "$d/x-${p}_$v"
      dpkg-deb -x "$f" "$d/x-${p}_$v" || lab_die "dpkg-deb -x $f failed"
      touch "$d/x-${p}_$v/.complete"
    fi
    CLUSTER_DEB_X[$p]="$d/x-${p}_$v"
  done
}

# cluster_images : the kube lab's OCI tarballs (same cache and key as kube_images)
cluster_images() {
  local key pause_c="$CLUSTER_KUBE_TOP/pause.c"
  [[ -f "$pause_c" ]] || lab_die "$pause_c missing: remove $CLUSTER_KUBE_TOP/bin and rerun (build.sh keeps it)"
  lab_apt busybox-static gcc libc6-dev
  key=$( { sha256sum "$pause_c" "$LAB_DIR/kube/image.sh"; dpkg-query -W -f='${Version}' busybox-static; } | sha256sum | cut -c1-12)
  CLUSTER_IMAGES="$LAB_CACHE/kube-images/$key"
  if [[ ! -f "$CLUSTER_IMAGES/.complete" ]]; then
    rm -rf "$CLUSTER_IMAGES"; mkdir -p "$CLUSTER_IMAGES"
    "$LAB_DIR/kube/image.sh" lab-images "$CLUSTER_IMAGES" "$pause_c"
    touch "$CLUSTER_IMAGES/.complete"
  fi
}

# cluster_kube_bin : the Kubernetes binaries (built once by the kube lab's build.sh)
cluster_kube_bin() {
  if [[ ! -f "$CLUSTER_KUBE_TOP/bin/.complete" ]]; then
    lab_apt golang-go rsync dpkg-dev make debian-archive-keyring gcc libc6-dev
    lab_log "building Kubernetes $KUBE_BUILD (once, ~13-20 min; log: $LAB_CACHE/log/kubernetes-$KUBE_BUILD.log)"
  fi
  CLUSTER_KUBE_BIN=$("$LAB_DIR/kube/build.sh" | tail -n1)
  [[ -x "$CLUSTER_KUBE_BIN/kubelet" ]] || lab_die "no Kubernetes binaries in '$CLUSTER_KUBE_BIN'"
}

# cluster_check_libs DIR LOWER : every NEEDED library of every ELF file in DIR exists in the
# rootfs LOWER (a plain Debian 12); prints "file: libs" for the dynamic ones
cluster_check_libs() {
  local dir=$1 lower=$2 f libs l bad=()
  while IFS= read -r f; do
    head -c 4 "$f" | grep -q $'\x7fELF' || continue
    libs=$(readelf -d "$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | xargs)
    [[ -n "$libs" ]] || continue
    echo "${f#"$dir"/}: $libs"
    for l in $libs; do
      compgen -G "$lower/lib/x86_64-linux-gnu/$l" >/dev/null || compgen -G "$lower/usr/lib/x86_64-linux-gnu/$l" >/dev/null ||
        compgen -G "$lower/lib64/$l" >/dev/null || bad+=("${f#"$dir"/} needs $l")
    done
  done < <(find "$dir" -type f | sort)
  ((${#bad[@]} == 0)) || lab_die "artifacts need libraries a plain Debian 12 lacks: ${bad[*]}"
}

cluster_art_sig() { find "$CLUSTER_ARTIFACTS" -printf '%P %s %T@\n' 2>/dev/null | LC_ALL=C sort | sha256sum | cut -c1-16; }

cluster_artifacts() {
  local lower=$1 key stamp="$CLUSTER_S/artifacts-$CLUSTER_SERIES.key" t tmp x b
  command -v readelf >/dev/null || lab_apt binutils
  cluster_kube_bin
  cluster_debs
  cluster_images
  key=$(printf 'kube=%s\ndebs=%s\nimages=%s\nrecipe=%s\n' "$KUBE_BUILD" "$CLUSTER_DEB_VERS" "$CLUSTER_IMAGES" "$CLUSTER_RECIPE" | sha256sum | cut -c1-16)
  # up to date: same inputs, and no file changed since (names, sizes, mtimes)
  if [[ -f "$stamp" && "$(<"$stamp")" == "$key $(cluster_art_sig)" ]]; then
    lab_log "artifacts $CLUSTER_ARTIFACTS up to date ($(du -sh "$CLUSTER_ARTIFACTS" | cut -f1))"
    return 0
  fi
  t=$EPOCHREALTIME tmp="$CLUSTER_ARTIFACTS.tmp"
  rm -rf "$tmp"; mkdir -p "$tmp/cni" "$tmp/images"
  for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
    install -m 0755 "$CLUSTER_KUBE_BIN/$b" "$tmp/$b"
  done
  x=${CLUSTER_DEB_X[etcd-server]}; install -m 0755 "$x/usr/bin/etcd" "$tmp/etcd"
  x=${CLUSTER_DEB_X[etcd-client]}; install -m 0755 "$x/usr/bin/etcdctl" "$tmp/etcdctl"
  x=${CLUSTER_DEB_X[containerd]}
  for b in containerd containerd-shim-runc-v2 ctr; do install -m 0755 "$x/usr/bin/$b" "$tmp/$b"; done
  x=${CLUSTER_DEB_X[runc]}; install -m 0755 "$x/usr/sbin/runc" "$tmp/runc"
  x=${CLUSTER_DEB_X[containernetworking-plugins]}
  for b in bridge host-local loopback portmap; do install -m 0755 "$x/usr/lib/cni/$b" "$tmp/cni/$b"; done
  install -m 0644 "$CLUSTER_IMAGES/pause.oci.tar" "$CLUSTER_IMAGES/busybox.oci.tar" "$tmp/images/"
  cluster_check_libs "$tmp" "$lower" >"$CLUSTER_S/artifacts-$CLUSTER_SERIES.libs"
  (cd "$tmp" && find . -type f | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum >"$tmp.sums" && mv "$tmp.sums" SHA256SUMS)
  rm -rf "$CLUSTER_ARTIFACTS"; mv "$tmp" "$CLUSTER_ARTIFACTS"
  echo "$key $(cluster_art_sig)" >"$stamp"
  lab_log "artifacts assembled in $CLUSTER_ARTIFACTS in $(lab_since "$t") s ($(du -sh "$CLUSTER_ARTIFACTS" | cut -f1), $(wc -l <"$CLUSTER_ARTIFACTS/SHA256SUMS") files; dynamic: $(cut -d: -f1 "$CLUSTER_S/artifacts-$CLUSTER_SERIES.libs" | xargs))"
}

# ---------------------------------------------------------------- HTTP server
cluster_http() {
  local pidfile="$CLUSTER_S/run/http.pid" logf="$CLUSTER_S/log/http.log"
  local url="http://$CLUSTER_GW:$LAB_PORT_CLUSTER_HTTP/$CLUSTER_SERIES/SHA256SUMS"
  if ! lab_alive "$pidfile"; then
    if (exec 3<>"/dev/tcp/$CLUSTER_GW/$LAB_PORT_CLUSTER_HTTP") 2>/dev/null; then
      lab_die "$CLUSTER_GW:$LAB_PORT_CLUSTER_HTTP is held by a process this lab did not start"
    fi
    lab_spawn "$pidfile" "$logf" python3 -m http.server "$LAB_PORT_CLUSTER_HTTP" --bind "$CLUSTER_GW" \
      --directory "$CLUSTER_S/artifacts"
  fi
  NO_PROXY='*' lab_wait_http artifacts-http "$url" 20 "$pidfile" || lab_die "$LAB_WAIT_ERR" "$logf"
}

# The nodes upload etcd snapshots to the lab's strict-SigV4 S3 (s3s, on the host's
# loopback): a TCP relay on the nodes' gateway. Host and nodes use the same URL.
cluster_s3_relay() {
  local pidfile="$CLUSTER_S/run/s3-relay.pid" logf="$CLUSTER_S/log/s3-relay.log"
  lab_alive "$pidfile" ||
    lab_spawn "$pidfile" "$logf" socat "TCP-LISTEN:$LAB_PORT_CLUSTER_S3,bind=$CLUSTER_GW,fork,reuseaddr" \
      "TCP:127.0.0.1:$LAB_PORT_S3S"
}

# ---------------------------------------------------------------- machines
# cluster_machine_files ROOT HOSTNAME : user debian (sudo, the test key), sshd settings,
# SSH host keys made here (ed25519 + ecdsa; the base's first-boot keygen then skips)
cluster_machine_files() {
  local r=$1 h=$2 home
  if ! grep -q "^$CLUSTER_USER:" "$r/etc/passwd"; then
    useradd -R "$r" -m -u 1000 -U -s /bin/bash -G sudo -c "lab cluster user" "$CLUSTER_USER" ||
      lab_die "useradd in $r failed"
  fi
  home=$r/home/$CLUSTER_USER
  install -d -m 0700 -o 1000 -g 1000 "$home/.ssh"
  install -m 0600 -o 1000 -g 1000 "$CLUSTER_PUBKEY" "$home/.ssh/authorized_keys"
  printf '%s ALL=(ALL:ALL) NOPASSWD: ALL\n' "$CLUSTER_USER" >"$r/etc/sudoers.d/90-lab-debian"
  chmod 0440 "$r/etc/sudoers.d/90-lab-debian"
  cat >"$r/etc/ssh/sshd_config.d/lab-cluster.conf" <<'EOF'
# lab cluster machine: key-only logins, ssh -J through the bastion, host keys made before boot
AllowTcpForwarding yes
PubkeyAuthentication yes
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
EOF
  local t
  for t in ed25519 ecdsa; do
    [[ -f "$r/etc/ssh/ssh_host_${t}_key" ]] ||
      ssh-keygen -q -N '' -t "$t" -C "root@$h" -f "$r/etc/ssh/ssh_host_${t}_key" || lab_die "ssh-keygen failed"
  done
}

# cluster_mac NAME NIC : a MAC derived from the name (locally administered), so that a
# machine made again under the same name (same address) keeps its MAC: the ARP caches of
# the host and of the other machines stay right
cluster_mac() { printf '%s/%s' "$1" "$2" | sha256sum | sed 's/^\(..\)\(..\)\(..\)\(..\)\(..\).*/02:\1:\2:\3:\4:\5/'; }

cluster_bastion() {
  local lower=$1 st root
  st=$("$CLUSTER_MACHINE" status "$CLUSTER_BASTION" 2>/dev/null | cut -d' ' -f1 || true)
  if [[ "$st" == running ]]; then lab_log "bastion $CLUSTER_BASTION already running"; return 0; fi
  if [[ "$st" != stopped ]]; then
    "$CLUSTER_MACHINE" prepare "$CLUSTER_BASTION" --lower "$lower" --state "$CLUSTER_S/machines/$CLUSTER_BASTION" \
      --net "$CLUSTER_NET" --ip "$CLUSTER_BASTION_IP/24" --mac "$(cluster_mac "$CLUSTER_BASTION" 0)" \
      --net "$CLUSTER_PNET" --ip "$CLUSTER_BASTION_PIP/24" --mac "$(cluster_mac "$CLUSTER_BASTION" 1)" \
      --gw "$CLUSTER_GW" --profile basic
    root=$("$CLUSTER_MACHINE" root "$CLUSTER_BASTION")
    cluster_machine_files "$root" "$CLUSTER_BASTION"
    # private nodes have no route to the host: the bastion relays the artifact server
    cat >"$root/etc/systemd/system/lab-artifacts-relay.service" <<U
[Unit]
Description=lab: the artifact server on the private network ($CLUSTER_BASTION_PIP:$LAB_PORT_CLUSTER_HTTP -> $CLUSTER_GW:$LAB_PORT_CLUSTER_HTTP)
After=network.target
[Service]
ExecStart=/usr/bin/socat TCP-LISTEN:$LAB_PORT_CLUSTER_HTTP,bind=$CLUSTER_BASTION_PIP,fork,reuseaddr TCP:$CLUSTER_GW:$LAB_PORT_CLUSTER_HTTP
Restart=always
RestartSec=1
[Install]
WantedBy=multi-user.target
U
    ln -sf ../lab-artifacts-relay.service "$root/etc/systemd/system/multi-user.target.wants/lab-artifacts-relay.service"
  fi
  "$CLUSTER_MACHINE" boot "$CLUSTER_BASTION" --wait ssh --timeout 120
  "$CLUSTER_MACHINE" known-hosts "$CLUSTER_BASTION" >"$CLUSTER_S/ssh/known_hosts_bastion"
}

cluster_key() { # a copy of the test key with the mode ssh wants
  mkdir -p "$CLUSTER_S/ssh"
  install -m 0600 "$CLUSTER_KEY_SRC" "$CLUSTER_S/ssh/id_ed25519"
  install -m 0644 "$CLUSTER_PUBKEY" "$CLUSTER_S/ssh/id_ed25519.pub"
}

# ---------------------------------------------------------------- up / down
lab_up_cluster() {
  local t0=$EPOCHREALTIME lower
  [[ $EUID -eq 0 ]] || lab_die "cluster needs root (machines, netns, mounts)"
  lab_apt systemd-container debootstrap zstd openssh-client iproute2 python3 passwd curl socat
  mkdir -p "$CLUSTER_S/run" "$CLUSTER_S/log" "$CLUSTER_S/machines"
  lower=$(cluster_lower)
  cluster_artifacts "$lower"
  [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] ||
    lab_log "WARNING: br_netfilter is not available on this host (no /proc/sys/net/bridge): kube-proxy's Services between pods of one node need it"
  "$CLUSTER_MACHINE" net-up "$CLUSTER_NET" "$CLUSTER_CIDR" "$CLUSTER_GW"
  "$CLUSTER_MACHINE" net-up "$CLUSTER_PNET" "$CLUSTER_PCIDR" --isolated
  cluster_http
  cluster_s3_relay
  cluster_key
  cluster_bastion "$lower"
  cluster_write_env "$lower"
  lab_log "cluster lab up in $(lab_since "$t0") s"
}

cluster_write_env() {
  {
    echo "# written by tests/lab/up.sh cluster: machines for the cluster layer (tests/lab/cluster)"
    echo "export LAB_CLUSTER_NODES_SH=$LAB_DIR/cluster/nodes.sh   # up [--private] NAME... | delete | list | known-hosts | reboot | exec | ip | stats"
    echo "export LAB_CLUSTER_ARTIFACTS=$CLUSTER_ARTIFACTS"
    echo "export LAB_CLUSTER_ARTIFACTS_URL=http://$CLUSTER_GW:$LAB_PORT_CLUSTER_HTTP/$CLUSTER_SERIES"
    echo "export LAB_CLUSTER_BASTION=$CLUSTER_BASTION_IP   # user $CLUSTER_USER; on $CLUSTER_PNET: $CLUSTER_BASTION_PIP"
    echo "export LAB_CLUSTER_BASTION_PRIVATE=$CLUSTER_BASTION_PIP"
    echo "export LAB_CLUSTER_BASTION_KNOWN_HOSTS=$CLUSTER_S/ssh/known_hosts_bastion   # its host keys (IP,IP,clbastion)"
    echo "export LAB_CLUSTER_ARTIFACTS_URL_PRIVATE=http://$CLUSTER_BASTION_PIP:$LAB_PORT_CLUSTER_HTTP/$CLUSTER_SERIES   # for --private nodes (relayed by the bastion)"
    echo "export LAB_CLUSTER_NET=$CLUSTER_CIDR LAB_CLUSTER_GW=$CLUSTER_GW"
    echo "export LAB_CLUSTER_S3_URL=http://$CLUSTER_GW:$LAB_PORT_CLUSTER_S3   # s3s (up.sh s3s), relayed for the nodes; same credentials"
    echo "export LAB_CLUSTER_PRIVATE_NET=$CLUSTER_PCIDR"
    echo "export LAB_CLUSTER_KUBE_BIN=$CLUSTER_KUBE_BIN   # kubectl v1.20 etc. for the host"
    echo "export LAB_CLUSTER_SSH_USER=$CLUSTER_USER"
    echo "export LAB_CLUSTER_SSH_KEY=$CLUSTER_S/ssh/id_ed25519   # mode 0600 copy of tests/fixtures/ssh/id_ed25519"
    echo "export LAB_CLUSTER_IMAGE_PAUSE=localhost/lab/pause:1 LAB_CLUSTER_IMAGE_BUSYBOX=localhost/lab/busybox:1"
    echo "export LAB_CLUSTER_LOWER=$1   # the nodes' rootfs"
    echo "export LAB_MACHINE=$CLUSTER_MACHINE   # the machine library (node NAME = machine cl-NAME)"
    lab_env_noproxy
    echo "case \",\${NO_PROXY:-},\" in *,$CLUSTER_GW,*) ;; *) export NO_PROXY=\"$CLUSTER_GW,10.236.0.0/24,10.237.0.0/24,\${NO_PROXY:-}\" no_proxy=\"$CLUSTER_GW,10.236.0.0/24,10.237.0.0/24,\${no_proxy:-}\" ;; esac"
  } >"$CLUSTER_S/env.sh"
}

# cluster_machines : machine names of this component (nodes cl-*, the bastion)
cluster_machines() {
  "$CLUSTER_MACHINE" list 2>/dev/null | awk -v p="$CLUSTER_PREFIX" -v b="$CLUSTER_BASTION" \
    'substr($1, 1, length(p)) == p || $1 == b { print $1 }'
}

lab_down_cluster() {
  local m pids=() rc=0 p n
  for m in $(cluster_machines); do
    "$CLUSTER_MACHINE" delete "$m" --timeout 5 & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  lab_stop "$CLUSTER_S/run/http.pid" artifacts-http
  lab_stop "$CLUSTER_S/run/s3-relay.pid" s3-relay
  for n in "$CLUSTER_NET" "$CLUSTER_PNET"; do
    if [[ -d "$LAB_STATE/nodes/nets/$n" ]]; then "$CLUSTER_MACHINE" net-down "$n" || rc=1; fi
  done
  return "$rc"
}

# ---------------------------------------------------------------- checks (check.sh)
# shellcheck disable=SC2016  # $1 is expanded by the inner bash
lab_check_cluster() {
  lab_check "artifact server $LAB_CLUSTER_ARTIFACTS_URL/SHA256SUMS" \
    curl -fsS --noproxy '*' -o /dev/null "$LAB_CLUSTER_ARTIFACTS_URL/SHA256SUMS"
  lab_check "artifacts match SHA256SUMS" bash -c 'cd "$1" && sha256sum --quiet -c SHA256SUMS' _ "$LAB_CLUSTER_ARTIFACTS"
  lab_check "bastion ssh $LAB_CLUSTER_SSH_USER@$LAB_CLUSTER_BASTION" \
    ssh -i "$LAB_CLUSTER_SSH_KEY" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o LogLevel=ERROR -o ConnectTimeout=5 "$LAB_CLUSTER_SSH_USER@$LAB_CLUSTER_BASTION" sudo -n true
  lab_check "cluster smoke test (tests/lab/cluster/smoke.sh)" bash "$LAB_DIR/cluster/smoke.sh"
  lab_check "Kubernetes on a node, installed over SSH (tests/lab/cluster/kube-check.sh)" bash "$LAB_DIR/cluster/kube-check.sh"
}
