# shellcheck shell=bash source-path=SCRIPTDIR
# tests/bench/lib.sh - helpers shared by the conversion benchmarks (tests/bench/geozarr.sh,
# tests/bench/geozarr_s1.sh), sourced after their `cd` to the repository root. Sources
# tests/lab/lib.sh (lab_log, lab_die, lab_since, lab_apt, LAB_CACHE).
# shellcheck source=../lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lab/lib.sh"

# the provisioner binary; need_bin builds it (once) unless PROVISIONER_BIN names one
bin=${PROVISIONER_BIN:-target/release/provisioner}
need_bin() {
  [[ -z "${built:-}" && -z "${PROVISIONER_BIN:-}" ]] || return 0
  lab_log "cargo build --release"
  cargo build --release --quiet
  built=1
}

calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }   # calc EXPR [DECIMALS (2)]
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
mib() { calc "$1 / 1024" 0; }                  # KiB -> MiB
mb() { calc "$1 / 1000000" 1; }                # bytes -> MB
bytes_of() { du -sb "$1" | cut -f1; }
objects_of() { find "$1" -type f | wc -l; }
# json_fields KEY... < JSON : the values of KEYs on one line ("-" for a missing key)
json_fields() { python3 -c 'import json,sys; d = json.load(sys.stdin); print(*(d.get(k, "-") for k in sys.argv[1:]))' "$@"; }
verdict() { if awk "BEGIN { exit !($1) }"; then echo PASS; else echo MISS; fi; }   # verdict AWK_CONDITION

# timed OUT LOG CMD... : run CMD with stdout to OUT and stderr to LOG (both to LOG when OUT is
# LOG); sets T_WALL (s), T_RSS (KiB, peak of the largest single process) and T_NOTE (e.g.
# "Command terminated by signal 9"). Returns CMD's exit status. Needs /usr/bin/time.
# shellcheck disable=SC2034  # T_WALL, T_RSS, T_NOTE are for the caller
timed() {
  local out=$1 logf=$2 tf rc=0; shift 2
  tf=$(mktemp)
  if [[ "$out" == "$logf" ]]; then
    /usr/bin/time -f '%e %M' -o "$tf" "$@" >"$logf" 2>&1 || rc=$?
  else
    /usr/bin/time -f '%e %M' -o "$tf" "$@" >"$out" 2>"$logf" || rc=$?
  fi
  read -r T_WALL T_RSS < <(tail -n 1 "$tf")
  T_NOTE=$(grep -m 1 -i 'terminated' "$tf" || true)
  rm -f "$tf"
  return "$rc"
}

# timed_tree LOG CMD... : run CMD with stdout+stderr to LOG; sets T_WALL (s) and T_RSS (KiB,
# the peak of the summed RSS of CMD and all its descendants, sampled every 0.2 s), for
# multi-process runs (dask LocalCluster). Returns CMD's exit status.
# shellcheck disable=SC2034  # T_WALL, T_RSS, T_NOTE are for the caller
timed_tree() {
  local logf=$1 pid rc=0 t0 peak=0 cur; shift
  t0=$EPOCHREALTIME
  "$@" >"$logf" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    cur=$(ps -e -o pid=,ppid=,rss= | awk -v root="$pid" '
      { parent[$1] = $2; rss[$1] = $3 }
      END { for (p in parent) { q = p; while (q != "" && q != 0 && q != root) q = parent[q]
                                if (q == root) s += rss[p] } print s + 0 }')
    ((cur > peak)) && peak=$cur
    sleep 0.2
  done
  wait "$pid" || rc=$?
  T_WALL=$(lab_since "$t0") T_RSS=$peak
  return "$rc"
}

# synth_once TAG PRODUCT SYNTH_ARGS... : `provisioner workload synth --out PRODUCT SYNTH_ARGS...`
# (its JSON report to synth.json next to PRODUCT) unless PRODUCT/.zmetadata exists already
# (synth writes it last: the product is complete and is reused). TAG prefixes the log lines.
synth_once() {
  local tag=$1 p=$2 t0; shift 2
  if [[ -f "$p/.zmetadata" ]]; then
    lab_log "${tag}reusing $p"
    return 0
  fi
  rm -rf "$p"
  mkdir -p "$(dirname "$p")"
  lab_log "${tag}provisioner workload synth $* -> $p"
  t0=$EPOCHREALTIME
  "$bin" workload synth --out "$p" "$@" -o json >"$(dirname "$p")/synth.json" ||
    lab_die "workload synth $* failed"
  [[ -f "$p/.zmetadata" ]] || lab_die "workload synth wrote no $p/.zmetadata"
  lab_log "${tag}synthesised in $(lab_since "$t0") s"
}

