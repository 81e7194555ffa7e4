# shellcheck shell=bash
# tests/lab/s3/component.sh - the S3 components of the lab (sourced after lib.sh).
#
#   s3   moto_server 5.2.5 on 127.0.0.1:$LAB_PORT_S3 (19000): in-memory mock, accepts any
#        credentials, the only local server that round-trips StorageClass on copy.
#   s3s  s3s-fs 0.14.1 on 127.0.0.1:$LAB_PORT_S3S (19001): files on disk, checks SigV4
#        signatures. No StorageClass support; HEAD/DELETE of a key that is also a
#        "directory" (prefix of other keys) answers 500, hence an empty data dir per start.

S3S_VERSION=0.14.1   # newest s3s-fs whose MSRV fits rustc 1.95 (0.17.0 wants 1.96)
S3S_ACCESS_KEY=provisionerlab
S3S_SECRET_KEY=provisionerlab-secret-0123456789

lab_up_s3() {
  local venv url="http://$LAB_HOST:$LAB_PORT_S3"
  lab_venv venv moto "$LAB_DIR/s3/requirements.txt"
  mkdir -p "$LAB_STATE/s3"
  lab_service moto s3 "$LAB_PORT_S3" "$url/moto-api/" 60 2xx \
    "$venv/bin/moto_server" -H "$LAB_HOST" -p "$LAB_PORT_S3"
  {
    echo "# written by tests/lab/up.sh s3: moto_server (in-memory S3 mock, any credentials)"
    echo "export S3_ENDPOINT_URL=$url MOTO_S3_URL=$url"
    echo "export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing"
    echo "export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1"
    # without credentials/region, SDKs probe the EC2 metadata address 169.254.169.254
    echo "export AWS_EC2_METADATA_DISABLED=true"
    echo "export AWS_ALLOW_HTTP=true   # object_store / obstore: allow http:// endpoints"
    echo "# GDAL /vsis3/ (otherwise it goes to *.s3.amazonaws.com)"
    echo "export AWS_S3_ENDPOINT=$LAB_HOST:$LAB_PORT_S3 AWS_HTTPS=NO AWS_VIRTUAL_HOSTING=FALSE"
    echo "export LAB_PY_S3=$venv/bin/python   # has boto3"
    lab_env_noproxy
  } >"$LAB_STATE/s3/env.sh"
}

# lab_s3s_bin : set S3S_BIN; s3s-fs is built once per machine into $LAB_CACHE/bin/s3s-fs-<version>.
lab_s3s_bin() {
  local bin="$LAB_CACHE/bin/s3s-fs-$S3S_VERSION" root logf t0
  S3S_BIN=$bin
  if [[ ! -x "$bin" ]]; then
    lab_cache_lock
    if [[ ! -x "$bin" ]]; then
      command -v cargo >/dev/null || lab_die "cargo is needed to build s3s-fs $S3S_VERSION"
      root="$LAB_CACHE/cargo-root/s3s-fs-$S3S_VERSION" logf="$LAB_CACHE/log/cargo-s3s-fs-$S3S_VERSION.log"
      t0=$EPOCHREALTIME
      lab_log "cargo install s3s-fs@$S3S_VERSION with -j1 (~6 min on 2 cores; log: $logf)"
      # -j1 so a concurrent project build is not starved; own target dir so we never
      # touch (or lock) the project's target/, removed after a successful build.
      CARGO_BUILD_JOBS=1 CARGO_TARGET_DIR="$LAB_CACHE/cargo-target" \
        cargo install --locked "s3s-fs@$S3S_VERSION" --features binary --root "$root" \
        >"$logf" 2>&1 || lab_die "cargo install s3s-fs@$S3S_VERSION failed" "$logf"
      mkdir -p "$LAB_CACHE/bin"
      install -m 755 "$root/bin/s3s-fs" "$bin.tmp" && mv "$bin.tmp" "$bin"
      rm -rf "$root" "$LAB_CACHE/cargo-target"
      lab_log "s3s-fs built in $(lab_since "$t0") s"
    fi
  fi
}

lab_up_s3s() {
  local venv data="$LAB_STATE/s3s/data" url="http://$LAB_HOST:$LAB_PORT_S3S"
  lab_s3s_bin
  lab_venv venv moto "$LAB_DIR/s3/requirements.txt"   # only for its boto3 (check.sh)
  mkdir -p "$LAB_STATE/s3s"
  # Fresh, empty data dir on every (re)start: leftover directories from earlier
  # writes turn later HEAD/DELETE of those keys into 500s (see the header).
  if ! lab_alive "$LAB_STATE/s3s/run/s3s-fs.pid"; then
    rm -rf "$data" && mkdir -p "$data"
  fi
  # An unsigned GET / answers 403 AccessDenied: any HTTP status means "up".
  lab_service s3s-fs s3s "$LAB_PORT_S3S" "$url/" 30 any \
    "$S3S_BIN" --host "$LAB_HOST" --port "$LAB_PORT_S3S" \
    --access-key "$S3S_ACCESS_KEY" --secret-key "$S3S_SECRET_KEY" "$data"
  {
    echo "# written by tests/lab/up.sh s3s: s3s-fs $S3S_VERSION (files on disk, SigV4 enforced)"
    echo "export S3S_ENDPOINT_URL=$url"
    echo "export S3S_ACCESS_KEY=$S3S_ACCESS_KEY S3S_SECRET_KEY=$S3S_SECRET_KEY"
    echo "export S3S_DATA_DIR=$data"
    echo "export LAB_PY_S3=$venv/bin/python   # has boto3"
    lab_env_noproxy
  } >"$LAB_STATE/s3s/env.sh"
}

lab_down_s3() { lab_stop "$LAB_STATE/s3/run/moto.pid" moto; }
lab_down_s3s() { lab_stop "$LAB_STATE/s3s/run/s3s-fs.pid" s3s-fs; }

# ---------------------------------------------------------------- checks (check.sh)
# s3_smoke.py [--expect-denied] ENDPOINT KEY SECRET: bucket create, put/get, delete (boto3)
lab_check_s3() {
  lab_check "moto answers $MOTO_S3_URL/moto-api/" curl -fsS -o /dev/null --max-time 5 "$MOTO_S3_URL/moto-api/"
  lab_check "moto: bucket create/put/get/delete (boto3)" \
    "$LAB_PY_S3" "$LAB_DIR/s3/s3_smoke.py" "$MOTO_S3_URL" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"
}

lab_check_s3s() {
  # shellcheck disable=SC2016  # $1 is expanded by the inner bash
  lab_check "s3s-fs answers $S3S_ENDPOINT_URL (403 unsigned)" \
    bash -c '[[ $(curl -s -o /dev/null -w "%{http_code}" --max-time 5 "$1/") == 403 ]]' _ "$S3S_ENDPOINT_URL"
  lab_check "s3s-fs: bucket create/put/get/delete with the SigV4 keys" \
    "$LAB_PY_S3" "$LAB_DIR/s3/s3_smoke.py" "$S3S_ENDPOINT_URL" "$S3S_ACCESS_KEY" "$S3S_SECRET_KEY"
  lab_check "s3s-fs: a wrong secret is rejected" \
    "$LAB_PY_S3" "$LAB_DIR/s3/s3_smoke.py" --expect-denied "$S3S_ENDPOINT_URL" "$S3S_ACCESS_KEY" wrong-secret
}
