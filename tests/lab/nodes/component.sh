# shellcheck shell=bash
# tests/lab/nodes/component.sh - "nodes": systemd-nspawn machines (sourced after lib.sh).
#
# Nothing runs by itself: `up.sh nodes` installs what machine.sh needs and makes the
# default lower rootfs (base.sh: Debian bookworm minbase + systemd + sshd, ~2 min cold,
# a cached tarball afterwards); env.sh tells callers (tests, the Nova driver) where the
# tools are. `down.sh` (all components) deletes every machine and network of the library,
# whoever made them (`machine.sh down-all`); `down.sh kube` only deletes the kube workers.

lab_up_nodes() {
  local lower
  [[ $EUID -eq 0 ]] || lab_die "nodes needs root (machines, netns, mounts)"
  lab_apt systemd-container debootstrap zstd openssh-client iproute2
  lower=$("$LAB_DIR/nodes/base.sh")
  mkdir -p "$LAB_STATE/nodes"
  {
    echo "# written by tests/lab/up.sh nodes: systemd-nspawn machines (see tests/lab/nodes/machine.sh)"
    echo "export LAB_MACHINE=$LAB_DIR/nodes/machine.sh"
    echo "export LAB_NODES_BASE=$lower   # default --lower (bookworm + systemd + sshd)"
    echo "export LAB_NODES_BASE_SH=$LAB_DIR/nodes/base.sh   # other package lists: --extra \"...\""
  } >"$LAB_STATE/nodes/env.sh"
}

lab_down_nodes() { "$LAB_DIR/nodes/machine.sh" down-all; }

# ---------------------------------------------------------------- checks (check.sh)
# shellcheck disable=SC2016  # $1 is expanded by the inner bash
lab_check_nodes() {
  lab_check "base rootfs $LAB_NODES_BASE" test -x "$LAB_NODES_BASE/lib/systemd/systemd"
  lab_check "machine.sh list (machines of the library)" bash -c '"$1" list; "$1" net-list' _ "$LAB_MACHINE"
}
