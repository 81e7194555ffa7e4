#!/usr/bin/env bash
# tests/lab/nodes/selftest.sh [N] - self-test of machine.sh (needs root; N machines, default 2):
#   network up; N machines prepared (a test key written into their root, as a caller
#   does) and booted in parallel; SSH with StrictHostKeyChecking against the host keys from
#   `known-hosts`; PID 1 is systemd, distinct machine-ids; machine-to-machine ping and
#   SSH port; exec; status/list; reboot of the first machine (back with the same address,
#   disk kept); stop + boot of the last (disk kept); power cut (kill) + boot; memory per
#   machine; delete all + net-down, then checks that no mount, netns, veth, cgroup or
#   process of theirs remains. Exit 0 = all passed.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$HERE/../lib.sh"
M="$HERE/machine.sh"
N=${1:-2}
NET=selftest CIDR=10.234.0.0/24 GW=10.234.0.1   # not 10.239.0.0/24: the registry address
T="$LAB_STATE/nodes/selftest"
names=(); for i in $(seq 1 "$N"); do names+=("st-$i"); done
ip_of() { echo "10.234.0.$((10 + ${1#st-}))"; }

pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
cleanup() {
  for n in "${names[@]}"; do "$M" delete "$n" --timeout 10 >/dev/null 2>&1 || true; done
  "$M" net-down "$NET" >/dev/null 2>&1 || true
}
trap cleanup EXIT
s() { local n=$1; shift; ssh -i "$T/id_ed25519" -o UserKnownHostsFile="$T/known_hosts" -o StrictHostKeyChecking=yes \
  -o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR "root@$(ip_of "$n")" "$@"; }

t_all=$EPOCHREALTIME
cleanup
lower=$("$HERE/base.sh")
rm -rf "$T"; mkdir -p "$T"
ssh-keygen -q -t ed25519 -N '' -C lab-selftest -f "$T/id_ed25519"
"$M" net-up "$NET" "$CIDR" "$GW"

# prepare, write the test key (the caller's job), boot all in parallel, wait for all
t0=$EPOCHREALTIME
for n in "${names[@]}"; do
  "$M" prepare "$n" --lower "$lower" --state "$T/$n" --net "$NET" --ip "$(ip_of "$n")/24"
  r=$("$M" root "$n")
  install -d -m 700 "$r/root/.ssh"; install -m 600 "$T/id_ed25519.pub" "$r/root/.ssh/authorized_keys"
done
for n in "${names[@]}"; do "$M" boot "$n" --wait none; done
"$M" wait "${names[@]}" --timeout 120
ok "$N machines prepared and booted in parallel: $(lab_since "$t0") s"
for n in "${names[@]}"; do "$M" known-hosts "$n"; done >"$T/known_hosts"

for n in "${names[@]}"; do
  # shellcheck disable=SC2016  # expanded in the machine
  check "$n: ssh (strict host key checking): PID 1 systemd, hostname $n" \
    test "$(s "$n" 'echo $(cat /proc/1/comm) $(hostname)')" = "systemd $n"
  check "$n: systemctl is-system-running = running" test "$(s "$n" systemctl is-system-running)" = running
  check "$n: status = running $(ip_of "$n")/24" test "$("$M" status "$n")" = "running $(ip_of "$n")/24"
  check "$n: exec (nsenter) sees the same machine" test "$("$M" exec "$n" cat /etc/hostname)" = "$n"
done
ids=$(for n in "${names[@]}"; do s "$n" cat /etc/machine-id; done | sort -u | wc -l)
check "machine-ids are distinct" test "$ids" = "$N"
if ((N >= 2)); then
  check "st-1 -> st-2: ping + tcp/22" s st-1 "ping -c1 -W2 $(ip_of st-2) >/dev/null && timeout 3 bash -c 'exec 3<>/dev/tcp/$(ip_of st-2)/22; head -c 7 <&3' | grep -q SSH-2.0"
fi
check "no default route in a machine without --gw" test -z "$("$M" exec st-1 ip -4 route show default)"
check "list shows all machines" test "$("$M" list | grep -c '^st-[0-9]* running ')" = "$N"
check "status --json" bash -c "'$M' status st-1 --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"state\"]==\"running\" and d[\"ips\"]==[\"$(ip_of st-1)/24\"]'"

# reboot: back with the same address and disk
s st-1 'echo kept >/root/marker'
t0=$EPOCHREALTIME
"$M" reboot st-1 --timeout 120
check "st-1 rebooted (boot #2), ssh works again: $(lab_since "$t0") s" \
  test "$(s st-1 'cat /root/marker; cat /proc/1/comm')" = $'kept\nsystemd'
check "st-1 boot count is 2" test "$("$M" status st-1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["boots"])')" = 2

# stop + boot: clean poweroff, disk kept
last=${names[-1]}
s "$last" 'echo kept >/root/marker2'
t0=$EPOCHREALTIME
"$M" stop "$last"
check "$last stopped cleanly in $(lab_since "$t0") s, status stopped" test "$("$M" status "$last" | cut -d' ' -f1)" = stopped
check "$last: no process left after stop" test -z "$(find /sys/fs/cgroup/systemd/lab-nodes/"$last" -name cgroup.procs -exec cat {} + 2>/dev/null)"
"$M" boot "$last" --timeout 120
check "$last boots again with its disk" test "$(s "$last" cat /root/marker2)" = kept

# power cut + boot
"$M" kill "$last"
check "$last: power cut, status stopped" test "$("$M" status "$last" | cut -d' ' -f1)" = stopped
"$M" boot "$last" --wait ssh --timeout 120
check "$last boots after the power cut (ssh answers)" s "$last" true

echo "--- memory per machine"
for n in "${names[@]}"; do "$M" stats "$n"; done

# delete and check that nothing remains
t0=$EPOCHREALTIME
for n in "${names[@]}"; do "$M" delete "$n"; done
"$M" net-down "$NET"
echo "--- deleted in $(lab_since "$t0") s"
check "no mount below $T" test -z "$(awk -v t="$T" 'index($2, t) == 1' /proc/mounts)"
check "no netns labm-st-*/labn-$NET" test -z "$(compgen -G "/run/netns/labm-st-*"; compgen -G "/run/netns/labn-$NET")"
check "no host veth labn-$NET" bash -c "! ip link show labn-$NET >/dev/null 2>&1"
check "no cgroup lab-nodes/st-*" test -z "$(ls -d /sys/fs/cgroup/*/lab-nodes/st-* 2>/dev/null || true)"
check "no nspawn process of st-* left" \
  bash -c '! grep -l -a -E -- "--machine=st-[0-9]+" /proc/[0-9]*/cmdline 2>/dev/null | grep -q .'
check "no registry entry left" test -z "$(compgen -G "$LAB_STATE/nodes/machines/st-*")"
rm -rf "$T"
echo "$pass passed, $fail failed, $(lab_since "$t_all") s"
((fail == 0))
