#!/usr/bin/env bash
# tests/lab/cluster/nodes.sh - machines on demand for the cluster layer (needs root and
# `tests/lab/up.sh cluster`). A node NAME is the machine cl-NAME of tests/lab/nodes/machine.sh
# (profile kubelet; Debian 12 + systemd + sshd + sudo curl ca-certificates iptables conntrack
# ethtool socat kmod; no containerd, runc or Kubernetes: the provisioner installs those from
# $LAB_CLUSTER_ARTIFACTS_URL), hostname NAME, user `debian` (bash, passwordless sudo,
# tests/fixtures/ssh/id_ed25519.pub in ~debian/.ssh/authorized_keys).
#
#   up [--private] NAME...   create + boot in parallel (idempotent: a running node is left
#                            alone, a stopped one is booted). Public nodes: 10.236.0.0/24
#                            (clus), default route via 10.236.0.1, waits until ssh
#                            debian@IP works from the host. --private: 10.237.0.0/24
#                            (clpriv) only, no default route, reached through the bastion
#                            (ssh -J debian@10.236.0.5); waits until sshd answers inside
#                            the machine. Prints "NAME IP" per node on stdout.
#   delete NAME...           power off and remove (mount, netns, veths, cgroups, disk);
#                            checks that nothing is left
#   list                     "NAME IP STATE public|private" per node
#   ip NAME                  the node's address
#   known-hosts NAME         OpenSSH known_hosts lines ("IP,NAME TYPE KEY": ed25519, ecdsa)
#   reboot NAME              `systemctl reboot` inside; returns once SSH (sshd) answers again.
#                            A reboot (this one, or `sudo reboot` over SSH) starts with a
#                            fresh network namespace, as a real one: net.* sysctls, iptables
#                            rules, routes and bridges the node made are gone; disk stays
#   exec NAME CMD...         run CMD as root inside (nsenter; no SSH); stdin is passed
#   stats NAME               memory (cgroup usage, rss, PSS of its processes) and processes
#
# Addresses: .10-.249, derived from the name (sha256 of NAME; the next free one on a
# collision) and recorded in $LAB_STATE/cluster/addresses, so a name keeps its address
# across delete/up. NAME: [a-z0-9][a-z0-9-]*, at most 57 characters (a hostname label).
# Nodes have no egress and no DNS (/etc/hosts: their own name); the host is 10.236.0.1.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$HERE/../lib.sh"
# shellcheck source-path=SCRIPTDIR source=component.sh
source "$HERE/component.sh"

