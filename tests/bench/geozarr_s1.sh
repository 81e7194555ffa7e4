#!/usr/bin/env bash
# Benchmark: `provisioner workload convert` on a Sentinel-1 IW GRD product (EOPF Zarr v2,
# VV + VH in radar geometry -> GCP-warped EPSG:4326 multiscale GeoZarr, Zarr v3) next to the
# reference Python converter eopf-geozarr and the codec floor (`provisioner workload floor`:
# decode every source chunk + encode every output chunk, same cores), in the same run, on a
# synthetic GRD product (full size: VV + VH each 16677 x 26064 u16 in 2048 x 4096 chunks).
#
#   bash tests/bench/geozarr_s1.sh
#   env: WORK=/var/tmp/provisioner-bench  work dir (the synthetic product is kept and reused)
#        SIZE=full                        full | small (1/10 per edge) | tiny: synth --size
#        ROUNDS=1                         runs of ours (and of the floor); best and median
#        REF=1                            0 = skip the reference (python; published: ~20 min at full size)
#        REF_PATCH=1                      0 = run the reference on the product as is (see below)
#        OURS=1                           0 = skip ours and the floor (no cargo build)
#        SOURCE=/path/<ID>.zarr           benchmark this product instead of a synthetic one
#        ID=S1A_IW_GRDH_1SDV_...          item id of the synthetic product
#        KEEP_OUTPUT=0                    1 = keep the converted stores under $WORK
#        PROVISIONER_BIN=path             use this binary instead of cargo build --release
# Prints one table with PASS/MISS per target and the ratios measured in this run. Exits 0
# whatever the figures (a benchmark, not a test); non-zero only when synthesising the product
# or one of OUR runs (convert, floor) failed. A failing reference is reported, not fatal.
#
# ---- The reference (eopf-geozarr 0.8.0, CPython 3.11 venv of tests/bench/reference-venv.sh) ----
# 0.8.0 converts S1 GRD only through the generic ("V0") path, not convert-s2-optimized:
#   eopf-geozarr convert SRC OUT --groups /measurements --gcp-group /conditions/gcp
#     --spatial-chunk 2048 --tile-width 512
# (the settings of the published S1 end-to-end run, data-pipeline docs/S1_E2E_TEST_RESULTS.md,
# Oct 2025; scripts/convert_v0.py later used spatial_chunk 4096 and passes no gcp group, which
# 0.8.0 rejects for S1: "Detected Sentinel-1 GRD product but GCP group not provided").
# - create_geozarr_dataset detects S1 from the ROOT attrs stac_discovery.properties.product:type
#   ("S01..."), expands the groups per polarisation child (/<pol>/measurements, exactly two
#   children asserted), takes the GCPs from the FIRST child's /conditions/gcp.
# - reproject_sentinel1_with_gcps: rasterio calculate_default_transform from the GCPs (EPSG:4326
#   grid), then every DATA VARIABLE of /<pol>/measurements is materialised (.values, the whole
#   16677 x 26064 u2 array) and warped bilinearly through an in-memory GTiff; nodata 65535.
#   Only 2-D (and 3-D) data variables are supported: 1-D ones raise
#   "ValueError: Unsupported data variable dimensionality: 1".
# - Native level to /<pol>/measurements/0, halving overviews /1, /2, ... (numpy block mean)
#   while min(w, h) >= 256; every other group copied; metadata consolidated.
# - Single process (no --dask-cluster), so /usr/bin/time's %M is the whole converter's peak.
#   Its structlog messages go to stdout (log: $WORK/run-s1-<size>/ref.log).
# - Input quirk handled here: in real EOPF GRD products `grd` (and the 2-D GCP arrays) carry the
#   CF attribute coordinates: "line pixel", so xarray opens measurements/line and /pixel as
#   coordinates. A product without it (our synth, at the time of writing) makes line/pixel 1-D
#   data variables and the reference fails with the error above. The reference is then run on
#   a hard-linked view of the product ($WORK/run-*/ref-src.zarr, no data copied) whose metadata
#   gets that attribute; the table says so. REF_PATCH=0 runs it on the product as is.
# - If the reference cannot run (venv, import, conversion error), the script prints why and, at
#   SIZE=full, compares against the published figure instead: ~20 min (1200 s) for VV + VH at
#   16677 x 26064 (Argo pod, S3 in/out, includes ~5 min of metadata groups): a rough figure only.
#
# ---- What this script assumes about ours (src/cli/workload) ----
#   provisioner workload synth --product s1-grd --size full|small|tiny --out DIR/<ID>.zarr -o json
#     writes .zmetadata last: a product with .zmetadata is complete and is reused;
#   provisioner workload convert --source P --dest O --collection bench -o json
#     writes O/bench/<ID>.zarr and prints a JSON report on stdout (seconds, objects, bytes,
#     source_chunks, source_chunk_reads, levels[{level, shape, ...}], ...), logs on stderr;
#   provisioner workload floor --source P --converted O/bench/<ID>.zarr -o json
#     prints {"decode_s":..,"encode_s":..,"floor_s":..,"source_chunks":..,"output_chunks":..}.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source-path=SCRIPTDIR source=lib.sh
source tests/bench/lib.sh   # bin, need_bin, timed, calc, ...; tests/lab/lib.sh: lab_apt, lab_log, lab_die, lab_since, LAB_CACHE

