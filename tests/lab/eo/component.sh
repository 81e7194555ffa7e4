# shellcheck shell=bash
# tests/lab/eo/component.sh - the Earth-observation services of the lab (sourced after
# lib.sh and s3/component.sh; "eo" implies "s3", TiTiler reads s3:// from moto).
#
#   PostgreSQL 15 + PostGIS 3 + pgstac   127.0.0.1:$LAB_PORT_PG    (55432)  own cluster, trust auth
#   stac-fastapi-pgstac (transactions)   127.0.0.1:$LAB_PORT_STAC  (18080)
#   TiTiler (titiler.xarray 2.4.0)       127.0.0.1:$LAB_PORT_TILER (18081)
#   "readers" Python = the TiTiler venv (xarray, rioxarray, zarr 3.1.x, numpy): $LAB_PY_READERS
#   STAC extension JSON Schemas (sdists, for tests/support/validate_stac.py): $LAB_STAC_SCHEMAS

LAB_PGBIN=/usr/lib/postgresql/15/bin

lab_pg() { runuser -u postgres -- "$LAB_PGBIN/$1" "${@:2}"; }   # initdb/pg_ctl refuse to run as root

lab_up_pg() {
  local dir="$LAB_STATE/eo" pgdata="$LAB_STATE/eo/pgdata" sock="$LAB_STATE/eo/run/pgsock"
  local logf="$LAB_STATE/eo/log/postgres.log" t0=$EPOCHREALTIME
  mkdir -p "$dir/log" "$sock"
  chmod 755 "$LAB_STATE" "$dir"
  runuser -u postgres -- test -x "$dir" ||
    lab_die "user postgres cannot reach $dir: put LAB_STATE somewhere world-traversable (not under /root)"
  chown postgres:postgres "$sock"
  if [[ ! -f "$pgdata/PG_VERSION" ]]; then
    rm -rf "$pgdata"
    install -d -m 700 -o postgres -g postgres "$pgdata"
    lab_pg initdb -D "$pgdata" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
      >"$dir/log/initdb.log" 2>&1 || lab_die "initdb failed" "$dir/log/initdb.log"
  fi
  if lab_pg pg_ctl -D "$pgdata" status >/dev/null 2>&1; then
    lab_log "postgres already running on $LAB_HOST:$LAB_PORT_PG"
    return 0
  fi
  lab_need_port "$LAB_PORT_PG" postgres
  touch "$logf" && chown postgres:postgres "$logf"   # pg_ctl -l writes it as postgres
  lab_log "starting postgres on $LAB_HOST:$LAB_PORT_PG (log: $logf)"
  # Test data only: fsync/synchronous_commit/full_page_writes off for speed. The socket
  # lives in a private dir so it never clashes with a system cluster's /run/postgresql.
  lab_pg pg_ctl -D "$pgdata" -l "$logf" -w -t 60 start -o "-c listen_addresses=$LAB_HOST \
    -p $LAB_PORT_PG -k $sock -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    >/dev/null || lab_die "postgres did not start" "$logf"
  lab_log "postgres ready in $(lab_since "$t0") s"
}

lab_down_pg() {
  local pgdata="$LAB_STATE/eo/pgdata"
  [[ -f "$pgdata/PG_VERSION" ]] || return 0
  if lab_pg pg_ctl -D "$pgdata" status >/dev/null 2>&1; then
    lab_pg pg_ctl -D "$pgdata" stop -m fast -w -t 30 >/dev/null && lab_log "stopped postgres ($pgdata)"
  fi
}