M=$CLUSTER_MACHINE
ADDR="$CLUSTER_S/addresses"
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
valid_name() { [[ "$1" =~ ^[a-z0-9]([a-z0-9-]{0,55}[a-z0-9])?$ ]] || lab_die "bad node name '$1' ([a-z0-9][a-z0-9-]*, <= 57 chars)"; }
mname() { echo "$CLUSTER_PREFIX$1"; }
need_lab() {
  [[ $EUID -eq 0 ]] || lab_die "nodes.sh must run as root"
  [[ -f "$CLUSTER_S/env.sh" && -d "$LAB_STATE/nodes/nets/$CLUSTER_NET" && -d "$LAB_STATE/nodes/nets/$CLUSTER_PNET" ]] ||
    lab_die "the cluster lab is not up: bash tests/lab/up.sh cluster"
}
ssh_opts() { # options for ssh to a node as debian (host keys checked against $1)
  SSH_OPTS=(-i "$CLUSTER_S/ssh/id_ed25519" -o BatchMode=yes -o IdentitiesOnly=yes -o ConnectTimeout=5
    -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$1" -o LogLevel=ERROR)
}

# alloc NAME KIND : the node's address (KIND pub|priv); recorded in $ADDR ("NAME KIND IP")
alloc() {
  local name=$1 kind=$2 prefix h slot i ip line taken
  mkdir -p "$CLUSTER_S"
  exec 5>>"$ADDR.lock"
  flock -w 60 5 || lab_die "timed out waiting for $ADDR.lock"
  touch "$ADDR"
  line=$(awk -v n="$name" '$1 == n' "$ADDR")
  if [[ -n "$line" && "$(cut -d' ' -f2 <<<"$line")" == "$kind" ]]; then cut -d' ' -f3 <<<"$line"; exec 5>&-; return 0; fi
  sed -i "/^$name /d" "$ADDR"
  if [[ "$kind" == pub ]]; then prefix=${CLUSTER_CIDR%.*/*}; else prefix=${CLUSTER_PCIDR%.*/*}; fi
  taken=" $(awk -v k="$kind" '$2 == k { printf "%s ", $3 }' "$ADDR") "
  taken+=" $CLUSTER_BASTION_IP $CLUSTER_BASTION_PIP "
  h=$((16#$(printf '%s' "$name" | sha256sum | cut -c1-8)))
  for pass in 1 2; do
    for ((i = 0; i < 240; i++)); do
      slot=$((10 + (h + i) % 240)) ip=$prefix.$slot
      [[ "$taken" == *" $ip "* ]] || { echo "$name $kind $ip" >>"$ADDR"; echo "$ip"; exec 5>&-; return 0; }
    done
    # all recorded: forget the names that have no machine now, and try again
    ((pass == 1)) || break
    local keep=() l
    while read -r l; do
      [[ -e "$LAB_STATE/nodes/machines/$(mname "${l%% *}")" ]] && keep+=("$l")
    done <"$ADDR"
    printf '%s\n' "${keep[@]}" | sed '/^$/d' >"$ADDR.tmp"; mv "$ADDR.tmp" "$ADDR"
    taken=" $(awk -v k="$kind" '$2 == k { printf "%s ", $3 }' "$ADDR") $CLUSTER_BASTION_IP $CLUSTER_BASTION_PIP "
  done
  lab_die "no free address for $name"
}

node_kind() { # pub|priv of an existing node (from its machine.conf)
  local d
  d=$(readlink -f "$LAB_STATE/nodes/machines/$(mname "$1")" 2>/dev/null) && [[ -f "$d/machine.conf" ]] || return 1
  if grep -q "\"$CLUSTER_PNET|" "$d/machine.conf"; then echo priv; else echo pub; fi
}
node_ip() { "$M" status "$(mname "$1")" 2>/dev/null | awk '{ sub("/.*", "", $2); print $2 }'; }

# node_prepare NAME KIND IP LOWER : a new machine, files written, booted without waiting
node_prepare() {
  local n=$1 kind=$2 ip=$3 lower=$4 m root net=() 
  m=$(mname "$n")
  if [[ "$kind" == pub ]]; then net=(--net "$CLUSTER_NET" --ip "$ip/24" --gw "$CLUSTER_GW")
  else net=(--net "$CLUSTER_PNET" --ip "$ip/24"); fi
  net+=(--mac "$(cluster_mac "$n" 0)")
  "$M" prepare "$m" --lower "$lower" --state "$CLUSTER_S/machines/$m" --hostname "$n" --profile kubelet \
    --fresh-net-on-reboot "${net[@]}"
  root=$("$M" root "$m")
  cluster_machine_files "$root" "$n"
  [[ "$kind" == priv ]] || echo "$CLUSTER_GW lab-host" >>"$root/etc/hosts"
  "$M" boot "$m" --wait none
}

cmd_up() {
  local kind=pub names=() n m st lower ip t0=$EPOCHREALTIME pids=() p rc=0 mode
  while (($#)); do
    case "$1" in
      --private) kind=priv; shift ;;
      -*) lab_die "unknown option '$1'" ;;
      *) valid_name "$1"; names+=("$1"); shift ;;
    esac
  done
  ((${#names[@]})) || lab_die "usage: nodes.sh up [--private] NAME..."
  need_lab
  lower=$(cluster_lower)
  declare -A IPS=()
  local boot=()
  for n in "${names[@]}"; do
    m=$(mname "$n")
    st=$("$M" status "$m" 2>/dev/null | cut -d' ' -f1 || true)
    if [[ "$st" != absent && -n "$st" ]]; then
      [[ "$(node_kind "$n")" == "$kind" ]] || lab_die "node $n exists on the other network (delete it first)"
    fi
    IPS[$n]=$(alloc "$n" "$kind")
    case "$st" in
      running) ;;
      stopped) "$M" boot "$m" --wait none & pids+=($!); boot+=("$m") ;;
      *) node_prepare "$n" "$kind" "${IPS[$n]}" "$lower" & pids+=($!); boot+=("$m") ;;
    esac
  done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  ((rc == 0)) || lab_die "could not create/boot: ${boot[*]}"
  if [[ "$kind" == pub ]]; then mode=ssh; else mode=sshd; fi
  "$M" wait "${names[@]/#/$CLUSTER_PREFIX}" --wait "$mode" --timeout 180 || lab_die "nodes did not boot: ${names[*]}"
  if [[ "$kind" == pub ]]; then   # a real login as debian, host key checked
    local kh
    for n in "${names[@]}"; do
      kh=$(mktemp); "$M" known-hosts "$(mname "$n")" >"$kh"; ssh_opts "$kh"
      for _ in $(seq 100); do
        ssh "${SSH_OPTS[@]}" "$CLUSTER_USER@${IPS[$n]}" true 2>/dev/null && break
        sleep 0.2
      done
      ssh "${SSH_OPTS[@]}" "$CLUSTER_USER@${IPS[$n]}" true || { rm -f "$kh"; lab_die "ssh $CLUSTER_USER@${IPS[$n]} fails"; }
      rm -f "$kh"
    done
  fi
  lab_log "nodes ${names[*]}: $mode ready in $(lab_since "$t0") s"
  for n in "${names[@]}"; do echo "$n ${IPS[$n]}"; done
}

leftovers() { # what remains of machine $1 after delete (empty = nothing)
  local m=$1 d="$CLUSTER_S/machines/$1" cg
  grep -qs " $d/root " /proc/mounts && echo "mount $d/root"
  [[ ! -e "/run/netns/labm-$m" ]] || echo "netns labm-$m"
  for cg in /sys/fs/cgroup/*/lab-nodes/"$m" /sys/fs/cgroup/lab-nodes/"$m"; do [[ ! -d "$cg" ]] || echo "cgroup $cg"; done
  [[ ! -e "$d" ]] || echo "dir $d"
  [[ ! -e "$LAB_STATE/nodes/machines/$m" ]] || echo "registry entry $m"
}

cmd_delete() {
  local n pids=() p rc=0 left=()
  (($#)) || lab_die "usage: nodes.sh delete NAME..."
  [[ $EUID -eq 0 ]] || lab_die "nodes.sh must run as root"
  for n in "$@"; do valid_name "$n"; "$M" delete "$(mname "$n")" --timeout 5 & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  for n in "$@"; do
    mapfile -t left < <(leftovers "$(mname "$n")")
    ((${#left[@]} == 0)) || { lab_log "WARNING: $n: left behind: ${left[*]}"; rc=1; }
  done
  return "$rc"
}

cmd_list() {
  local m ip st n
  "$M" list | while read -r m st ip _; do
    [[ "$m" == "$CLUSTER_PREFIX"* ]] || continue
    n=${m#"$CLUSTER_PREFIX"}
    echo "$n ${ip%/*} $st $([[ "$(node_kind "$n")" == priv ]] && echo private || echo public)"
  done
}

cmd_reboot() {
  local n=${1:?usage: nodes.sh reboot NAME} mode=ssh
  valid_name "$n"
  [[ "$(node_kind "$n")" != priv ]] || mode=sshd
  "$M" reboot "$(mname "$n")" --wait "$mode" --timeout 120
}

main() {
  local cmd=${1:-help}; (($#)) && shift
  case "$cmd" in
    up) cmd_up "$@" ;;
    delete) cmd_delete "$@" ;;
    list) cmd_list ;;
    ip) valid_name "${1:?usage: nodes.sh ip NAME}"; node_ip "$1" | grep . ;;
    known-hosts) valid_name "${1:?usage: nodes.sh known-hosts NAME}"; "$M" known-hosts "$(mname "$1")" ;;
    reboot) cmd_reboot "$@" ;;
    exec) valid_name "${1:?usage: nodes.sh exec NAME CMD...}"; local n=$1; shift; "$M" exec "$(mname "$n")" "$@" ;;
    stats) valid_name "${1:?usage: nodes.sh stats NAME}"; "$M" stats "$(mname "$1")" ;;
    help | -h | --help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}
main "$@"
