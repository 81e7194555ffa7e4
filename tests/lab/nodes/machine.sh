#!/usr/bin/env bash
# tests/lab/nodes/machine.sh - lab "machines": Debian systems booted with systemd-nspawn
# (systemd as PID 1, real sshd, journald, ...), each with its own network namespace and
# address on a lab L2 network, its own hostname and machine-id, and a private copy-on-write
# overlay over a shared read-only lower rootfs (built by base.sh). Used by the kube lab and
# by anything that needs SSH-reachable servers (a Nova driver). Needs root.
#
# Networks (an L2 segment = a "switch" netns holding bridge br0; the host joins it with one
# veth "labn-NAME" that carries GATEWAY_IP, so the host reaches every machine on it; the
# host keeps ip_forward=0, nothing is routed between networks or off the machine):
#   net-up NAME CIDR GATEWAY_IP      create (idempotent; NAME: [a-z0-9-], at most 10 chars)
#   net-up NAME CIDR --isolated      a network the host does NOT join (no host veth, no
#                                    address): only machines with a NIC on it (e.g. a
#                                    bastion) reach its machines. The host gets an
#                                    `unreachable CIDR` route, so that its packets to the
#                                    range fail at once instead of leaving by its default
#                                    route. Recorded gateway: "none"
#   net-down NAME                    remove (refused while a machine is cabled to it)
#   net-list                         "NAME CIDR GATEWAY_IP" per network (GATEWAY_IP "none": isolated)
#
# Machines (NAME: [a-z0-9][a-z0-9.-]*, at most 60 chars; also the nspawn machine name):
#   up NAME OPTIONS...               prepare + boot (+ wait). On an existing machine: boots it
#                                    if stopped, else no-op (OPTIONS are then ignored).
#   prepare NAME OPTIONS...          create the overlay (mounted at `root NAME`), netns, veths,
#                                    machine-id, hostname, profile files; do not boot. The
#                                    caller may then write files into the root (keys, units).
#   boot NAME [--wait MODE] [--timeout S]   boot a prepared or stopped machine
#   wait NAME... [--wait MODE] [--timeout S]  wait for running machines (parallel boots)
#   stop NAME [--timeout S]          clean poweroff (SIGTERM to nspawn = SIGRTMIN+3 to the
#                                    machine's systemd); SIGKILL of all its processes after S
#                                    seconds (default 30). The disk (overlay) stays.
#   kill NAME                        power cut: SIGKILL every process of the machine
#   reboot NAME [--wait MODE] [--timeout S]   `systemctl reboot` inside (SIGINT to its
#                                    PID 1 if that fails); the launcher restarts nspawn on
#                                    exit status 133: same disk, same addresses
#   delete NAME [--timeout S] [--keep-state]   stop (or kill after S, default 15), then remove
#                                    mount, netns + veths, cgroups, registry entry and the
#                                    state dir (unless --keep-state)
#   status NAME [--json]             "running|stopped IP/P..." (exit 0), "absent" (exit 1);
#                                    --json: {name,state,hostname,profile,ips,networks,boots,
#                                    root,state_dir,console} (console: the machine's output)
#   list [--json]                    "NAME STATE IP/P..." per machine
#   exec NAME [CMD...]               run CMD (default: a login shell) in the machine through
#                                    nsenter (all its namespaces, no SSH); stdin is passed
#   root NAME                        host path of the machine's mounted root (its overlay)
#   known-hosts NAME                 known_hosts lines "IP,HOSTNAME TYPE KEY" from the
#                                    machine's /etc/ssh/ssh_host_*_key.pub (after first boot)
#   stats NAME                       memory of the machine (cgroup usage, rss, PSS) and pids
#   down-all                         delete every machine and network of this lab (and
#                                    leftovers: netns labm-*/labn-*, cgroups lab-nodes/*)
#
# OPTIONS of up/prepare:
#   --lower DIR          read-only lower rootfs (required; base.sh prints one)
#   --state DIR          the machine's state dir (default $LAB_STATE/nodes/machines/NAME;
#                        must be on a filesystem usable as overlay upper, not overlayfs)
#   --net NET --ip A.B.C.D/P [--mac MAC]   one NIC (eth0, eth1, ... in order); repeatable
#   --gw IP              default route via IP (default: no default route)
#   --route DST[:VIA]    extra route (DST CIDR on eth0, or via VIA); repeatable
#   --hostname H         (default NAME)
#   --profile basic|kubelet   kubelet adds what kubelet + containerd need inside nspawn:
#                        CAP_SYSLOG, @keyring syscalls, /dev/kmsg, fake /proc/sys/{vm/
#                        overcommit_memory,kernel/panic,kernel/panic_on_oops}, writable
#                        cgroup v1 controllers (lab-cgroup-rw.service), /var/lib/containerd
#                        bound to STATE/containerd (off the overlay), DefaultTimeoutStopSec=10s
#   --bind SRC:DST / --bind-ro SRC:DST   host dirs/files into the machine; repeatable
#   --mem-max BYTES      memory limit of the machine's memory cgroup
#   --fresh-net-on-reboot    a reboot also renews the machine's network namespace (same
#                        NICs, addresses, MACs and routes as at prepare): what the machine
#                        changed in it (net.* sysctls, iptables rules, routes, bridges) is
#                        gone, as after a real reboot. Without it, that state survives
#                        reboots (the netns belongs to the host)
#   --pre-boot-hook SCRIPT   run once, after prepare and before the first boot, as
#                        `SCRIPT ROOT NAME` (env LAB_MACHINE_{NAME,ROOT,STATE,IPS})
#   --wait MODE          none | started (nspawn launched) | running (default: the machine's
#                        systemd finished booting: running or degraded) | ssh (port 22 answers
#                        from the host) | sshd (sshd answers on 127.0.0.1:22 inside the
#                        machine: for machines the host cannot reach, on isolated networks)
#   --timeout S          for --wait (default 120)
#
# Nothing is added for access: no users, no authorized keys. The caller writes those into
# `root NAME` between prepare and boot, or in the hook. SSH host keys are made at first
# boot inside the machine (base.sh's lab-ssh-hostkeys.service); `known-hosts` reads them.
#
# Every machine runs under its own cgroup in every hierarchy (/sys/fs/cgroup/*/lab-nodes/
# NAME): the launcher (launch.sh) joins them and then runs nspawn with --keep-unit
# --register=no (the host has no systemd). Processes are found through these cgroups and
# the recorded PIDs, never by name. State: $LAB_STATE/nodes/{machines,nets,locks}; a
# machine's dir holds machine.conf, upper/ work/ root/ (overlay), run/*.pid, console.log.
set -euo pipefail
NODES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$NODES_DIR/../lib.sh"

