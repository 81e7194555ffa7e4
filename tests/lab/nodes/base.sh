#!/usr/bin/env bash
# tests/lab/nodes/base.sh [--name NAME] [--suite SUITE] [--packages "P..."] [--extra "P..."]
#   Print the path of a read-only lower rootfs for machine.sh: Debian (bookworm) minbase +
#   systemd as PID 1 + sshd + the usual tools of a cloud image, plus --extra packages.
#
#   --name NAME        label of the base (default basic)
#   --suite SUITE      Debian suite (default bookworm)
#   --packages "..."   replace the default package list ($NODES_BASE_PKGS below)
#   --extra "..."      add packages to it (e.g. "containerd runc containernetworking-plugins")
#
# Built once with debootstrap (~2 min) from the Debian mirror this host's apt uses, cached as
#   $LAB_CACHE/nodes/<name>-<key>.tar.zst      (key = hash of suite + package list + recipe)
# and unpacked (~2 s) to $LAB_STATE/nodes/base/<name>-<key>/ (the lower dir, never written
# to while machines use it; a new package list gives a new key, hence a new dir).
#
# What the recipe does to the debootstrap result (a generic "cloud image"; the identity of
# a machine is added by machine.sh): no SSH host keys (made at first boot by
# lab-ssh-hostkeys.service, distinct per machine), empty machine-id, no DNS (resolv.conf
# without servers: lookups fail fast), sshd: key-only root login, no reverse DNS, room for
# many parallel sessions; apt/fstrim/e2scrub timers and etcd (if installed) disabled;
# LANG=C.UTF-8; apt lists and caches removed. No users or keys are added.
set -euo pipefail
NODES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$NODES_DIR/../lib.sh"

NODES_BASE_PKGS="systemd systemd-sysv dbus openssh-server iproute2 iputils-ping ca-certificates sudo procps less netbase kmod curl"
NODES_BASE_RECIPE=1   # bump when the post-processing below changes

name=basic suite=bookworm pkgs=$NODES_BASE_PKGS extra=
while (($#)); do
  case "$1" in
    --name) name=$2; shift 2 ;;
    --suite) suite=$2; shift 2 ;;
    --packages) pkgs=$2; shift 2 ;;
    --extra) extra=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) lab_die "base.sh: unknown argument '$1'" ;;
  esac
done
[[ "$name" =~ ^[a-z0-9][a-z0-9-]*$ ]] || lab_die "base.sh: bad --name '$name'"
# shellcheck disable=SC2086
all=$(printf '%s\n' $pkgs $extra | sort -u | xargs)
key=$(printf 'suite=%s\npackages=%s\nrecipe=%s\n' "$suite" "$all" "$NODES_BASE_RECIPE" | sha256sum | cut -c1-12)
lower="$LAB_STATE/nodes/base/$name-$key"
tarball="$LAB_CACHE/nodes/$name-$key.tar.zst"

if [[ -f "$lower.complete" ]]; then echo "$lower"; exit 0; fi
[[ $EUID -eq 0 ]] || lab_die "base.sh must run as root"
command -v zstd >/dev/null || lab_apt zstd
mkdir -p "$LAB_CACHE/nodes" "$LAB_STATE/nodes/base" "$LAB_CACHE/log"
# own lock (not the global cache lock): a base may be built while a long build holds that
exec 6>"$LAB_CACHE/nodes/.lock"
flock -w 1800 6 || lab_die "timed out waiting for $LAB_CACHE/nodes/.lock"
if [[ -f "$lower.complete" ]]; then echo "$lower"; exit 0; fi