WORK=${WORK:-/var/tmp/provisioner-bench}
SIZE=${SIZE:-full}
ROUNDS=${ROUNDS:-1}
REF=${REF:-1}
REF_PATCH=${REF_PATCH:-1}
OURS=${OURS:-1}
SOURCE=${SOURCE:-}
KEEP_OUTPUT=${KEEP_OUTPUT:-0}
ID=${ID:-S1A_IW_GRDH_1SDV_20251008T052417_20251008T052442_061325_07A5C1_3F1B}
REF_ARGS=(--groups /measurements --gcp-group /conditions/gcp --spatial-chunk 2048 --tile-width 512)
# targets
T_FLOOR=1.5 T_RSS_MIB=1536
# published reference figure (docs/S1_E2E_TEST_RESULTS.md): VV + VH, 16677 x 26064, ~20 min
PUBLISHED_S=1200
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || lab_die "ROUNDS must be a positive integer"
[[ "$SIZE" =~ ^(full|small|tiny)$ ]] || lab_die "SIZE must be full, small or tiny"

[[ -x /usr/bin/time ]] || lab_apt time
mkdir -p "$WORK"
failed=0

# ---------------------------------------------------------------- helpers
num='^[0-9]+([.][0-9]+)?$'

# grd_summary PRODUCT : "<pols> x <h>x<w> <dtype> in <ch>x<cw> chunks (<n> chunks)" from .zmetadata
grd_summary() {
  python3 - "$1" <<'EOF'
import json, math, sys
meta = json.load(open(sys.argv[1] + "/.zmetadata"))["metadata"]
grd = [(k, v) for k, v in meta.items() if k.endswith("/measurements/grd/.zarray")]
if not grd:
    print("no */measurements/grd array"); sys.exit()
shapes = {tuple(v["shape"]) + tuple(v["chunks"]) + (v["dtype"],) for _, v in grd}
n = sum(math.ceil(v["shape"][0] / v["chunks"][0]) * math.ceil(v["shape"][1] / v["chunks"][1]) for _, v in grd)
h, w, ch, cw, dt = sorted(shapes)[0]
more = "" if len(shapes) == 1 else " (shapes differ per polarisation)"
print(f"{len(grd)} x {h}x{w} {dt} in {ch}x{cw} chunks ({n} chunks){more}")
EOF
}