N_STATE="$LAB_STATE/nodes"
N_REG="$N_STATE/machines"      # NAME -> symlink to the machine's state dir (or the dir)
N_NETS="$N_STATE/nets"         # NET/{cidr,gw}
N_LOCKS="$N_STATE/locks"
CG_TAG=lab-nodes               # cgroup parent dir in every hierarchy
NS_M=labm-                     # machine netns prefix
NS_N=labn-                     # switch netns prefix, also the host-side veth name

die() { lab_die "$*"; }
need_root() { [[ $EUID -eq 0 ]] || die "machine.sh must run as root"; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

valid_machine() { [[ "$1" =~ ^[a-z0-9][a-z0-9.-]{0,59}$ ]] || die "bad machine name '$1' ([a-z0-9][a-z0-9.-]*, <= 60 chars)"; }
valid_net() { [[ "$1" =~ ^[a-z0-9][a-z0-9-]{0,9}$ ]] || die "bad network name '$1' ([a-z0-9][a-z0-9-]*, <= 10 chars)"; }
valid_cidr() { [[ "$1" =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}/([0-9]|[12][0-9]|3[0-2])$ ]] || die "bad address '$1' (want A.B.C.D/P)"; }
valid_ip() { [[ "$1" =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}$ ]] || die "bad IP '$1'"; }

ip2int() { local a b c d; IFS=. read -r a b c d <<<"$1"; echo $(((a << 24) | (b << 16) | (c << 8) | d)); }
net_of() { # net_of A.B.C.D/P -> network address as integer and prefix
  local ip=${1%/*} p=${1#*/}
  echo "$(($(ip2int "$ip") & ((0xffffffff << (32 - p)) & 0xffffffff))) $p"
}
in_cidr() { # in_cidr IP CIDR
  local n p; read -r n p < <(net_of "$2")
  ((($(ip2int "$1") & ((0xffffffff << (32 - p)) & 0xffffffff)) == n))
}

hash10() { printf '%s' "$1" | sha256sum | cut -c1-10; }
m_ns() { echo "$NS_M$1"; }
m_port() { echo "m$(hash10 "$1")$2"; }   # switch-side veth of NIC $2 (<= 15 chars)

# cgroup dirs of a machine: its own cgroup in every hierarchy (v1 controllers, name=systemd,
# unified), or the one dir on a pure cgroup v2 host. The first one holds every process.
m_cgroups() {
  if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then echo "/sys/fs/cgroup/$CG_TAG/$1"; return; fi
  echo "/sys/fs/cgroup/systemd/$CG_TAG/$1"
  local h
  for h in /sys/fs/cgroup/*/; do
    h=${h%/}
    [[ -L "$h" || "${h##*/}" == systemd ]] && continue
    echo "$h/$CG_TAG/$1"
  done
}
m_pids() { # every process of a machine (launcher, nspawn, the machine's processes)
  local cg
  cg=$(m_cgroups "$1" | head -n1)
  [[ -d "$cg" ]] || return 0
  find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un
}
m_killall() { # SIGKILL everything in the machine's cgroups until they are empty
  local pids i
  for i in $(seq 50); do
    pids=$(m_pids "$1" | xargs)
    [[ -z "$pids" ]] && return 0
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  lab_log "WARNING: $1: processes survive SIGKILL: $(m_pids "$1" | xargs)"
  return 1
}

m_dir() { # state dir of a registered machine (empty when absent)
  [[ -e "$N_REG/$1" ]] || return 1
  readlink -f "$N_REG/$1"
}
m_need() { valid_machine "$1"; M_DIR=$(m_dir "$1") || die "no machine '$1'"; m_load "$M_DIR"; }
m_load() { # source machine.conf (M_* variables)
  [[ -f "$1/machine.conf" ]] || die "$1/machine.conf missing"
  # shellcheck disable=SC1091
  source "$1/machine.conf"
}
m_launcher_alive() { lab_alive "$1/run/launcher.pid"; }
m_nspawn_pid() { # PID of the current systemd-nspawn (when alive)
  lab_alive "$1/run/nspawn.pid" || return 1
  read -r p _ <"$1/run/nspawn.pid"; echo "$p"
}
m_init_pid() { # host PID of the machine's PID 1 (systemd), once it runs
  local np c
  np=$(m_nspawn_pid "$1") || return 1
  for c in $(ps -o pid= --ppid "$np" 2>/dev/null); do
    [[ "$(readlink "/proc/$c/ns/pid" 2>/dev/null)" != "$(readlink "/proc/$np/ns/pid")" ]] || continue
    [[ "$(cat "/proc/$c/comm" 2>/dev/null)" == systemd ]] || continue
    echo "$c"; return 0
  done
  return 1
}
m_running() { m_launcher_alive "$1" || m_nspawn_pid "$1" >/dev/null; }

m_lock() { # m_lock NAME : exclusive per-machine lock on fd 8 (held until exit)
  mkdir -p "$N_LOCKS"
  exec 8>"$N_LOCKS/$1.lock"
  flock -w 600 8 || die "timed out waiting for the lock of machine $1"
}
net_lock() { mkdir -p "$N_LOCKS"; exec 7>"$N_LOCKS/net.lock"; flock -w 600 7 || die "timed out waiting for the network lock"; }

m_ips() { local n; for n in "${M_NICS[@]}"; do echo "${n#*|}" | cut -d'|' -f1; done | xargs; }

nsexec() { # nsexec DIR CMD... : run CMD in all namespaces and cgroups of the machine's PID 1
  local init
  init=$(m_init_pid "$1") || return 125
  shift
  (
    # join PID 1's cgroups (so the command is accounted and limited with the machine)
    while IFS=: read -r _ ctrl path; do
      case "$ctrl" in "") h=unified ;; name=systemd) h=systemd ;; *) h=$ctrl ;; esac
      [[ -f /sys/fs/cgroup/$h$path/cgroup.procs ]] && echo "$BASHPID" >"/sys/fs/cgroup/$h$path/cgroup.procs" 2>/dev/null
    done <"/proc/$init/cgroup"
    exec nsenter --target "$init" --mount --uts --ipc --net --pid --cgroup --root --wd -- \
      /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      TERM="${TERM:-dumb}" HOME=/root LANG=C.UTF-8 "$@"
  )
}