# lab_stac_schemas VAR VENV : the pinned source distributions of requirements/stac-schemas.txt
# (their tests/ ship STAC extension JSON Schemas) in $LAB_CACHE/stac-schemas, re-downloaded
# when the lock changes; pip is the readers venv's (PIP_* config as for every venv here).
lab_stac_schemas() {
  local -n _sout=$1
  local lock="$LAB_DIR/eo/requirements/stac-schemas.txt" d="$LAB_CACHE/stac-schemas" sum logf t0
  _sout=$d
  sum=$(sha256sum "$lock" | cut -d' ' -f1)
  [[ -f "$d/.lab-lock-sha256" && "$(<"$d/.lab-lock-sha256")" == "$sum" ]] && return 0
  lab_cache_lock
  [[ -f "$d/.lab-lock-sha256" && "$(<"$d/.lab-lock-sha256")" == "$sum" ]] && return 0
  logf="$LAB_CACHE/log/pip-stac-schemas.log" t0=$EPOCHREALTIME
  lab_log "pip download $(grep -c '==' "$lock") STAC schema sdists into $d (log: $logf)"
  rm -rf "$d" && mkdir -p "$d"
  "$2/bin/pip" download --no-deps --no-binary :all: --require-hashes -r "$lock" -d "$d" >"$logf" 2>&1 ||
    { rm -rf "$d"; lab_die "pip download of the STAC schema sdists failed" "$logf"; }
  echo "$sum" >"$d/.lab-lock-sha256"
  lab_log "STAC schema sdists ready in $(lab_since "$t0") s"
}

lab_up_eo() {
  local stac_venv tiler_venv stac_schemas t0
  local pg_env=("PGHOST=$LAB_HOST" "PGPORT=$LAB_PORT_PG" PGUSER=postgres PGPASSWORD=postgres PGDATABASE=pgstac)
  [[ $EUID -eq 0 ]] || lab_die "component eo needs root (apt, runuser -u postgres)"
  [[ -f "$LAB_STATE/s3/env.sh" ]] || lab_die "component eo needs s3 up first"
  lab_apt postgresql-15 postgresql-15-postgis-3
  lab_venv stac_venv stac-fastapi-pgstac "$LAB_DIR/eo/requirements/stac.txt"
  lab_venv tiler_venv titiler-xarray "$LAB_DIR/eo/requirements/tiler.txt"
  lab_stac_schemas stac_schemas "$tiler_venv"
  lab_up_pg

  # pgstac schema: only when the API is not up yet (i.e. on a start, not on a no-op re-run).
  # `pypgstac migrate` is idempotent and creates postgis/btree_gist/unaccent (superuser).
  if ! lab_alive "$LAB_STATE/eo/run/stac-api.pid"; then
    t0=$EPOCHREALTIME
    env "${pg_env[@]}" "$LAB_PGBIN/psql" -q -d postgres -v ON_ERROR_STOP=1 -tAc \
      "select 1 from pg_database where datname = 'pgstac'" | grep -q 1 ||
      env "${pg_env[@]}" "$LAB_PGBIN/psql" -q -d postgres -c "create database pgstac" >/dev/null
    env "${pg_env[@]}" "$stac_venv/bin/pypgstac" migrate >"$LAB_STATE/eo/log/pypgstac.log" 2>&1 ||
      lab_die "pypgstac migrate failed" "$LAB_STATE/eo/log/pypgstac.log"
    lab_log "pgstac schema ready in $(lab_since "$t0") s ($(tail -n 1 "$LAB_STATE/eo/log/pypgstac.log"))"
  fi

  # uvicorn directly, never the package's run(): that binds 0.0.0.0:8000.
  lab_service stac-api eo "$LAB_PORT_STAC" "http://$LAB_HOST:$LAB_PORT_STAC/_mgmt/health" 60 2xx \
    env "${pg_env[@]}" ENABLE_TRANSACTIONS_EXTENSIONS=TRUE \
    "$stac_venv/bin/uvicorn" stac_fastapi.pgstac.app:create_app --factory \
    --host "$LAB_HOST" --port "$LAB_PORT_STAC"

  # TiTiler reads s3:// from moto: obstore takes the endpoint from AWS_ENDPOINT_URL, GDAL
  # (rasterio) from AWS_S3_ENDPOINT. The first start compiles .pyc files: up to ~11 s.
  lab_service titiler eo "$LAB_PORT_TILER" "http://$LAB_HOST:$LAB_PORT_TILER/healthz" 120 2xx \
    env AWS_ENDPOINT_URL="http://$LAB_HOST:$LAB_PORT_S3" AWS_ALLOW_HTTP=true \
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 \
    AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
    AWS_S3_ENDPOINT="$LAB_HOST:$LAB_PORT_S3" AWS_HTTPS=NO AWS_VIRTUAL_HOSTING=FALSE \
    NO_PROXY="$LAB_HOST,localhost" no_proxy="$LAB_HOST,localhost" \
    "$tiler_venv/bin/uvicorn" --app-dir "$LAB_DIR/eo" tiler_app:app \
    --host "$LAB_HOST" --port "$LAB_PORT_TILER"

  {
    echo "# written by tests/lab/up.sh eo: PostgreSQL+pgstac, STAC API, TiTiler (reads s3:// from moto)"
    echo "export STAC_API_URL=http://$LAB_HOST:$LAB_PORT_STAC"
    echo "export TITILER_URL=http://$LAB_HOST:$LAB_PORT_TILER"
    echo "export DATABASE_URL=postgresql://postgres:postgres@$LAB_HOST:$LAB_PORT_PG/pgstac   # trust auth"
    echo "export LAB_PY_READERS=$tiler_venv/bin/python   # xarray, rioxarray, zarr 3.1.x, numpy, s3fs"
    echo "export LAB_STAC_SCHEMAS=$stac_schemas   # sdists shipping STAC extension schemas (validate_stac.py)"
    lab_env_noproxy
  } >"$LAB_STATE/eo/env.sh"
}