# ours_summary REPORT.json : "<source_chunks> <source_chunk_reads> <h>x<w of the first level>
# <levels per polarisation>" from the JSON report of `workload convert`
ours_summary() {
  python3 - "$1" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
lv = r.get("levels", [])
pols = {l["level"].split("/")[0] for l in lv}
first = "x".join(map(str, lv[0]["shape"])) if lv else "-"
print(r.get("source_chunks", "-"), r.get("source_chunk_reads", "-"), first, len(lv) // max(len(pols), 1))
EOF
}

# ref_view SRC DST : DST = hard-linked copy of SRC whose 2-D arrays in */measurements and
# */conditions/gcp get the CF attribute coordinates "line pixel" (as in real EOPF GRD products)
# when the group has line and pixel arrays and the attribute is missing. Metadata files are
# rewritten as new files (never through a hard link). Prints the number of arrays patched.
ref_view() {
  rm -rf "$2"
  cp -al "$1" "$2"
  python3 - "$2" <<'EOF'
import json, os, sys
root = sys.argv[1]
zpath = os.path.join(root, ".zmetadata")
zm = json.load(open(zpath))
meta = zm["metadata"]

def write(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)  # new inode: the source product stays untouched

patched = 0
for key, attrs in meta.items():
    if not key.endswith("/.zattrs"):
        continue
    grp, _ = os.path.split(key[: -len("/.zattrs")])
    if not (grp.endswith("/measurements") or grp.endswith("/conditions/gcp")):
        continue
    if len(attrs.get("_ARRAY_DIMENSIONS", [])) != 2 or "coordinates" in attrs:
        continue
    if f"{grp}/line/.zarray" in meta and f"{grp}/pixel/.zarray" in meta:
        attrs["coordinates"] = "line pixel"
        write(os.path.join(root, key), attrs)
        patched += 1
if patched:
    write(zpath, zm)
print(patched)
EOF
}

# ---------------------------------------------------------------- reference venv + versions
ref_py='' ref_why='' ref_ver=''
if ((REF)); then
  if ! ref_py=$(bash tests/bench/reference-venv.sh | tail -n 1) || [[ ! -x "$ref_py" ]]; then
    ref_py='' ref_why="the reference venv could not be built (tests/bench/reference-venv.sh; see its log under $LAB_CACHE/log)"
  elif ! err=$("$ref_py" -c 'from eopf_geozarr.conversion.sentinel1_reprojection import reproject_sentinel1_with_gcps; from eopf_geozarr.conversion.geozarr import create_geozarr_dataset' 2>&1); then
    ref_py='' ref_why="the S1 path does not import: $(tail -n 1 <<<"$err")"
  else
    ref_ver=$("$ref_py" -c 'import importlib.metadata as m; print(" ".join(f"{d} {m.version(d)}" for d in ("eopf-geozarr", "rasterio", "xarray", "zarr", "numpy")))')
    ref_ver+=", GDAL $("$ref_py" -c 'import rasterio; print(rasterio.__gdal_version__)')"
  fi
fi
if ((OURS)) || [[ -z "$SOURCE" ]]; then
  need_bin
  [[ -x "$bin" ]] || lab_die "no executable $bin (set PROVISIONER_BIN, or unset it to cargo build --release)"
fi
ours_ver="provisioner $(git describe --tags --always --dirty 2>/dev/null || echo unknown)"

# ---------------------------------------------------------------- the product
printf 'GeoZarr Sentinel-1 GRD conversion benchmark, %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
printf '  ours:      %s (%s)\n' "$ours_ver" "$bin"
if ((REF)); then
  if [[ -n "$ref_py" ]]; then
    printf '  reference: %s\n             python -m eopf_geozarr convert SRC OUT %s\n' "$ref_ver" "${REF_ARGS[*]}"
  else
    printf '  reference: NOT RUN: %s\n' "$ref_why"
  fi
fi
printf '  host:      %s cores, %s MiB RAM, work dir %s\n' "$(nproc)" "$(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo)" "$WORK"

if [[ -n "$SOURCE" ]]; then
  [[ -e "$SOURCE/.zmetadata" ]] || lab_die "SOURCE=$SOURCE has no .zmetadata"
  src=${SOURCE%/} label=given
else
  label="s1-grd $SIZE"
  src="$WORK/s1-$SIZE/$ID.zarr"
  synth_once "" "$src" --product s1-grd --size "$SIZE"
fi
id=$(basename "$src" .zarr)
if [[ -n "$SOURCE" ]]; then dir="$WORK/run-s1-given"; else dir="$WORK/run-s1-$SIZE"; fi
rm -rf "$dir" && mkdir -p "$dir"

# ---------------------------------------------------------------- reference
ref_w=- ref_r=- ref_b=- ref_n=- ref_grid=- ref_levels=- ref_note=
if ((REF)) && [[ -n "$ref_py" ]]; then
  ref_src=$src
  if ((REF_PATCH)); then
    n=$(ref_view "$src" "$dir/ref-src.zarr")
    if ((n > 0)); then
      ref_src="$dir/ref-src.zarr"
      ref_note="input: hard-linked view with coordinates=\"line pixel\" on $n arrays (missing in the product; see the header)"
    else
      rm -rf "$dir/ref-src.zarr"
    fi
  fi
  lab_log "reference: eopf-geozarr convert ${REF_ARGS[*]} (single process; published: ~20 min at full size)"
  if timed "$dir/ref.log" "$dir/ref.log" "$ref_py" -m eopf_geozarr convert "$ref_src" "$dir/ref/$id.zarr" "${REF_ARGS[@]}"; then
    ref_w=$T_WALL ref_r=$(mib "$T_RSS")
    ref_b=$(bytes_of "$dir/ref/$id.zarr") ref_n=$(objects_of "$dir/ref/$id.zarr")
    ref_grid=$(grep -m 1 -o 'height=[0-9]* width=[0-9]*' "$dir/ref.log" | sed 's/height=\([0-9]*\) width=\([0-9]*\)/\1x\2/' || true)
    ref_levels=$(grep -m 1 -o 'Total overview levels: [0-9]*' "$dir/ref.log" | grep -o '[0-9]*$' || true)
  else
    ref_w=FAILED ref_r=$(mib "$T_RSS")
    ref_why=$(grep -m 1 -o "error='[^']*'" "$dir/ref.log" | sed "s/^error='//; s/'$//" || true)
    [[ -n "$ref_why" ]] || ref_why=$(tail -n 1 "$dir/ref.log")
    [[ -z "$T_NOTE" ]] || ref_why="$T_NOTE; $ref_why"
    ref_why="conversion failed after $T_WALL s: $ref_why (log: $dir/ref.log)"
    lab_log "reference $ref_why"
  fi
  ((KEEP_OUTPUT)) || rm -rf "$dir/ref"
  rm -rf "$dir/ref-src.zarr"   # hard links only: the product is not touched
fi

# ---------------------------------------------------------------- ours + floor
ours_best=- ours_med=- ours_r=- ours_b=- ours_n=- floor=- dec=- enc=- reads=- chunks=- grid=- nlev=-
fl_src=- fl_out=-
if ((OURS)); then
  walls=() rss_max=0 ok=1 fl=() conv="$dir/ours/bench/$id.zarr"
  for ((i = 1; i <= ROUNDS; i++)); do
    rm -rf "$dir/ours"
    lab_log "ours: workload convert (round $i/$ROUNDS)"
    if ! timed "$dir/ours-$i.json" "$dir/ours-$i.log" "$bin" workload convert --source "$src" --dest "$dir/ours" --collection bench -o json; then
      ok=0 failed=1; lab_log "ours failed (log: $dir/ours-$i.log)"; tail -n 15 "$dir/ours-$i.log" >&2; break
    fi
    walls+=("$T_WALL")
    ((T_RSS > rss_max)) && rss_max=$T_RSS
  done
  if ((ok)); then
    ours_best=$(printf '%s\n' "${walls[@]}" | sort -g | head -n 1)
    ours_med=$(printf '%s\n' "${walls[@]}" | median)
    ours_r=$(mib "$rss_max") ours_b=$(bytes_of "$conv") ours_n=$(objects_of "$conv")
    read -r chunks reads grid nlev < <(ours_summary "$dir/ours-$ROUNDS.json") ||
      lab_log "no JSON report from workload convert (see $dir/ours-$ROUNDS.json)"
    for ((i = 1; i <= ROUNDS; i++)); do
      lab_log "codec floor (round $i/$ROUNDS)"
      if f=$("$bin" workload floor --source "$src" --converted "$conv" -o json 2>"$dir/floor.err"); then
        fl+=("$(json_fields floor_s decode_s encode_s source_chunks output_chunks <<<"$f")")
      else
        failed=1; lab_log "floor failed: $(tail -n 3 "$dir/floor.err")"; break
      fi
    done
    if ((${#fl[@]})); then   # best round by floor_s
      read -r floor dec enc fl_src fl_out < <(printf '%s\n' "${fl[@]}" | sort -g -k1,1 | head -n 1)
      for v in floor dec enc; do   # 3 decimals (the JSON may hold 1.2e-05)
        [[ ${!v} =~ ^[0-9.eE+-]+$ ]] && printf -v "$v" '%.3f' "${!v}"
      done
    fi
  else
    ours_best=FAILED
  fi
  ((KEEP_OUTPUT)) || rm -rf "$dir/ours"
fi

# ---------------------------------------------------------------- table
row() { printf '   %-36s %10s %10s %11s %9s\n' "$@"; }
out_mb() { if [[ $1 =~ $num ]]; then mb "$1"; else echo -; fi; }
printf '\n== %s: %s\n' "$label" "$src"
printf '   input %s MB in %s objects; grd %s\n' "$(mb "$(bytes_of "$src")")" "$(objects_of "$src")" "$(grd_summary "$src")"
row "" "wall s" "peak MiB" "output MB" objects
if ((REF)); then
  if [[ -n "$ref_py" ]]; then
    row "reference eopf-geozarr convert (V0)" "$ref_w" "$ref_r" "$(out_mb "$ref_b")" "$ref_n"
  else
    row "reference eopf-geozarr convert (V0)" "NOT RUN" - - -
  fi
fi
if ((OURS)); then
  row "ours, best of $ROUNDS" "$ours_best" "$ours_r" "$(out_mb "$ours_b")" "$ours_n"
  ((ROUNDS > 1)) && printf '   %-36s %10s\n' "ours, median" "$ours_med"
  printf '   %-36s %10s   (decode %s + encode %s; %s source / %s output chunks)\n' \
    "codec floor, best of $ROUNDS" "$floor" "$dec" "$enc" "$fl_src" "$fl_out"
fi
grids=()
[[ -z "$ref_grid" || $ref_grid == - ]] || grids+=("reference ${ref_grid}, ${ref_levels:-?} levels")
[[ $grid == - ]] || grids+=("ours $grid, $nlev levels")
if ((${#grids[@]})); then
  g=$(IFS=';'; echo "${grids[*]}")
  printf '   native grid per polarisation (EPSG:4326 by default): %s\n' "${g//;/; }"
fi
[[ -z "$ref_note" ]] || printf '   reference %s\n' "$ref_note"
[[ -z "$ref_why" ]] || printf '   reference NOT MEASURED: %s\n' "$ref_why"

printf '   targets:\n'
if [[ $floor =~ $num && $ours_best =~ $num ]] && awk "BEGIN { exit !($floor > 0) }"; then
  printf '     ours/floor          %8sx   target <= %sx       %s\n' "$(calc "$ours_best / $floor")" "$T_FLOOR" \
    "$(verdict "$ours_best / $floor <= $T_FLOOR")"
else
  printf '     ours/floor          %8s    target <= %sx       n/a\n' - "$T_FLOOR"
fi
if [[ $ours_r =~ $num ]]; then
  printf '     ours peak RSS       %5s MiB   target <= %s MiB   %s\n' "$ours_r" "$T_RSS_MIB" "$(verdict "$ours_r <= $T_RSS_MIB")"
else
  printf '     ours peak RSS       %8s    target <= %s MiB   n/a\n' - "$T_RSS_MIB"
fi
if [[ $reads =~ $num && $chunks =~ $num ]]; then
  printf '     source chunk reads  %8s    target = %s (each once)  %s\n' "$reads" "$chunks" "$(verdict "$reads == $chunks")"
else
  printf '     source chunk reads  %8s    target: each once        n/a\n' -
fi
printf '   ratios (no target):\n'
if [[ $ref_w =~ $num && $ours_best =~ $num ]]; then
  printf '     speed-up ref/ours   %8sx   wall, this run, this machine\n' "$(calc "$ref_w / $ours_best" 1)"
  [[ $ref_r =~ $num && $ours_r =~ $num ]] && awk "BEGIN { exit !($ours_r > 0) }" &&
    printf '     peak RSS ref/ours   %8sx\n' "$(calc "$ref_r / $ours_r" 1)"
  [[ $ref_b =~ $num && $ours_b =~ $num ]] &&
    printf '     output ours/ref     %8sx   bytes; objects %s vs %s\n' "$(calc "$ours_b / $ref_b")" "$ours_n" "$ref_n"
fi
# the published figure is for 2 x 16677 x 26064 pixels: compare only at (about) that size
full_px=$(python3 - "$src" <<'EOF'
import json, sys
meta = json.load(open(sys.argv[1] + "/.zmetadata"))["metadata"]
px = sum(v["shape"][0] * v["shape"][1] for k, v in meta.items() if k.endswith("/measurements/grd/.zarray"))
print(int(px >= 0.9 * 2 * 16677 * 26064))
EOF
)
if ((full_px)) && [[ ! $ref_w =~ $num ]] && [[ $ours_best =~ $num ]]; then
  printf '     published/ours      %8sx   ROUGH: published ~%s s (~20 min, docs/S1_E2E_TEST_RESULTS.md, Oct 2025,\n' \
    "$(calc "$PUBLISHED_S / $ours_best" 0)" "$PUBLISHED_S"
  printf '                                      VV+VH 16677x26064, Argo pod with S3 in/out, incl. ~5 min of metadata groups)\n'
elif [[ ! $ref_w =~ $num ]]; then
  printf '     published/ours             -    the published ~%s s is for a full-size product only\n' "$PUBLISHED_S"
fi
printf '   logs: %s\n' "$dir"
((failed == 0)) || { echo "some of our runs FAILED (see the logs above)"; exit 1; }
