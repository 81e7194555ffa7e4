#!/usr/bin/env bash
# tests/bench/reference-venv.sh - the Python venv of the reference GeoZarr converter
# (eopf-geozarr, used by tests/bench/geozarr.sh), cached at
#   $LAB_CACHE/venv/eopf-geozarr-<version>/      (LAB_CACHE default /var/cache/provisioner-lab)
# Prints the venv's python path as the last line on stdout; progress goes to stderr,
# pip output to $LAB_CACHE/log/pip-eopf-geozarr-<version>.log.
#
# Idempotent:
#   - reuses the venv when it exists, carries our completion stamp and imports the converter;
#   - otherwise builds a fresh one in a temporary directory next to it and renames it into
#     place only when the install and the import check succeeded, so a half-built venv is
#     never reused (the console-script shebangs and activate scripts are rewritten to the
#     final path after the rename);
#   - installs from the lock tests/bench/requirements-eopf-geozarr.txt when it exists (a
#     `pip freeze` of the first successful build, for reproducible figures) and falls back
#     to the unpinned requirement set when installing the lock fails;
#   - (re)writes the lock after an unpinned install; a changed lock makes the venv rebuild.
# Why these pins: eopf-geozarr 0.8.0 is the newest release that installs on CPython 3.11
# (0.9+ need Python >= 3.12), and pip only resolves it with the lower bounds below.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

DIST=eopf-geozarr
VERSION=${EOPF_GEOZARR_VERSION:-0.8.0}
REQS=("$DIST==$VERSION" "dask[array,distributed]>=2025.9" "numpy>=2.3.1" "xarray>=2025.7.1" "zarr>=3.1.1")
LAB_CACHE="${LAB_CACHE:-/var/cache/provisioner-lab}"
PYTHON="${LAB_PYTHON:-python3}"
LOCK="$PWD/tests/bench/requirements-eopf-geozarr.txt"
VENV="$LAB_CACHE/venv/$DIST-$VERSION"
STAMP=.bench-complete          # inside the venv: "lock <sha256>" of the lock it matches
LOGF="$LAB_CACHE/log/pip-$DIST-$VERSION.log"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
LC_NUMERIC=C

log() { printf '[reference-venv %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  printf '[reference-venv] ERROR: %s\n' "$1" >&2
  [[ -f "$LOGF" ]] && { printf -- '----- last 30 lines of %s -----\n' "$LOGF" >&2; tail -n 30 "$LOGF" >&2; }
  exit 1
}

# the venv at $1 has the converter (the V1 entry point and the CLI) at the right version
imports_ok() {
  "$1/bin/python" - "$VERSION" >/dev/null 2>&1 <<'EOF'
import sys, importlib.metadata as md
assert md.version("eopf-geozarr") == sys.argv[1], md.version("eopf-geozarr")
from eopf_geozarr.s2_optimization.s2_converter import convert_s2_optimized  # noqa: F401
import eopf_geozarr.cli  # noqa: F401
EOF
}
lock_sum() { if [[ -f "$LOCK" ]]; then sha256sum "$LOCK" | cut -d' ' -f1; else echo none; fi; }
# reusable: complete (stamp), built from the current lock (if there is one), and importable
usable() {
  [[ -f "$VENV/$STAMP" ]] || return 1
  [[ ! -f "$LOCK" || "$(<"$VENV/$STAMP")" == "lock $(lock_sum)" ]] || return 1
  imports_ok "$VENV"
}

if usable; then
  log "reusing $VENV"
  echo "$VENV/bin/python"
  exit 0
fi

# Same cache lock as tests/lab/lib.sh, so concurrent lab/bench runs never race on the cache.
mkdir -p "$LAB_CACHE/venv" "$LAB_CACHE/log"
exec 9>"$LAB_CACHE/.lock"
flock -w 1800 9 || die "timed out waiting for the lock $LAB_CACHE/.lock"
if usable; then   # built by another run while we waited
  log "reusing $VENV"
  echo "$VENV/bin/python"
  exit 0
fi

t0=$EPOCHREALTIME
tmp=$(mktemp -d "$LAB_CACHE/venv/.$DIST-$VERSION.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
: >"$LOGF"

new_venv() {
  rm -rf "$tmp" && mkdir -p "$tmp"
  "$PYTHON" -m venv "$tmp" >>"$LOGF" 2>&1 || die "$PYTHON -m venv failed"
}

new_venv
pinned=0
if [[ -f "$LOCK" ]]; then
  log "pip install -r ${LOCK#"$PWD"/} into a new venv (log: $LOGF)"
  if "$tmp/bin/pip" install -r "$LOCK" >>"$LOGF" 2>&1 && imports_ok "$tmp"; then
    pinned=1
  else
    log "installing the lock failed; falling back to the unpinned requirement set"
    new_venv
  fi
fi
if ((!pinned)); then
  log "pip install ${REQS[*]} (takes 2-5 min; log: $LOGF)"
  "$tmp/bin/pip" install "${REQS[@]}" >>"$LOGF" 2>&1 || die "pip install failed"
  imports_ok "$tmp" || die "the new venv cannot import eopf_geozarr $VERSION"
  {
    echo "# pip freeze of the reference venv built by tests/bench/reference-venv.sh"
    echo "# ($("$tmp/bin/python" -V 2>&1), $(date -u +%Y-%m-%d)); delete this file to re-resolve."
    echo "# Unpinned set: ${REQS[*]}"
    "$tmp/bin/pip" freeze --exclude-editable
  } >"$LOCK.tmp"
  mv "$LOCK.tmp" "$LOCK"
  log "wrote the lock ${LOCK#"$PWD"/} ($(grep -c '==' "$LOCK") packages)"
fi
echo "lock $(lock_sum)" >"$tmp/$STAMP"

# Move into place. A venv is not relocatable as such: python itself finds its prefix from
# pyvenv.cfg next to it, but console scripts and activate* hold the absolute build path.
rm -rf "$VENV"
mv "$tmp" "$VENV"
grep -rlI --null -F "$tmp" "$VENV/bin" | xargs -0 -r sed -i "s|$tmp|$VENV|g"
if ! imports_ok "$VENV" || ! "$VENV/bin/eopf-geozarr" --help >/dev/null 2>&1; then
  rm -rf "$VENV"
  die "the venv does not work after moving it to $VENV"
fi
log "venv $DIST-$VERSION ready in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s ($( ((pinned)) && echo from the lock || echo unpinned))"
echo "$VENV/bin/python"