# ---------------------------------------------------------------- host prerequisites
host_prereqs() {
  need_root
  local pkgs=()
  command -v systemd-nspawn >/dev/null || pkgs+=(systemd-container)
  command -v nsenter >/dev/null || pkgs+=(util-linux)
  command -v ip >/dev/null || pkgs+=(iproute2)
  ((${#pkgs[@]} == 0)) || lab_apt "${pkgs[@]}"
  grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || die "the kernel has no overlayfs"
}

# fs.inotify.max_user_instances: each machine's systemd, journald, logind, ... take ~8
# instances, all charged to host uid 0; 128 (the default) runs out at ~15 machines and
# boots hang. Raised (never lowered) while machines exist; restored when the last goes.
inotify_raise() {
  local n need cur
  n=$(find "$N_REG" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  need=$((10 * n + 256)) cur=$(</proc/sys/fs/inotify/max_user_instances)
  ((cur < need)) || return 0
  [[ -f "$N_STATE/inotify.orig" ]] || echo "$cur" >"$N_STATE/inotify.orig"
  echo "$need" >/proc/sys/fs/inotify/max_user_instances
  echo "$need" >"$N_STATE/inotify.set"
}
inotify_restore() {
  [[ -f "$N_STATE/inotify.orig" ]] || return 0
  [[ -z "$(find "$N_REG" -mindepth 1 -maxdepth 1 2>/dev/null)" ]] || return 0
  if [[ "$(</proc/sys/fs/inotify/max_user_instances)" == "$(cat "$N_STATE/inotify.set" 2>/dev/null)" ]]; then
    cat "$N_STATE/inotify.orig" >/proc/sys/fs/inotify/max_user_instances
  fi
  rm -f "$N_STATE/inotify.orig" "$N_STATE/inotify.set"
}

# tidy_shared : remove what machines/networks share once the last one is gone: the parent
# cgroup dirs lab-nodes/, and /run/netns (a mount point since `ip netns add` made it one).
# Called with the network lock held (netns are created under it too).
tidy_shared() {
  local h
  for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    [[ ! -d "$h$CG_TAG" ]] || rmdir "$h$CG_TAG" 2>/dev/null || true
  done
  if [[ -d /run/netns && -z "$(ls -A /run/netns)" ]]; then
    ! mountpoint -q /run/netns || umount /run/netns 2>/dev/null || true
    rmdir /run/netns 2>/dev/null || true
  fi
}

# ---------------------------------------------------------------- networks
cmd_net_up() {
  (($# == 3)) || die "usage: net-up NAME CIDR GATEWAY_IP | net-up NAME CIDR --isolated"
  local name=$1 cidr=$2 gw=$3 sw="$NS_N$1" host_if="$NS_N$1" n p r f
  valid_net "$name"; valid_cidr "$cidr"
  if [[ "$gw" == --isolated ]]; then gw=none
  else valid_ip "$gw"; in_cidr "$gw" "$cidr" || die "gateway $gw is not in $cidr"; fi
  host_prereqs; net_lock
  read -r n p < <(net_of "$cidr")
  if [[ -f "$N_NETS/$name/cidr" ]]; then
    [[ "$(<"$N_NETS/$name/cidr") $(<"$N_NETS/$name/gw")" == "$cidr $gw" ]] ||
      die "network $name exists with $(<"$N_NETS/$name/cidr") gw $(<"$N_NETS/$name/gw")"
    if [[ -e "/run/netns/$sw" ]] && [[ "$gw" != none ]] && ip link show "$host_if" >/dev/null 2>&1; then return 0; fi
  else
    # refuse a range the host already routes (another network, a real interface) and the
    # range of another lab network (an isolated one has no host route)
    while read -r r; do
      [[ "$r" =~ ^([0-9.]+)(/([0-9]+))?$ ]] || continue
      local rn rp; read -r rn rp < <(net_of "${BASH_REMATCH[1]}/${BASH_REMATCH[3]:-32}")
      local m=$((p < rp ? p : rp)) mask
      mask=$(((0xffffffff << (32 - m)) & 0xffffffff))
      (((n & mask) == (rn & mask))) && die "$cidr overlaps $r, already routed on the host or used by a lab network"
    done < <(ip -4 route show table all | awk '$1 != "default" && $1 != "broadcast" && $1 != "local" && $1 != "multicast" { print $1 }'
      for f in "$N_NETS"/*/cidr; do [[ -f "$f" ]] && cat "$f"; done)
  fi
  [[ -e "/run/netns/$sw" ]] || ip netns add "$sw"
  ip -n "$sw" link set lo up
  ip -n "$sw" link show br0 >/dev/null 2>&1 || ip -n "$sw" link add br0 type bridge
  ip -n "$sw" link set br0 up
  if [[ "$gw" == none ]]; then
    ip route replace unreachable "$cidr"
  else
    if ! ip link show "$host_if" >/dev/null 2>&1; then
      ip link add "$host_if" type veth peer name uplink netns "$sw"
    fi
    ip -n "$sw" link set uplink master br0 up
    ip addr replace "$gw/$p" dev "$host_if"
    ip link set "$host_if" up
  fi
  mkdir -p "$N_NETS/$name"
  echo "$cidr" >"$N_NETS/$name/cidr"; echo "$gw" >"$N_NETS/$name/gw"
  if [[ "$gw" == none ]]; then lab_log "network $name: $cidr, isolated (the host does not join it)"
  else lab_log "network $name: $cidr, host $gw on $host_if"; fi
}

net_users() { # machines with a NIC on network $1
  local f
  for f in "$N_REG"/*; do
    [[ -e "$f" ]] || continue
    grep -qF "\"$1|" "$f/machine.conf" 2>/dev/null && basename "$f"
  done
  return 0   # (not grep's status: with pipefail, net-down died when another machine was last)
}

cmd_net_down() {
  (($# == 1)) || die "usage: net-down NAME"
  local name=$1 users; valid_net "$name"; need_root; net_lock
  users=$(net_users "$name" | xargs)
  [[ -z "$users" ]] || die "network $name is still used by: $users"
  net_remove "$name"
}
net_remove() {
  local name=$1
  if ip link show "$NS_N$name" >/dev/null 2>&1; then ip link del "$NS_N$name"; fi
  if [[ "$(cat "$N_NETS/$name/gw" 2>/dev/null)" == none ]]; then
    ip route del unreachable "$(<"$N_NETS/$name/cidr")" 2>/dev/null || true
  fi
  if [[ -e "/run/netns/$NS_N$name" ]]; then ip netns del "$NS_N$name"; fi
  rm -rf "${N_NETS:?}/$name"
  tidy_shared
  lab_log "network $name removed"
}

cmd_net_list() {
  local d
  for d in "$N_NETS"/*/; do
    [[ -f "$d/cidr" ]] && echo "$(basename "$d") $(<"$d/cidr") $(<"$d/gw")"
  done
  return 0
}

# ---------------------------------------------------------------- machines: prepare
# parse_opts ARGS... : fills the M_* settings (machine.conf) and W_* (wait options)
parse_opts() {
  M_LOWER='' M_STATE='' M_HOSTNAME='' M_PROFILE=basic M_GW='' M_MEM_MAX='' M_HOOK='' M_FRESH_NET=0
  M_NICS=() M_ROUTES=() M_BINDS=()
  W_MODE=running W_TIMEOUT=120
  local cur_net='' cur_ip='' cur_mac=
  flush_nic() {
    if [[ -n "$cur_net" ]]; then
      [[ -n "$cur_ip" ]] || die "--net $cur_net needs an --ip"
      M_NICS+=("$cur_net|$cur_ip|$cur_mac")
    fi
    cur_net='' cur_ip='' cur_mac=
  }
  while (($#)); do
    case "$1" in
      --lower) M_LOWER=$2; shift 2 ;;
      --state) M_STATE=$2; shift 2 ;;
      --net) flush_nic; valid_net "$2"; cur_net=$2; shift 2 ;;
      --ip) [[ -n "$cur_net" ]] || die "--ip must follow --net"; valid_cidr "$2"; cur_ip=$2; shift 2 ;;
      --mac) [[ "$2" =~ ^([0-9a-f]{2}:){5}[0-9a-f]{2}$ ]] || die "bad MAC '$2'"; cur_mac=$2; shift 2 ;;
      --gw) valid_ip "$2"; M_GW=$2; shift 2 ;;
      --route) M_ROUTES+=("$2"); shift 2 ;;
      --hostname) M_HOSTNAME=$2; shift 2 ;;
      --profile) [[ "$2" == basic || "$2" == kubelet ]] || die "--profile basic|kubelet"; M_PROFILE=$2; shift 2 ;;
      --bind) [[ "$2" == /*:/* ]] || die "--bind SRC:DST (absolute paths)"; M_BINDS+=("rw|$2"); shift 2 ;;
      --bind-ro) [[ "$2" == /*:/* ]] || die "--bind-ro SRC:DST (absolute paths)"; M_BINDS+=("ro|$2"); shift 2 ;;
      --mem-max) [[ "$2" =~ ^[0-9]+$ ]] || die "--mem-max BYTES"; M_MEM_MAX=$2; shift 2 ;;
      --fresh-net-on-reboot) M_FRESH_NET=1; shift ;;
      --pre-boot-hook) [[ -x "$2" ]] || die "hook $2 is not executable"; M_HOOK=$(readlink -f "$2"); shift 2 ;;
      --wait) W_MODE=$2; shift 2 ;;
      --timeout) W_TIMEOUT=$2; shift 2 ;;
      *) die "unknown option '$1' (see: machine.sh help)" ;;
    esac
  done
  flush_nic
  case "$W_MODE" in none | started | running | ssh | sshd) ;; *) die "--wait none|started|running|ssh|sshd" ;; esac
}

cmd_prepare() {
  local name=${1:?usage: prepare NAME OPTIONS...}; shift
  valid_machine "$name"; parse_opts "$@"; host_prereqs
  m_lock "$name"
  if m_dir "$name" >/dev/null; then die "machine $name exists (delete it first, or boot it)"; fi
  prepare_locked "$name"
}

prepare_locked() {
  local name=$1 d r i nic net ip mac ns port gw cidr
  [[ -n "$M_LOWER" && -d "$M_LOWER/etc" && -x "$M_LOWER/lib/systemd/systemd" ]] ||
    die "--lower '$M_LOWER' is not a systemd rootfs (build one with tests/lab/nodes/base.sh)"
  M_LOWER=$(readlink -f "$M_LOWER")
  ((${#M_NICS[@]})) || die "a machine needs at least one --net NET --ip A.B.C.D/P"
  M_HOSTNAME=${M_HOSTNAME:-$name}
  d=${M_STATE:-$N_REG/$name}
  mkdir -p "$d" && d=$(readlink -f "$d")
  M_STATE=$d M_NAME=$name
  [[ "$(stat -f -c %T "$d")" != overlayfs ]] || die "--state $d is on overlayfs (no overlay upper there)"
  if [[ -e "$d/machine.conf" || -d "$d/upper" ]]; then die "$d already holds a machine"; fi
  for nic in "${M_NICS[@]}"; do
    net=${nic%%|*}
    [[ -f "$N_NETS/$net/cidr" ]] || die "no network '$net' (machine.sh net-up $net CIDR GW)"
    ip=$(cut -d'|' -f2 <<<"$nic")
    in_cidr "${ip%/*}" "$(<"$N_NETS/$net/cidr")" || die "$ip is not in network $net ($(<"$N_NETS/$net/cidr"))"
  done
  mkdir -p "$N_REG"
  [[ "$d" == "$(readlink -f "$N_REG")/$name" ]] || ln -sfn "$d" "$N_REG/$name"
  mkdir -p "$d/upper" "$d/work" "$d/root" "$d/run"
  if ((M_FRESH_NET)); then touch "$d/fresh-net-on-reboot"; fi   # read by launch.sh
  # declare -g: m_load sources this file inside a function
  declare -p M_NAME M_LOWER M_STATE M_HOSTNAME M_PROFILE M_GW M_MEM_MAX M_HOOK M_NICS M_ROUTES M_BINDS |
    sed 's/^declare /declare -g /' >"$d/machine.conf"
  setup_mount "$d"
  setup_net "$name"

  # identity: hostname, machine-id, /etc/hosts with the machine's own addresses
  r=$d/root
  echo "$M_HOSTNAME" >"$r/etc/hostname"
  [[ -s "$r/etc/machine-id" ]] || tr -d '-' </proc/sys/kernel/random/uuid >"$r/etc/machine-id"
  {
    echo "127.0.0.1 localhost"
    echo "::1 localhost ip6-localhost ip6-loopback"
    for nic in "${M_NICS[@]}"; do ip=$(cut -d'|' -f2 <<<"$nic"); echo "${ip%/*} $M_HOSTNAME"; done
  } >"$r/etc/hosts"
  [[ "$M_PROFILE" != kubelet ]] || profile_kubelet_files "$d"
  if [[ -n "$M_HOOK" ]]; then
    LAB_MACHINE_NAME=$name LAB_MACHINE_ROOT=$r LAB_MACHINE_STATE=$d LAB_MACHINE_IPS="$(m_ips)" \
      "$M_HOOK" "$r" "$name" || die "$name: pre-boot hook $M_HOOK failed"
  fi
  lab_log "$name: prepared ($(m_ips), root $r)"
}

setup_mount() { # (re)mount the overlay of machine dir $1
  local d=$1
  mountpoint -q "$d/root" && return 0
  mount -t overlay overlay -o "lowerdir=$M_LOWER,upperdir=$d/upper,workdir=$d/work" "$d/root" ||
    die "$M_NAME: overlay mount failed"
}

setup_net() { # (re)create netns, veths, addresses and routes of machine $1 (M_* loaded)
  local name=$1 ns i nic net ip mac port rt via
  net_lock
  ns=$(m_ns "$name")
  [[ -e "/run/netns/$ns" ]] || ip netns add "$ns"
  ip -n "$ns" link set lo up
  i=0
  for nic in "${M_NICS[@]}"; do
    IFS='|' read -r net ip mac <<<"$nic"
    port=$(m_port "$name" "$i")
    [[ -e "/run/netns/$NS_N$net" ]] || die "network $net is not up (machine.sh net-up)"
    if ! ip -n "$ns" link show "eth$i" >/dev/null 2>&1; then
      ip -n "$NS_N$net" link del "$port" 2>/dev/null || true
      ip -n "$NS_N$net" link add "$port" type veth peer name "eth$i" netns "$ns"
    fi
    [[ -z "$mac" ]] || ip -n "$ns" link set "eth$i" address "$mac"
    ip -n "$NS_N$net" link set "$port" master br0 up
    ip -n "$ns" addr replace "$ip" dev "eth$i"
    ip -n "$ns" link set "eth$i" up
    # the host may still hold the MAC of an earlier machine with this address (a deleted
    # one): without this, the host reaches the new machine only after ~25 s (ARP timeout)
    ip neigh del "${ip%/*}" dev "$NS_N$net" 2>/dev/null || true
    i=$((i + 1))
  done
  [[ -z "$M_GW" ]] || ip -n "$ns" route replace default via "$M_GW"
  for rt in "${M_ROUTES[@]}"; do
    if [[ "$rt" == *:* ]]; then via=${rt#*:}; ip -n "$ns" route replace "${rt%%:*}" via "$via"
    else ip -n "$ns" route replace "$rt" dev eth0; fi
  done
  exec 7>&-
}

# cmd_fresh_net DIR : (internal, launch.sh between two boots of a machine made with
# --fresh-net-on-reboot) a new netns with the same NICs (MACs kept), addresses and routes
cmd_fresh_net() {
  local d=${1:?} ns i mac nic
  need_root; m_load "$d"; M_DIR=$d
  ns=$(m_ns "$M_NAME")
  for i in "${!M_NICS[@]}"; do
    nic=${M_NICS[i]}
    if [[ -z "${nic##*|}" ]]; then   # no --mac: keep the current one (ARP caches stay right)
      mac=$(ip -n "$ns" -o link show "eth$i" 2>/dev/null | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
      M_NICS[i]=$nic$mac
    fi
  done
  ( net_lock; [[ ! -e "/run/netns/$ns" ]] || ip netns del "$ns" )
  setup_net "$M_NAME"
  echo "=== lab: $M_NAME: fresh network namespace for the new boot ==="
}

# The kubelet profile: what fixtures-kubelet.md proved necessary for kubelet + containerd in
# an nspawn machine (each item was removed in turn and broke it). Files go into the overlay.
profile_kubelet_files() {
  local d=$1 r=$1/root u
  # kubelet 1.20 insists on these host-global sysctls (it writes them when they differ and
  # fails when it cannot); nspawn binds these files over /proc/sys/... (the bind source of
  # a /proc custom mount is resolved inside the machine: hence files in its /etc).
  mkdir -p "$r/etc/lab-node/sysctl"
  echo 1 >"$r/etc/lab-node/sysctl/vm.overcommit_memory"
  echo 10 >"$r/etc/lab-node/sysctl/kernel.panic"
  echo 1 >"$r/etc/lab-node/sysctl/kernel.panic_on_oops"
  # nspawn mounts the cgroup v1 controllers read-only in the machine: kubelet's
  # ContainerManager then fails with "mkdir /sys/fs/cgroup/cpuset/kubepods: read-only"
  u=$r/etc/systemd/system
  mkdir -p "$u/multi-user.target.wants" "$u/system.conf.d" "$r/etc/systemd/system.conf.d"
  cat >"$u/lab-cgroup-rw.service" <<'U'
[Unit]
Description=lab: make the cgroup v1 controllers writable (nspawn mounts them read-only)
DefaultDependencies=no
Before=containerd.service kubelet.service kube-proxy.service
After=local-fs.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'for c in /sys/fs/cgroup/*; do [ -L "$c" ] || mount -o remount,rw,bind "$c"; done'
[Install]
WantedBy=multi-user.target
U
  ln -sf ../lab-cgroup-rw.service "$u/multi-user.target.wants/lab-cgroup-rw.service"
  # pod processes live outside every unit; at poweroff systemd waits DefaultTimeoutStopSec
  # (90 s) for those that ignore SIGTERM (a PID-1 busybox httpd) before SIGKILL
  printf '[Manager]\nDefaultTimeoutStopSec=10s\n' >"$r/etc/systemd/system.conf.d/lab-node.conf"
  # containerd's overlay snapshotter cannot use an upper dir on overlayfs: own dir on ext4
  mkdir -p "$d/containerd" "$r/var/lib/containerd"
}

nspawn_args() { # the systemd-nspawn command line of machine dir $1 (M_* loaded)
  local d=$1 b
  NSPAWN=(systemd-nspawn --boot --capability=CAP_NET_ADMIN
    --directory="$d/root" --machine="$M_NAME" --hostname="$M_HOSTNAME"
    --keep-unit --register=no --network-namespace-path="/run/netns/$(m_ns "$M_NAME")"
    --private-users=no --resolv-conf=off --timezone=off --link-journal=no --console=read-only)
  if [[ "$M_PROFILE" == kubelet ]]; then
    NSPAWN+=(--capability=CAP_SYSLOG --system-call-filter=@keyring --bind=/dev/kmsg
      "--bind=$d/containerd:/var/lib/containerd"
      --bind-ro=/etc/lab-node/sysctl/vm.overcommit_memory:/proc/sys/vm/overcommit_memory
      --bind-ro=/etc/lab-node/sysctl/kernel.panic:/proc/sys/kernel/panic
      --bind-ro=/etc/lab-node/sysctl/kernel.panic_on_oops:/proc/sys/kernel/panic_on_oops)
  fi
  for b in "${M_BINDS[@]}"; do
    if [[ "${b%%|*}" == ro ]]; then NSPAWN+=("--bind-ro=${b#*|}"); else NSPAWN+=("--bind=${b#*|}"); fi
  done
}

setup_cgroups() { # own cgroup in every hierarchy; cpuset needs cpus/mems before anyone joins
  local name=$1 cg parent
  for cg in $(m_cgroups "$name"); do
    parent=${cg%/*}
    mkdir -p "$cg"
    if [[ -f "$cg/cpuset.cpus" ]]; then
      local root=${parent%/*}
      [[ -n "$(cat "$parent/cpuset.cpus")" ]] || { cat "$root/cpuset.cpus" >"$parent/cpuset.cpus"; cat "$root/cpuset.mems" >"$parent/cpuset.mems"; }
      [[ -n "$(cat "$cg/cpuset.cpus")" ]] || { cat "$parent/cpuset.cpus" >"$cg/cpuset.cpus"; cat "$parent/cpuset.mems" >"$cg/cpuset.mems"; }
    fi
    if [[ -n "$M_MEM_MAX" ]]; then
      if [[ -f "$cg/memory.limit_in_bytes" ]]; then echo "$M_MEM_MAX" >"$cg/memory.limit_in_bytes"
      elif [[ -f "$cg/memory.max" ]]; then echo "$M_MEM_MAX" >"$cg/memory.max"; fi
    fi
  done
}

remove_cgroups() {
  local cg
  for cg in $(m_cgroups "$1"); do
    [[ -d "$cg" ]] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
    [[ ! -d "$cg" ]] || { sleep 0.3; find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true; }
  done
  return 0
}

# ---------------------------------------------------------------- machines: boot / wait
cmd_boot() {
  local name=${1:?usage: boot NAME [--wait MODE] [--timeout S]}; shift
  local mode=running timeout=120
  while (($#)); do
    case "$1" in
      --wait) mode=$2; shift 2 ;; --timeout) timeout=$2; shift 2 ;;
      *) die "unknown option '$1'" ;;
    esac
  done
  m_need "$name"; host_prereqs; m_lock "$name"
  boot_locked "$name" || exit 1
  [[ "$mode" == none || "$mode" == started ]] || wait_one "$name" "$mode" "$timeout"
}

boot_locked() {
  local name=$1 d=$M_DIR
  if m_running "$d"; then lab_log "$name: already running"; return 0; fi
  if [[ -n "$(m_pids "$name")" ]]; then   # leftovers of a SIGKILLed launcher: power cut first
    lab_log "$name: killing leftover processes $(m_pids "$name" | xargs)"
    m_killall "$name" || return 1
  fi
  setup_mount "$d"; setup_net "$name"; setup_cgroups "$name"; inotify_raise
  nspawn_args "$d"
  rm -f "$d/run/launcher.pid" "$d/run/nspawn.pid"
  # the launcher joins the cgroups, records its own PID and nspawn's, restarts on 133
  SYSTEMD_NSPAWN_API_VFS_WRITABLE=network setsid "$NODES_DIR/launch.sh" "$d" "$(m_cgroups "$name" | xargs)" -- \
    "${NSPAWN[@]}" </dev/null >>"$d/console.log" 2>&1 7>&- 8>&- 9>&- &
  local i
  for i in $(seq 100); do [[ -s "$d/run/nspawn.pid" ]] && break; sleep 0.05; done
  m_launcher_alive "$d" || { tail -n 30 "$d/console.log" >&2; lab_log "$name: the launcher exited at once"; return 1; }
  lab_log "$name: booting ($(m_ips), console: $d/console.log)"
}

# wait_one NAME MODE TIMEOUT : until the machine's systemd finished booting (running or
# degraded) or, for MODE=ssh, its first address answers on port 22 (MODE=sshd: inside)
wait_one() {
  local name=$1 mode=$2 timeout=$3 d st t0=$EPOCHREALTIME ip
  d=$(m_dir "$name") || die "no machine '$name'"
  m_load "$d"
  while :; do
    if ! m_running "$d"; then
      tail -n 30 "$d/console.log" >&2
      lab_log "$name: stopped while booting (console: $d/console.log)"; return 1
    fi
    case "$mode" in
      ssh)
        ip=$(m_ips | cut -d' ' -f1); ip=${ip%/*}
        if timeout 2 bash -c "exec 3<>/dev/tcp/$ip/22 && head -c 4 <&3" 2>/dev/null | grep -q SSH-; then break; fi ;;
      sshd)
        if nsexec "$d" timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/22 && head -c 4 <&3' 2>/dev/null | grep -q SSH-; then break; fi ;;
      *)
        st=$(nsexec "$d" systemctl is-system-running 2>/dev/null || true)
        case "$st" in
          running) break ;;
          degraded)
            lab_log "$name: degraded: $(nsexec "$d" systemctl --failed --no-legend --plain 2>/dev/null | awk '{print $1}' | xargs)"
            break ;;
        esac ;;
    esac
    if awk -v a="$t0" -v b="$EPOCHREALTIME" -v t="$timeout" 'BEGIN { exit !(b - a > t) }'; then
      tail -n 30 "$d/console.log" >&2
      lab_log "$name: not $mode within ${timeout}s (systemd state: ${st:-?})"; return 1
    fi
    sleep 0.2
  done
  lab_log "$name: $mode after $(lab_since "$t0") s"
}

cmd_wait() {
  local names=() mode=running timeout=120 n pids=() rc=0 p
  while (($#)); do
    case "$1" in
      --wait) mode=$2; shift 2 ;; --timeout) timeout=$2; shift 2 ;;
      -*) die "unknown option '$1'" ;;
      *) valid_machine "$1"; names+=("$1"); shift ;;
    esac
  done
  for n in "${names[@]}"; do wait_one "$n" "$mode" "$timeout" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  return "$rc"
}

cmd_up() {
  local name=${1:?usage: up NAME OPTIONS...}; shift
  valid_machine "$name"; parse_opts "$@"; host_prereqs
  local mode=$W_MODE timeout=$W_TIMEOUT
  m_lock "$name"
  if M_DIR=$(m_dir "$name"); then
    m_load "$M_DIR"
    m_running "$M_DIR" && { lab_log "$name: already running"; return 0; }
  else
    prepare_locked "$name"
    M_DIR=$(m_dir "$name"); m_load "$M_DIR"
  fi
  boot_locked "$name" || exit 1
  exec 8>&-   # release the lock before the (long) wait
  [[ "$mode" == none || "$mode" == started ]] || wait_one "$name" "$mode" "$timeout"
}

# ---------------------------------------------------------------- machines: stop / kill / reboot
# stop_locked NAME TIMEOUT : clean poweroff, power cut after TIMEOUT seconds
stop_locked() {
  local name=$1 timeout=$2 d=$M_DIR pid np t0=$EPOCHREALTIME
  if m_launcher_alive "$d"; then
    read -r pid _ <"$d/run/launcher.pid"; kill -TERM "$pid" 2>/dev/null || true
  elif np=$(m_nspawn_pid "$d"); then
    kill -TERM "$np" 2>/dev/null || true
  fi
  while m_running "$d"; do
    if awk -v a="$t0" -v b="$EPOCHREALTIME" -v t="$timeout" 'BEGIN { exit !(b - a > t) }'; then
      lab_log "$name: no clean poweroff within ${timeout}s: power cut"; break
    fi
    sleep 0.2
  done
  m_killall "$name"
  rm -f "$d/run/launcher.pid" "$d/run/nspawn.pid"
}

cmd_stop() {
  local name=${1:?usage: stop NAME [--timeout S]} timeout=30; shift
  [[ "${1:-}" != --timeout ]] || timeout=${2:?}
  m_need "$name"; need_root; m_lock "$name"
  m_running "$M_DIR" || [[ -n "$(m_pids "$name")" ]] || { lab_log "$name: already stopped"; return 0; }
  local t0=$EPOCHREALTIME
  stop_locked "$name" "$timeout"
  lab_log "$name: stopped in $(lab_since "$t0") s"
}

cmd_kill() {
  local name=${1:?usage: kill NAME}
  m_need "$name"; need_root; m_lock "$name"
  local pid
  if lab_alive "$M_DIR/run/launcher.pid"; then read -r pid _ <"$M_DIR/run/launcher.pid"; kill -KILL "$pid" 2>/dev/null || true; fi
  m_killall "$name"
  rm -f "$M_DIR/run/launcher.pid" "$M_DIR/run/nspawn.pid"
  lab_log "$name: killed (power cut)"
}

cmd_reboot() {
  local name=${1:?usage: reboot NAME [--wait MODE] [--timeout S]}; shift
  local mode=running timeout=120 boots init t0=$EPOCHREALTIME
  while (($#)); do
    case "$1" in
      --wait) mode=$2; shift 2 ;; --timeout) timeout=$2; shift 2 ;;
      *) die "unknown option '$1'" ;;
    esac
  done
  m_need "$name"; need_root
  m_running "$M_DIR" || die "$name is not running"
  boots=$(cat "$M_DIR/run/boots" 2>/dev/null || echo 0)
  if ! nsexec "$M_DIR" systemctl reboot >/dev/null 2>&1; then
    init=$(m_init_pid "$M_DIR") || die "$name: its systemd is not running"
    kill -INT "$init"   # = ctrl-alt-del.target = reboot.target
  fi
  # the launcher starts nspawn again (exit status 133) and counts the boots
  while [[ "$(cat "$M_DIR/run/boots" 2>/dev/null || echo 0)" == "$boots" ]]; do
    m_launcher_alive "$M_DIR" || die "$name: the launcher exited during the reboot (console: $M_DIR/console.log)"
    if awk -v a="$t0" -v b="$EPOCHREALTIME" -v t="$timeout" 'BEGIN { exit !(b - a > t) }'; then
      die "$name: did not restart within ${timeout}s"
    fi
    sleep 0.1
  done
  lab_log "$name: restarting after $(lab_since "$t0") s"
  [[ "$mode" == none || "$mode" == started ]] || wait_one "$name" "$mode" "$timeout"
}

# ---------------------------------------------------------------- machines: delete
delete_locked() { # delete_locked NAME TIMEOUT KEEP_STATE   (M_DIR, M_* loaded)
  local name=$1 timeout=$2 keep=$3 d=$M_DIR ns i
  if m_running "$d" || [[ -n "$(m_pids "$name")" ]]; then stop_locked "$name" "$timeout"; fi
  m_killall "$name" || return 1
  if mountpoint -q "$d/root"; then
    umount "$d/root" 2>/dev/null || { sleep 0.5; umount "$d/root" 2>/dev/null; } ||
      { lab_log "WARNING: $name: $d/root busy, lazy unmount"; umount -l "$d/root"; }
  fi
  ns=$(m_ns "$name")
  for i in "${!M_NICS[@]}"; do   # the switch-side ends go with the netns; make sure
    ip -n "$NS_N${M_NICS[i]%%|*}" link del "$(m_port "$name" "$i")" 2>/dev/null || true
  done
  remove_cgroups "$name"
  ( net_lock
    [[ ! -e "/run/netns/$ns" ]] || ip netns del "$ns"
    tidy_shared )
  rm -rf "/run/systemd/nspawn/propagate/$name"
  if [[ "$keep" == 1 ]]; then
    rm -rf "$d/run"
  else
    rm -rf "$d"
  fi
  rm -f "$N_REG/$name"
  rm -f "$N_LOCKS/$name.lock"
  lab_log "$name: deleted"
}

cmd_delete() {
  local name=${1:?usage: delete NAME [--timeout S] [--keep-state]} timeout=15 keep=0; shift
  while (($#)); do
    case "$1" in
      --timeout) timeout=$2; shift 2 ;; --keep-state) keep=1; shift ;;
      *) die "unknown option '$1'" ;;
    esac
  done
  valid_machine "$name"; need_root
  M_DIR=$(m_dir "$name") || { lab_log "$name: no such machine"; return 0; }
  m_load "$M_DIR"; m_lock "$name"
  delete_locked "$name" "$timeout" "$keep"
  inotify_restore
}

# ---------------------------------------------------------------- inspection
m_state() { if m_running "$1"; then echo running; else echo stopped; fi; }

json_str() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }
m_json() { # m_json NAME (M_* loaded, M_DIR set)
  local ips=() nets=() nic first=1 x
  for nic in "${M_NICS[@]}"; do nets+=("${nic%%|*}"); ips+=("$(cut -d'|' -f2 <<<"$nic")"); done
  printf '{"name":%s,"state":"%s","hostname":%s,"profile":"%s","ips":[' "$(json_str "$1")" "$(m_state "$M_DIR")" "$(json_str "$M_HOSTNAME")" "$M_PROFILE"
  for x in "${ips[@]}"; do ((first)) || printf ','; first=0; json_str "$x"; done
  printf '],"networks":['; first=1
  for x in "${nets[@]}"; do ((first)) || printf ','; first=0; json_str "$x"; done
  printf '],"boots":%s,"root":%s,"state_dir":%s,"console":%s}' "$(cat "$M_DIR/run/boots" 2>/dev/null || echo 0)" \
    "$(json_str "$M_DIR/root")" "$(json_str "$M_DIR")" "$(json_str "$M_DIR/console.log")"
}

cmd_status() {
  local name=${1:?usage: status NAME [--json]} json=${2:-}
  valid_machine "$name"
  if ! M_DIR=$(m_dir "$name"); then
    if [[ "$json" == --json ]]; then printf '{"name":%s,"state":"absent"}\n' "$(json_str "$name")"; else echo absent; fi
    return 1
  fi
  m_load "$M_DIR"
  if [[ "$json" == --json ]]; then m_json "$name"; echo; else echo "$(m_state "$M_DIR") $(m_ips)"; fi
}

cmd_list() {
  local f name first=1 json=${1:-}
  [[ "$json" != --json ]] || printf '['
  for f in "$N_REG"/*; do
    [[ -e "$f/machine.conf" ]] || continue
    name=$(basename "$f"); M_DIR=$(readlink -f "$f"); m_load "$M_DIR"
    if [[ "$json" == --json ]]; then ((first)) || printf ','; first=0; m_json "$name"
    else echo "$name $(m_state "$M_DIR") $(m_ips)"; fi
  done
  [[ "$json" != --json ]] || echo ']'
}

cmd_exec() {
  local name=${1:?usage: exec NAME [CMD...]}; shift
  m_need "$name"; need_root
  m_init_pid "$M_DIR" >/dev/null || die "$name is not running"
  (($#)) || set -- /bin/bash -l
  local rc=0
  nsexec "$M_DIR" "$@" || rc=$?
  return "$rc"
}

cmd_root() { m_need "${1:?usage: root NAME}"; echo "$M_DIR/root"; }

cmd_known_hosts() {
  m_need "${1:?usage: known-hosts NAME}"
  local k nic ip hosts=""
  for nic in "${M_NICS[@]}"; do ip=$(cut -d'|' -f2 <<<"$nic"); hosts+="${ip%/*},"; done
  hosts+=$M_HOSTNAME
  compgen -G "$M_DIR/root/etc/ssh/ssh_host_*_key.pub" >/dev/null || die "$1 has no SSH host keys yet (boot it first)"
  for k in "$M_DIR"/root/etc/ssh/ssh_host_*_key.pub; do echo "$hosts $(cut -d' ' -f1,2 "$k")"; done
}

cmd_stats() {
  m_need "${1:?usage: stats NAME}"
  local cg pss=0 n=0 p v usage="" rss=""
  for cg in $(m_cgroups "$1"); do
    if [[ -f "$cg/memory.usage_in_bytes" ]]; then
      usage=$(<"$cg/memory.usage_in_bytes")
      rss=$(awk '$1 == "total_rss" { print $2 }' "$cg/memory.stat")
    elif [[ -f "$cg/memory.current" ]]; then usage=$(<"$cg/memory.current"); fi
  done
  for p in $(m_pids "$1"); do
    v=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || true)
    pss=$((pss + ${v:-0})); n=$((n + 1))
  done
  echo "name=$1 state=$(m_state "$M_DIR") processes=$n pss_kb=$pss cgroup_usage_bytes=${usage:-?} cgroup_rss_bytes=${rss:-?}"
}

# ---------------------------------------------------------------- everything
cmd_down_all() {
  need_root
  local f name names=() pid d ns cg net
  for f in "$N_REG"/*; do [[ -e "$f" || -L "$f" ]] && names+=("$(basename "$f")"); done
  # poweroff requests to all at once, then delete one by one (each waits for its own stop)
  for name in "${names[@]}"; do
    d=$(m_dir "$name") || continue
    if lab_alive "$d/run/launcher.pid"; then read -r pid _ <"$d/run/launcher.pid"; kill -TERM "$pid" 2>/dev/null || true; fi
  done
  for name in "${names[@]}"; do
    if d=$(m_dir "$name") && [[ -f "$d/machine.conf" ]]; then
      M_DIR=$d; m_load "$d"
      ( m_lock "$name"; delete_locked "$name" 15 0 ) || lab_log "WARNING: could not delete $name"
    else
      rm -f "$N_REG/$name"   # dangling registry entry
    fi
  done
  # leftovers without a registry entry: cgroups (kill their processes), netns
  for name in $(for cg in /sys/fs/cgroup/*/"$CG_TAG"/*/ /sys/fs/cgroup/"$CG_TAG"/*/; do
    [[ -d "$cg" ]] && basename "$cg"; done | sort -u); do
    lab_log "removing leftover cgroups of machine $name"
    m_killall "$name" || true; remove_cgroups "$name"
  done
  net_lock
  for ns in /run/netns/"$NS_M"*; do
    [[ -e "$ns" ]] || continue
    lab_log "removing leftover netns $(basename "$ns")"; ip netns del "$(basename "$ns")"
  done
  for f in "$N_NETS"/*/; do [[ -d "$f" ]] && net_remove "$(basename "$f")"; done
  for ns in /run/netns/"$NS_N"*; do
    [[ -e "$ns" ]] || continue
    net=$(basename "$ns"); net=${net#"$NS_N"}
    net_remove "$net"
  done
  tidy_shared
  inotify_restore
  rm -rf "$N_LOCKS"
  lab_log "down-all: ${#names[@]} machine(s) removed"
}

# ---------------------------------------------------------------- main
main() {
  local cmd=${1:-help}; (($#)) && shift
  mkdir -p "$N_STATE"
  case "$cmd" in
    net-up) cmd_net_up "$@" ;;
    net-down) cmd_net_down "$@" ;;
    net-list) cmd_net_list ;;
    up) cmd_up "$@" ;;
    prepare) cmd_prepare "$@" ;;
    boot) cmd_boot "$@" ;;
    wait) cmd_wait "$@" ;;
    stop) cmd_stop "$@" ;;
    kill) cmd_kill "$@" ;;
    reboot) cmd_reboot "$@" ;;
    delete) cmd_delete "$@" ;;
    status) cmd_status "$@" ;;
    list) cmd_list "$@" ;;
    exec) cmd_exec "$@" ;;
    root) cmd_root "$@" ;;
    known-hosts) cmd_known_hosts "$@" ;;
    stats) cmd_stats "$@" ;;
    _fresh-net) cmd_fresh_net "$@" ;;
    down-all) cmd_down_all ;;
    help | -h | --help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}
main "$@"
