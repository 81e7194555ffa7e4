#!/usr/bin/env bash
# tests/lab/down.sh [--purge] [COMPONENT...] - stop the lab components that up.sh started
# (default: all of them), by the recorded PIDs (whole process groups; never by process
# name) and pg_ctl for PostgreSQL.
#   --purge   also delete $LAB_STATE (database cluster, s3s-fs data, logs; with
#             COMPONENTs only their $LAB_STATE/<component>) and openstack's tmpfs data.
#             The install cache ($LAB_CACHE: venvs, s3s-fs binary) is always kept.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LAB_PURGE=0   # read by lab_down_* of components with data outside $LAB_STATE (openstack)
declare -A only=()
for a in "$@"; do
  case "$a" in
    --purge) LAB_PURGE=1 ;;
    -*) echo "usage: $0 [--purge] [COMPONENT...]" >&2; exit 2 ;;
    *) lab_component "$a"; only[$a]=1 ;;   # lab_component rejects unknown names
  esac
done

# reverse start order: eo (uses moto) before s3. Best effort: one failure does not
# keep the other components running, but it does make the exit status non-zero.
rc=0
for ((i = ${#LAB_COMPONENTS[@]} - 1; i >= 0; i--)); do
  c=${LAB_COMPONENTS[i]}
  ((${#only[@]} == 0)) || [[ -n "${only[$c]:-}" ]] || continue
  [[ -d "$LAB_STATE/$c" ]] || continue
  lab_component "$c"
  if "lab_down_$c"; then
    rm -f "$LAB_STATE/$c/env.sh"
    if ((LAB_PURGE && ${#only[@]})); then rm -rf "${LAB_STATE:?}/$c"; fi
  else
    lab_log "WARNING: could not stop component $c cleanly"; rc=1
  fi
done

if ((LAB_PURGE)) && ((${#only[@]} == 0)); then
  rm -rf "$LAB_STATE"
  lab_log "purged $LAB_STATE (the cache $LAB_CACHE is kept)"
elif [[ -d "$LAB_STATE" ]]; then
  lab_write_env_all
fi
exit "$rc"