lab_down_eo() {
  lab_stop "$LAB_STATE/eo/run/titiler.pid" titiler
  lab_stop "$LAB_STATE/eo/run/stac-api.pid" stac-api
  lab_down_pg
}

# ---------------------------------------------------------------- checks (check.sh)
lab_check_eo() {
  lab_check "postgres: pgstac schema + PostGIS" "$LAB_PGBIN/psql" "$DATABASE_URL" -tA -F ' ' \
    -c "select 'pgstac', pgstac.get_version(), 'postgis', postgis_lib_version()"
  lab_check "stac: $STAC_API_URL/_mgmt/health" curl -fsS -o /dev/null --max-time 5 "$STAC_API_URL/_mgmt/health"
  # shellcheck disable=SC2016  # $1 is expanded by the inner bash
  lab_check "stac: transaction extension in /conformance" \
    bash -c 'curl -fsS --max-time 5 "$1/conformance" | grep -q "extensions/transaction"' _ "$STAC_API_URL"
  lab_check "stac: POST + DELETE a collection" lab_eo_stac_roundtrip
  lab_check "titiler: $TITILER_URL/healthz" curl -fsS -o /dev/null --max-time 5 "$TITILER_URL/healthz"
  lab_check "readers: xarray, rioxarray, zarr 3.1, numpy import" "$LAB_PY_READERS" -c \
    'import xarray, rioxarray, numpy, zarr; assert zarr.__version__.startswith("3.1."), zarr.__version__'
  lab_check "titiler reads a Zarr written to moto (s3://, no AWS region lookup)" \
    "$LAB_PY_READERS" "$LAB_DIR/eo/zarr_smoke.py"
  # shellcheck disable=SC2016  # $1/$2 are expanded by the inner bash
  lab_check "readers: offline STAC schemas for validate_stac.py (sar, sat, projection, storage, timestamps)" \
    bash -c 'n=$("$1" "$2" --list | grep -cE "/(sar|sat|projection|storage|timestamps)/v[0-9.]+/schema.json") &&
      ((n >= 5)) && echo "$n extension schemas"' _ "$LAB_PY_READERS" "$LAB_DIR/../support/validate_stac.py"
}

lab_eo_stac_roundtrip() {
  local id="lab-smoke-$$-$RANDOM" code
  code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 -H 'Content-Type: application/json' \
    -d "{\"type\":\"Collection\",\"stac_version\":\"1.0.0\",\"id\":\"$id\",\"description\":\"lab smoke\",
         \"license\":\"proprietary\",\"links\":[],\"extent\":{\"spatial\":{\"bbox\":[[-180,-90,180,90]]},
         \"temporal\":{\"interval\":[[\"2024-01-01T00:00:00Z\",null]]}}}" "$STAC_API_URL/collections")
  [[ "$code" == 201 ]] || { echo "POST /collections -> $code"; return 1; }
  code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 -X DELETE "$STAC_API_URL/collections/$id")
  [[ "$code" == 200 || "$code" == 204 ]] || { echo "DELETE /collections/$id -> $code"; return 1; }
}
