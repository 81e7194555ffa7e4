#!/usr/bin/env bash
# Benchmark: `provisioner workload convert` (Sentinel-2 EOPF Zarr v2 -> "S2-optimized"
# GeoZarr, Zarr v3) next to the reference Python converter eopf-geozarr and the codec floor
# (`provisioner workload floor`: decode every source chunk + encode every output chunk),
# in the same run, on full-size synthetic L2A products of each source chunking.
#
#   bash tests/bench/geozarr.sh
#   env: WORK=/var/tmp/provisioner-bench  work dir (products are kept and reused)
#        CHUNKINGS="small real"           synthetic source chunkings (synth --chunking)
#        ROUNDS=1                         runs of ours (and of the floor); best and median
#        REF=1                            0 = skip the reference
#        REF_DASK=0                       1 = also run the reference with --dask-cluster
#        OURS=1                           0 = skip ours and the floor (no cargo build)
#        SOURCE=/path/<ID>.zarr           benchmark this product instead of synthetic ones
#        KEEP_OUTPUT=0                    1 = keep the converted stores under $WORK
#        PROVISIONER_BIN=path             use this binary instead of cargo build --release
# Prints one table per chunking with PASS/MISS per target. Exits 0 whatever the figures
# (a benchmark, not a test); non-zero only when a converter run itself failed.
#
# ---- The reference (eopf-geozarr 0.8.0, the newest release that installs on CPython 3.11;
#      venv from tests/bench/reference-venv.sh, pinned by requirements-eopf-geozarr.txt) ----
# CLI (console script `eopf-geozarr`, same as `python -m eopf_geozarr`):
#   eopf-geozarr convert-s2-optimized INPUT OUTPUT [--spatial-chunk N (default 256)]
#     [--enable-sharding (default off)] [--compression-level 1-9 (default 3; the library
#     hard-codes blosc zstd clevel 3 anyway)] [--skip-validation] [--verbose]
#     [--keep-scale-offset] [--dask-cluster]
# Production settings (data-pipeline convert_v1_s2.py: spatial_chunk 256, sharding on, level 3):
#   eopf-geozarr convert-s2-optimized SRC OUT --spatial-chunk 256 --enable-sharding --compression-level 3
# - It calls eopf_geozarr.s2_optimization.s2_converter.convert_s2_optimized, the V1 path.
# - It opens the source with xr.open_datatree(engine="zarr", chunks="auto") (the pipeline
#   script uses chunks={} = native chunks); every group is rechunked to its shard shape
#   before writing, i.e. one dask chunk per whole r10m band (10980² float32, 482 MB).
# - Scheduler: WITHOUT --dask-cluster no dask.distributed client exists, so every group's
#   to_zarr(compute=False).persist() runs on dask's default threaded scheduler, in ONE
#   process (it then logs "Could not use distributed features: No clients found", harmless).
#   That is the default run here, and /usr/bin/time's %M (peak RSS of the largest single
#   process) is then the whole converter's peak.
# - --dask-cluster starts dask.distributed Client(n_workers=3, memory_limit="8GB"): a
#   LocalCluster with 3 worker PROCESSES. %M would only see the biggest one, so with
#   REF_DASK=1 this script samples the summed RSS of the whole process tree every 0.2 s.
# - `eopf-geozarr --version` prints a hard-coded "0.1.0"; the version is read from the
#   package metadata instead.
# - Differences of 0.8.0 from today's production V1 layout: no b08 injected into r20m/r60m;
#   the l2a_quicklook groups are copied; the reflectance group carries an OGC
#   tile_matrix_set/tile_matrix_limits next to the multiscales layout; band attrs are not
#   sanitised (dtype, fill_value, valid_min/max stay); no root spatial:bbox.
#
# ---- What this script assumes about ours (src/cli/workload) ----
#   provisioner workload synth --out DIR/<ID>.zarr --size full --chunking small|real -o json
#     writes .zmetadata last: a product with .zmetadata is complete and is reused;
#   provisioner workload convert --source P --dest O --collection bench
#     writes O/bench/<ID>.zarr, <ID> = basename of P without .zarr (the flag is --dest
#     because --output/-o is the global human|json switch);
#   provisioner workload floor --source P --converted O/bench/<ID>.zarr -o json
#     prints {"decode_s":..,"encode_s":..,"floor_s":..} (floor_s = decode_s + encode_s).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source-path=SCRIPTDIR source=lib.sh
source tests/bench/lib.sh   # bin, need_bin, timed, calc, ...; tests/lab/lib.sh: lab_apt, lab_log, lab_die, LAB_CACHE

