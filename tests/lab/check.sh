#!/usr/bin/env bash
# tests/lab/check.sh [COMPONENT...] - quick smoke check of running lab components
# (default: every component that is up). Prints PASS/FAIL lines and "N passed, M failed";
# exits non-zero when anything failed.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pass=0 fail=0
# lab_check NAME CMD... : run CMD; PASS shows its last output line, FAIL its output tail
lab_check() {
  local name=$1 out; shift
  if out=$("$@" 2>&1); then
    pass=$((pass + 1)); printf 'PASS %s%s\n' "$name" "${out:+  ($(tail -n 1 <<<"$out"))}"
  else
    fail=$((fail + 1)); printf 'FAIL %s\n' "$name"; tail -n 15 <<<"$out" | sed 's/^/     /'
  fi
}

comps=("$@")
if ((${#comps[@]} == 0)); then
  for c in "${LAB_COMPONENTS[@]}"; do [[ -f "$LAB_STATE/$c/env.sh" ]] && comps+=("$c"); done
  ((${#comps[@]})) || lab_die "nothing is up in $LAB_STATE (run tests/lab/up.sh first)"
fi

# shellcheck disable=SC1091  # written at run time by up.sh
[[ -f "$LAB_STATE/env.sh" ]] && source "$LAB_STATE/env.sh"
for c in "${comps[@]}"; do
  lab_component "$c"
  if [[ -f "$LAB_STATE/$c/env.sh" ]]; then
    "lab_check_$c"
  else
    fail=$((fail + 1)); echo "FAIL $c is not up (no $LAB_STATE/$c/env.sh)"
  fi
done
echo "$pass passed, $fail failed"
((fail == 0))
