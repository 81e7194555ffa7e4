#!/usr/bin/env bash
# tests/lab/up.sh COMPONENT... - start lab components on 127.0.0.1, installing what is missing.
#
#   s3    moto_server (S3 mock)                       :19000
#   s3s   s3s-fs (strict SigV4 S3 on files)           :19001  (built once with cargo, -j1)
#   eo    PostgreSQL+PostGIS+pgstac :55432, STAC API :18080, TiTiler :18081   (implies s3)
#   registry  OCI registry (Debian docker-registry 2.8.2), TLS (lab CA) + basic auth (user
#         lab): https://10.239.0.1:5000, same address from the host and the lab machines;
#         kube workers trust it (containerd certs.d), pulls use imagePullSecrets
#   openstack  Keystone :15000, Nova :18774, Neutron :19696, Glance :19292, Cinder :18776,
#         Placement :18778, MariaDB :13306, RabbitMQ :16672 (Debian packages); servers of
#         image debian-12-node are nspawn machines (README "The lab cloud"), others fake
#   nodes systemd-nspawn machines library (tests/lab/nodes/machine.sh) + default base rootfs
#   kube  Kubernetes v1.20: etcd :12379, apiserver :16443, controller-manager, scheduler,
#         workers = nspawn machines (kubelet, kube-proxy, containerd) on 10.231.0.0/24
#         (built once from Debian's source, ~13 min; see tests/lab/kube/component.sh)
#   cluster  machines for the cluster layer (tests/lab/cluster): artifacts (Kubernetes v1.20,
#         etcd, containerd, runc, CNI, images) on http://10.236.0.1:18090/v1.20/, networks
#         clus 10.236.0.0/24 (host 10.236.0.1) + clpriv 10.237.0.0/24 (no host leg),
#         bastion 10.236.0.5; nodes on demand: tests/lab/cluster/nodes.sh up [--private] NAME
#
# Idempotent: a component that is already up is only health-checked. Each writes
# $LAB_STATE/<component>/env.sh; $LAB_STATE/env.sh sources all the ones that are up:
#   source /var/tmp/provisioner-lab/env.sh
# Installs are cached by version under $LAB_CACHE (default /var/cache/provisioner-lab).
# Stop with tests/lab/down.sh [--purge] [COMPONENT...].  Environment: LAB_STATE, LAB_CACHE,
# LAB_PYTHON, LAB_PORT_{S3,S3S,PG,STAC,TILER,REGISTRY}, LAB_REGISTRY_ADDR; openstack, kube,
# cluster, registry: see their component.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

(($#)) || { sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

# Resolve the set (eo implies s3) and start in the fixed order s3, s3s, eo, registry,
# nodes, openstack, kube, cluster.
declare -A want=()
for c in "$@"; do
  case "$c" in
    s3 | s3s) want[$c]=1 ;;
    eo) want[eo]=1 want[s3]=1 ;;
    registry) want[registry]=1 ;;
    openstack) want[openstack]=1 ;;
    nodes) want[nodes]=1 ;;
    kube) want[kube]=1 ;;
    cluster) want[cluster]=1 ;;
    -h | --help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) lab_die "unknown component '$c' (known: ${LAB_COMPONENTS[*]})" ;;
  esac
done
command -v curl >/dev/null || lab_apt curl

mkdir -p "$LAB_STATE"
t_all=$EPOCHREALTIME
timings=()
for c in "${LAB_COMPONENTS[@]}"; do
  [[ -n "${want[$c]:-}" ]] || continue
  t0=$EPOCHREALTIME
  lab_component "$c"
  "lab_up_$c"
  lab_write_env_all
  timings+=("$c $(lab_since "$t0") s")
done

echo "---- lab up in $(lab_since "$t_all") s ($(IFS=,; echo "${timings[*]}"))"
echo "---- source $LAB_STATE/env.sh"
for c in "${LAB_COMPONENTS[@]}"; do
  [[ -f "$LAB_STATE/$c/env.sh" ]] && grep '^export' "$LAB_STATE/$c/env.sh" | sed "s/^/  [$c] /"
done
exit 0