WORK=${WORK:-/var/tmp/provisioner-bench}
CHUNKINGS=${CHUNKINGS:-"small real"}
ROUNDS=${ROUNDS:-1}
REF=${REF:-1}
REF_DASK=${REF_DASK:-0}
OURS=${OURS:-1}
SOURCE=${SOURCE:-}
KEEP_OUTPUT=${KEEP_OUTPUT:-0}
ID=${ID:-S2A_MSIL2A_20250704T100031_N0511_R122_T32TQM_20250704T120000}
REF_ARGS=(--spatial-chunk 256 --enable-sharding --compression-level 3)
# targets
T_SPEEDUP=20 T_FLOOR=1.5 T_RSS_MIB=1536
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || lab_die "ROUNDS must be a positive integer"

[[ -x /usr/bin/time ]] || lab_apt time
mkdir -p "$WORK"
failed=0

# ---------------------------------------------------------------- reference venv + versions
if ((REF)); then
  ref_py=$(bash tests/bench/reference-venv.sh | tail -n 1)
  ref_ver=$("$ref_py" -c 'import importlib.metadata as m; print(" ".join(f"{d} {m.version(d)}" for d in ("eopf-geozarr", "zarr", "xarray", "dask", "numpy")))')
fi
if ((OURS)) || [[ -z "$SOURCE" ]]; then need_bin; fi
ours_ver="provisioner $(git describe --tags --always --dirty 2>/dev/null || echo unknown)"

