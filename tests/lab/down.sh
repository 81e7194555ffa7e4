#!/usr/bin/env bash
# tests/lab/down.sh [--purge] - stop every lab component that up.sh started, by the
# recorded PIDs (whole process groups; never by process name) and pg_ctl for PostgreSQL.
#   --purge   also delete $LAB_STATE (database cluster, s3s-fs data, logs).
#             The install cache ($LAB_CACHE: venvs, s3s-fs binary) is always kept.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

purge=0
case "${1:-}" in
  "") ;;
  --purge) purge=1 ;;
  *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
esac

# reverse start order: eo (uses moto) before s3. Best effort: one failure does not
# keep the other components running, but it does make the exit status non-zero.
rc=0
for ((i = ${#LAB_COMPONENTS[@]} - 1; i >= 0; i--)); do
  c=${LAB_COMPONENTS[i]}
  [[ -d "$LAB_STATE/$c" ]] || continue
  lab_component "$c"
  if "lab_down_$c"; then
    rm -f "$LAB_STATE/$c/env.sh"
  else
    lab_log "WARNING: could not stop component $c cleanly"; rc=1
  fi
done

if ((purge)); then
  rm -rf "$LAB_STATE"
  lab_log "purged $LAB_STATE (the cache $LAB_CACHE is kept)"
elif [[ -d "$LAB_STATE" ]]; then
  lab_write_env_all
fi
exit "$rc"
