#!/usr/bin/env bash
# tests/lab/nodes/launch.sh DIR "CGROUP_DIRS" -- systemd-nspawn ARGS...   (internal: machine.sh boot)
#
# The supervisor of one machine, standing in for systemd-nspawn@.service on a host without
# systemd:
#  * joins the machine's own cgroups first (nspawn --keep-unit creates its payload/ and
#    supervisor/ cgroups inside the cgroup it starts in; machines must not share one);
#  * records "PID STARTTIME" of itself in DIR/run/launcher.pid and of nspawn in
#    DIR/run/nspawn.pid, and counts boots in DIR/run/boots;
#  * restarts nspawn when it exits with 133 (the machine ran `reboot`), as the unit's
#    RestartForceExitStatus=133 does: same disk, same addresses (a new network namespace
#    first when DIR/fresh-net-on-reboot exists: machine.sh --fresh-net-on-reboot);
#  * forwards SIGTERM to nspawn (= clean poweroff of the machine) and then exits;
#  * after every exit of nspawn, SIGKILLs whatever is left in the machine's cgroups (a
#    SIGKILLed nspawn leaves the machine's systemd running: power-cut semantics).
d=$1 cgs=$2; shift 2; [[ "${1:-}" == -- ]] && shift
for cg in $cgs; do echo $$ >"$cg/cgroup.procs"; done

# shellcheck disable=SC2086  # the fields of /proc/PID/stat after "(comm) "
start_of() { local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; s=${s##*) }; set -- $s; echo "${20}"; }
echo "$$ $(start_of $$)" >"$d/run/launcher.pid.tmp" && mv "$d/run/launcher.pid.tmp" "$d/run/launcher.pid"

payload_pids() {
  local cg
  for cg in $cgs; do
    [[ -d "$cg/payload" ]] && find "$cg/payload" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -un | xargs
}
kill_payload() {
  local pids try
  for try in $(seq 30); do
    pids=$(payload_pids)
    [[ -z "$pids" ]] && return 0
    ((try > 1)) || echo "=== lab launcher: killing leftover processes of the machine: $pids ==="
    # shellcheck disable=SC2086  # a list of PIDs
    kill -KILL $pids 2>/dev/null
    sleep 0.1
  done
}

stop=0 child=
trap 'stop=1; [[ -n "$child" ]] && kill -TERM "$child" 2>/dev/null' TERM INT
boots=$(cat "$d/run/boots" 2>/dev/null || echo 0)
while :; do
  kill_payload
  boots=$((boots + 1))
  echo "=== lab launcher: boot #$boots at $(date -Is) ==="
  "$@" </dev/null &
  child=$!
  echo "$child $(start_of "$child")" >"$d/run/nspawn.pid.tmp" && mv "$d/run/nspawn.pid.tmp" "$d/run/nspawn.pid"
  echo "$boots" >"$d/run/boots"
  # `wait` returns early when a trapped signal arrives: wait until nspawn is really gone
  while :; do wait "$child"; rc=$?; kill -0 "$child" 2>/dev/null || break; done
  echo "=== lab launcher: systemd-nspawn exited with $rc at $(date -Is) ==="
  kill_payload
  if [[ "$rc" == 133 && "$stop" == 0 ]]; then
    # machine.sh --fresh-net-on-reboot: the new boot gets a new network namespace
    if [[ -f "$d/fresh-net-on-reboot" ]]; then "$(dirname "$0")/machine.sh" _fresh-net "$d" || true; fi
    continue
  fi
  rm -f "$d/run/nspawn.pid"
  exit "$rc"
done