# ---------------------------------------------------------------- one product
# bench_one LABEL PRODUCT_PATH : run the converters on it and print its table
bench_one() {
  local label=$1 src=$2 id dir i
  id=$(basename "${src%/}" .zarr)
  dir="$WORK/run-$label"
  rm -rf "$dir" && mkdir -p "$dir"
  local in_b in_n ref_w=- ref_r=- ref_b=- ref_n=- dask_w=- dask_r=-
  local ours_best=- ours_med=- ours_r=- ours_b=- ours_n=- floor=- dec=- enc=-
  in_b=$(bytes_of "$src") in_n=$(objects_of "$src")

  if ((REF)); then
    lab_log "[$label] reference: eopf-geozarr convert-s2-optimized ${REF_ARGS[*]} (threaded scheduler)"
    if timed "$dir/ref.log" "$dir/ref.log" "$ref_py" -m eopf_geozarr convert-s2-optimized "$src" "$dir/ref/$id.zarr" "${REF_ARGS[@]}"; then
      ref_w=$T_WALL ref_r=$(mib "$T_RSS")
      ref_b=$(bytes_of "$dir/ref/$id.zarr") ref_n=$(objects_of "$dir/ref/$id.zarr")
    else
      failed=1; ref_w=FAILED; lab_log "[$label] reference failed (log: $dir/ref.log)"; tail -n 15 "$dir/ref.log" >&2
    fi
    ((KEEP_OUTPUT)) || rm -rf "$dir/ref"
    if ((REF_DASK)); then
      lab_log "[$label] reference with --dask-cluster (3 worker processes; summed RSS sampled)"
      if timed_tree "$dir/ref-dask.log" "$ref_py" -m eopf_geozarr convert-s2-optimized "$src" "$dir/ref-dask/$id.zarr" "${REF_ARGS[@]}" --dask-cluster; then
        dask_w=$T_WALL dask_r=$(mib "$T_RSS")
      else
        failed=1; dask_w=FAILED; lab_log "[$label] reference --dask-cluster failed (log: $dir/ref-dask.log)"
      fi
      rm -rf "$dir/ref-dask"
    fi
  fi

  if ((OURS)); then
    local walls=() rss_max=0 ok=1 fl=() f conv="$dir/ours/bench/$id.zarr"
    for ((i = 1; i <= ROUNDS; i++)); do
      rm -rf "$dir/ours"
      lab_log "[$label] ours: workload convert (round $i/$ROUNDS)"
      if ! timed "$dir/ours-$i.log" "$dir/ours-$i.log" "$bin" workload convert --source "$src" --dest "$dir/ours" --collection bench; then
        ok=0; failed=1; lab_log "[$label] ours failed (log: $dir/ours-$i.log)"; tail -n 15 "$dir/ours-$i.log" >&2; break
      fi
      walls+=("$T_WALL")
      ((T_RSS > rss_max)) && rss_max=$T_RSS
    done
    if ((ok)); then
      ours_best=$(printf '%s\n' "${walls[@]}" | sort -g | head -n 1)
      ours_med=$(printf '%s\n' "${walls[@]}" | median)
      ours_r=$(mib "$rss_max") ours_b=$(bytes_of "$conv") ours_n=$(objects_of "$conv")
      for ((i = 1; i <= ROUNDS; i++)); do
        lab_log "[$label] codec floor (round $i/$ROUNDS)"
        if f=$("$bin" workload floor --source "$src" --converted "$conv" -o json 2>"$dir/floor.err"); then
          fl+=("$(json_fields floor_s decode_s encode_s <<<"$f")")
        else
          failed=1; lab_log "[$label] floor failed: $(tail -n 3 "$dir/floor.err")"; break
        fi
      done
      if ((${#fl[@]})); then   # best round by floor_s
        read -r floor dec enc < <(printf '%s\n' "${fl[@]}" | sort -g -k1,1 | head -n 1)
      fi
    else
      ours_best=FAILED
    fi
    ((KEEP_OUTPUT)) || rm -rf "$dir/ours"
  fi

  # ---- table
  local num='^[0-9.]+$'
  printf '\n== %s: %s\n' "$label" "$src"
  printf '   input %s MB in %s objects\n' "$(mb "$in_b")" "$in_n"
  printf '   %-34s %10s %10s %14s %9s\n' "" "wall s" "peak MiB" "output MB" objects
  [[ $REF == 1 ]] && printf '   %-34s %10s %10s %14s %9s\n' "reference (threaded scheduler)" "$ref_w" "$ref_r" \
    "$([[ $ref_b =~ $num ]] && mb "$ref_b" || echo -)" "$ref_n"
  [[ $REF_DASK == 1 && $REF == 1 ]] && printf '   %-34s %10s %10s %14s %9s\n' "reference --dask-cluster (sum RSS)" "$dask_w" "$dask_r" - -
  if [[ $OURS == 1 ]]; then
    printf '   %-34s %10s %10s %14s %9s\n' "ours, best of $ROUNDS" "$ours_best" "$ours_r" \
      "$([[ $ours_b =~ $num ]] && mb "$ours_b" || echo -)" "$ours_n"
    ((ROUNDS > 1)) && printf '   %-34s %10s\n' "ours, median" "$ours_med"
    printf '   %-34s %10s   (decode %s + encode %s)\n' "codec floor, best of $ROUNDS" "$floor" "$dec" "$enc"
  fi
  printf '   targets:\n'
  if [[ $ref_w =~ $num && $ours_best =~ $num ]]; then
    printf '     speed-up ref/ours  %8sx   target >= %sx      %s\n' "$(calc "$ref_w / $ours_best" 1)" "$T_SPEEDUP" \
      "$(verdict "$ref_w / $ours_best >= $T_SPEEDUP")"
  else
    printf '     speed-up ref/ours  %8s    target >= %sx      n/a\n' - "$T_SPEEDUP"
  fi
  if [[ $floor =~ $num && $ours_best =~ $num ]] && awk "BEGIN { exit !($floor > 0) }"; then
    printf '     ours/floor         %8sx   target <= %sx     %s\n' "$(calc "$ours_best / $floor")" "$T_FLOOR" \
      "$(verdict "$ours_best / $floor <= $T_FLOOR")"
  else
    printf '     ours/floor         %8s    target <= %sx     n/a\n' - "$T_FLOOR"
  fi
  if [[ $ours_r =~ $num ]]; then
    printf '     ours peak RSS      %5s MiB   target <= %s MiB  %s\n' "$ours_r" "$T_RSS_MIB" "$(verdict "$ours_r <= $T_RSS_MIB")"
  else
    printf '     ours peak RSS      %8s    target <= %s MiB  n/a\n' - "$T_RSS_MIB"
  fi
  printf '   logs: %s\n' "$dir"
}

# ---------------------------------------------------------------- run
printf 'GeoZarr conversion benchmark, %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
printf '  ours:      %s\n' "$ours_ver"
((REF)) && printf '  reference: %s (python -m eopf_geozarr convert-s2-optimized %s)\n' "$ref_ver" "${REF_ARGS[*]}"
printf '  host:      %s cores, %s MiB RAM, work dir %s\n' "$(nproc)" "$(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo)" "$WORK"

if [[ -n "$SOURCE" ]]; then
  [[ -e "$SOURCE/.zmetadata" ]] || lab_die "SOURCE=$SOURCE has no .zmetadata"
  bench_one given "$SOURCE"
else
  for c in $CHUNKINGS; do
    p="$WORK/src-$c/$ID.zarr"
    synth_once "[$c] " "$p" --size full --chunking "$c"
    bench_one "$c" "$p"
  done
fi
((failed == 0)) || { echo "some converter runs FAILED (see the logs above)"; exit 1; }