t0=$EPOCHREALTIME
if [[ ! -f "$tarball" ]]; then
  command -v debootstrap >/dev/null || lab_apt debootstrap
  # the mirror this host's apt uses (deb822 .sources or one-line format)
  mirror=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /debian\/?$/) { print $i; exit } }' \
    /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 || true)
  [[ -n "$mirror" ]] || mirror=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^http/ && $i ~ /debian\/?$/) { print $i; exit } }' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  logf="$LAB_CACHE/log/nodes-base-$name-$key.log"
  tmp="$LAB_CACHE/nodes/build-$name-$key"
  rm -rf "$tmp"; mkdir -p "$tmp"
  lab_log "debootstrap $suite '$name' from $mirror (~2 min; log: $logf): $all"
  debootstrap --variant=minbase --include="${all// /,}" "$suite" "$tmp" "$mirror" >"$logf" 2>&1 ||
    { rm -rf "$tmp"; lab_die "debootstrap failed" "$logf"; }

  rm -f "$tmp"/etc/ssh/ssh_host_*
  : >"$tmp/etc/machine-id"
  rm -f "$tmp/var/lib/dbus/machine-id"; ln -s /etc/machine-id "$tmp/var/lib/dbus/machine-id"
  echo localhost >"$tmp/etc/hostname"
  echo LANG=C.UTF-8 >"$tmp/etc/default/locale"   # pam_env warns on every login without it
  echo "# lab machine: no DNS server (names of other machines: /etc/hosts)" >"$tmp/etc/resolv.conf"
  if [[ -d "$tmp/etc/ssh/sshd_config.d" ]]; then
    cat >"$tmp/etc/ssh/sshd_config.d/lab-node.conf" <<'EOF'
# lab machine: key-only root login, no reverse DNS, room for many parallel sessions
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
MaxStartups 100:30:200
MaxSessions 100
EOF
    # host keys at first boot, distinct per machine (as cloud images do)
    cat >"$tmp/etc/systemd/system/lab-ssh-hostkeys.service" <<'EOF'
[Unit]
Description=lab: generate the SSH host keys at first boot
Before=ssh.service ssh.socket
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
[Install]
WantedBy=ssh.service multi-user.target
EOF
    mkdir -p "$tmp/etc/systemd/system/ssh.service.wants" "$tmp/etc/systemd/system/multi-user.target.wants"
    ln -sf ../lab-ssh-hostkeys.service "$tmp/etc/systemd/system/ssh.service.wants/"
    ln -sf ../lab-ssh-hostkeys.service "$tmp/etc/systemd/system/multi-user.target.wants/"
  fi
  systemctl --root="$tmp" disable apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
    e2scrub_all.timer fstrim.timer e2scrub_reap.service >/dev/null 2>&1 || true
  [[ ! -e "$tmp/lib/systemd/system/etcd.service" ]] || systemctl --root="$tmp" disable etcd.service >/dev/null 2>&1 || true
  rm -rf "$tmp/var/lib/etcd/default"
  chroot "$tmp" apt-get clean
  rm -rf "$tmp"/var/lib/apt/lists/* "$tmp"/var/log/*.log "$tmp"/var/log/apt/* "$tmp"/var/cache/debconf/*-old
  printf 'suite=%s\npackages=%s\nrecipe=%s\nmirror=%s\nbuilt=%s\n' "$suite" "$all" "$NODES_BASE_RECIPE" "$mirror" "$(date -Is)" \
    >"$tmp/etc/lab-node-base"
  tar -C "$tmp" --numeric-owner --xattrs --xattrs-include='*' -cpf - . | zstd -q -T0 -3 -o "$tarball.tmp"
  mv "$tarball.tmp" "$tarball"
  rm -rf "$tmp"
  lab_log "base '$name' built in $(lab_since "$t0") s ($(du -h "$tarball" | cut -f1) tarball)"
fi

t1=$EPOCHREALTIME
rm -rf "$lower.tmp"; mkdir -p "$lower.tmp"
zstd -q -d -c "$tarball" | tar -C "$lower.tmp" --numeric-owner --xattrs --xattrs-include='*' -xpf -
rm -rf "$lower" "$lower.complete"; mv "$lower.tmp" "$lower"
touch "$lower.complete"
lab_log "base '$name' unpacked to $lower in $(lab_since "$t1") s"
echo "$lower"
