# shellcheck shell=bash source-path=SCRIPTDIR
# tests/lab/lib.sh - shared helpers for the test lab (sourced by up.sh, down.sh, check.sh
# and the component files tests/lab/<component>/component.sh).
#
# Layout:
#   $LAB_STATE/<component>/{env.sh,run/*.pid,log/*.log,...}   runtime state (default /var/tmp/provisioner-lab)
#   $LAB_STATE/env.sh                                         sources every started component's env.sh
#   $LAB_CACHE/venv/<dist>-<version>/                         Python venvs, keyed by version
#   $LAB_CACHE/bin/<tool>-<version>                           built binaries (s3s-fs)
#   $LAB_CACHE/log/                                           install logs
# Everything listens on 127.0.0.1 only, except on the private lab networks of the nspawn
# machines (tests/lab/nodes: bridges in their own netns, joined to the host by a veth) and
# the registry (its own host address $LAB_REGISTRY_ADDR, reached by host and machines).

LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAB_STATE="${LAB_STATE:-/var/tmp/provisioner-lab}"
LAB_CACHE="${LAB_CACHE:-/var/cache/provisioner-lab}"
LAB_PYTHON="${LAB_PYTHON:-python3}"
LAB_HOST=127.0.0.1
LAB_PORT_S3="${LAB_PORT_S3:-19000}"
LAB_PORT_S3S="${LAB_PORT_S3S:-19001}"
LAB_PORT_PG="${LAB_PORT_PG:-55432}"
LAB_PORT_STAC="${LAB_PORT_STAC:-18080}"
LAB_PORT_TILER="${LAB_PORT_TILER:-18081}"
# The registry (tests/lab/registry) is the one service not on 127.0.0.1: it listens on an
# address of its own that the host and every lab machine reach alike (the kube workers get
# a route to it; see tests/lab/registry/component.sh).
LAB_REGISTRY_ADDR="${LAB_REGISTRY_ADDR:-10.239.0.1}"
LAB_PORT_REGISTRY="${LAB_PORT_REGISTRY:-5000}"
if ! [[ "$LAB_REGISTRY_ADDR" =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}$ ]]; then
  echo "[lab] ERROR: bad LAB_REGISTRY_ADDR '$LAB_REGISTRY_ADDR' (want A.B.C.D)" >&2; exit 1
fi
for _p in "$LAB_PORT_S3" "$LAB_PORT_S3S" "$LAB_PORT_PG" "$LAB_PORT_STAC" "$LAB_PORT_TILER" "$LAB_PORT_REGISTRY"; do
  if ! [[ "$_p" =~ ^[0-9]+$ ]] || ((_p < 1 || _p > 65535)); then
    echo "[lab] ERROR: bad port '$_p' in LAB_PORT_*" >&2; exit 1
  fi
done
LAB_COMPONENTS=(s3 s3s eo registry nodes openstack kube cluster)   # start order; down.sh stops in reverse

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
LC_NUMERIC=C   # $EPOCHREALTIME must use "." as the decimal point for the awk timings

# ---------------------------------------------------------------- messages
lab_log() { printf '[lab %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# lab_die MSG [LOGFILE] : print MSG (and the log's tail) and exit non-zero
lab_die() {
  printf '\n[lab] ERROR: %s\n' "$1" >&2
  if [[ -n "${2:-}" && -f "$2" ]]; then
    printf -- '----- last 40 lines of %s -----\n' "$2" >&2
    tail -n 40 "$2" >&2
    printf -- '-----\n' >&2
  fi
  exit 1
}
lab_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------- processes
# A service is started in its own session (setsid), so its PID is also its process
# group id and down.sh can stop the whole group (uvicorn/moto may fork helpers).
# The pid file holds "PID STARTTIME"; the start time (from /proc) guards against
# signalling an unrelated process that reused the PID after a reboot or crash.

lab_proc_start() {  # lab_proc_start PID : kernel start time of PID (clock ticks since boot)
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }                     # drop "pid (comm) ", comm may contain spaces
  # shellcheck disable=SC2086
  set -- $stat
  [[ "$1" != Z ]] || return 1           # a zombie (exited, not yet reaped) is not running
  echo "${20}"                          # field 22 of stat = 20th after comm
}

# lab_alive PIDFILE : true when the recorded process is still the one we started
lab_alive() {
  local pid start now
  [[ -f "$1" ]] || return 1
  read -r pid start <"$1" || return 1
  [[ -n "$pid" && -n "$start" ]] || return 1
  now=$(lab_proc_start "$pid") || return 1
  [[ "$now" == "$start" ]]
}

# lab_spawn PIDFILE LOGFILE CMD... : run CMD detached in a new session, record its PID
lab_spawn() {
  local pidfile=$1 logf=$2 pid; shift 2
  mkdir -p "$(dirname "$pidfile")" "$(dirname "$logf")"
  rm -f "$pidfile" "$pidfile.tmp"
  # setsid may fork; the inner shell writes its own PID (== PGID) and then execs CMD.
  # shellcheck disable=SC2016  # $$ / $0 / $@ belong to the inner shell
  # fd 9 is the install-cache lock (lab_cache_lock): a service must not inherit it, or
  # the lock stays held for as long as the service runs.
  setsid bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidfile" "$@" \
    >"$logf" 2>&1 </dev/null 9>&- &
  for _ in $(seq 50); do [[ -s "$pidfile" ]] && break; sleep 0.1; done
  [[ -s "$pidfile" ]] || lab_die "could not start: $*" "$logf"
  pid=$(<"$pidfile")
  # no start time = already exited; lab_alive is then false and the caller reports it
  echo "$pid $(lab_proc_start "$pid" || true)" >"$pidfile"
}

# lab_group_running PGID : true while a process of the group is still running. Zombies
# do not count: an orphan is reaped by PID 1, which here takes ~1.5 s to do it.
lab_group_running() {
  ps -eo pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'
}

# lab_stop PIDFILE NAME : SIGTERM the process group, SIGKILL after 10 s
lab_stop() {
  local pidfile=$1 name=$2 pid start
  if lab_alive "$pidfile"; then
    read -r pid start <"$pidfile"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do lab_group_running "$pid" || break; sleep 0.1; done
    if lab_group_running "$pid"; then
      lab_log "$name (pgid $pid) ignored SIGTERM for 10 s: SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    lab_log "stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
}

# ---------------------------------------------------------------- ports / HTTP
lab_port_busy() { (exec 3<>"/dev/tcp/$LAB_HOST/$1") 2>/dev/null; }

# lab_need_port PORT WHAT : refuse to start WHAT when somebody else listens on PORT
lab_need_port() {
  if lab_port_busy "$1"; then
    lab_die "port $LAB_HOST:$1 (for $2) is held by a process this lab did not start:
$(ss -ltnpH "sport = :$1" 2>/dev/null || true)
Stop it, or choose another port (LAB_PORT_* variables)."
  fi
}

# lab_wait_http NAME URL TIMEOUT_S PIDFILE [any]
#   poll URL until it answers 2xx (or any HTTP status with "any"). Returns 1 with the
#   reason in LAB_WAIT_ERR when the process dies or the timeout passes.
lab_wait_http() {
  local name=$1 url=$2 timeout=$3 pidfile=$4 mode=${5:-2xx} t0=$EPOCHREALTIME code
  while :; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
    if [[ "$mode" == any && "$code" != 000 ]] || [[ "$code" == 2?? ]]; then return 0; fi
    if ! lab_alive "$pidfile"; then
      LAB_WAIT_ERR="$name exited during start-up"; return 1
    fi
    if awk -v a="$t0" -v b="$EPOCHREALTIME" -v t="$timeout" 'BEGIN { exit !(b - a > t) }'; then
      LAB_WAIT_ERR="$name did not answer $url within ${timeout}s (last HTTP status: $code)"; return 1
    fi
    sleep 0.2
  done
}

# lab_service NAME COMPONENT PORT HEALTH_URL TIMEOUT MODE CMD...
#   idempotent start of one long-running service: no-op when our recorded process is
#   alive (only re-checks health), refuse a foreign port holder, else spawn + wait.
lab_service() {
  local name=$1 comp=$2 port=$3 url=$4 timeout=$5 mode=$6; shift 6
  local pidfile="$LAB_STATE/$comp/run/$name.pid" logf="$LAB_STATE/$comp/log/$name.log" t0=$EPOCHREALTIME
  if lab_alive "$pidfile"; then
    lab_wait_http "$name" "$url" "$timeout" "$pidfile" "$mode" ||
      lab_die "$LAB_WAIT_ERR (it is ours: tests/lab/down.sh stops it)" "$logf"
    lab_log "$name already running on $LAB_HOST:$port"
    return 0
  fi
  lab_need_port "$port" "$name"
  lab_log "starting $name on $LAB_HOST:$port (log: $logf)"
  lab_spawn "$pidfile" "$logf" "$@"
  if ! lab_wait_http "$name" "$url" "$timeout" "$pidfile" "$mode"; then
    lab_stop "$pidfile" "$name"   # don't leave a half-started service behind
    lab_die "$LAB_WAIT_ERR" "$logf"
  fi
  lab_log "$name ready in $(lab_since "$t0") s"
}

# ---------------------------------------------------------------- installs (cached)
# Installs take an exclusive lock so two concurrent up.sh runs don't race on the cache.
lab_cache_lock() {
  [[ -z "${LAB_CACHE_LOCKED:-}" ]] || return 0   # held until this script exits
  LAB_CACHE_LOCKED=1
  mkdir -p "$LAB_CACHE/log"
  exec 9>"$LAB_CACHE/.lock"
  flock -w 1800 9 || lab_die "timed out waiting for the lock $LAB_CACHE/.lock"
}

# lab_apt PKG... : install the Debian packages that are missing (apt-get update only then)
lab_apt() {
  local p missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  [[ $EUID -eq 0 ]] || lab_die "need root to apt-get install: ${missing[*]}"
  lab_cache_lock
  local logf="$LAB_CACHE/log/apt.log" t0=$EPOCHREALTIME
  lab_log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get -o DPkg::Lock::Timeout=600 update -q &&
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
  } >"$logf" 2>&1 || lab_die "apt-get install ${missing[*]} failed" "$logf"
  lab_log "apt done in $(lab_since "$t0") s"
}

# lab_venv VAR DIST LOCKFILE : make sure $LAB_CACHE/venv/<dist>-<version> holds exactly
#   the lock (version read from "DIST==x.y.z" in the lock), set VAR to its path.
#   A stamp with the lock's sha256 marks a complete install; a partial one is rebuilt.
lab_venv() {
  local -n _out=$1
  local dist=$2 lock=$3 ver v sum logf t0
  ver=$(grep -i -m1 "^${dist}==" "$lock" | cut -d= -f3) || true
  [[ -n "$ver" ]] || lab_die "$lock does not pin $dist"
  v="$LAB_CACHE/venv/$dist-$ver"
  _out=$v
  sum=$(sha256sum "$lock" | cut -d' ' -f1)
  [[ -f "$v/.lab-lock-sha256" && "$(<"$v/.lab-lock-sha256")" == "$sum" ]] && return 0
  lab_cache_lock
  # re-check under the lock: another run may have just built it
  [[ -f "$v/.lab-lock-sha256" && "$(<"$v/.lab-lock-sha256")" == "$sum" ]] && return 0
  logf="$LAB_CACHE/log/pip-$dist-$ver.log" t0=$EPOCHREALTIME
  lab_log "pip install $dist $ver into $v ($(grep -c '==' "$lock") pinned packages, log: $logf)"
  rm -rf "$v"
  "$LAB_PYTHON" -m venv "$v" >"$logf" 2>&1 || lab_die "python venv creation failed" "$logf"
  "$v/bin/pip" install -q -r "$lock" >>"$logf" 2>&1 || { rm -rf "$v"; lab_die "pip install for $dist failed" "$logf"; }
  echo "$sum" >"$v/.lab-lock-sha256"
  lab_log "venv $dist-$ver built in $(lab_since "$t0") s"
}

# ---------------------------------------------------------------- env files
# Written into every component env.sh: never send loopback traffic through a proxy.
lab_env_noproxy() {
  cat <<'EOF'
case ",${NO_PROXY:-}," in *,127.0.0.1,*) ;; *) export NO_PROXY="127.0.0.1,localhost,::1${NO_PROXY:+,$NO_PROXY}" ;; esac
case ",${no_proxy:-}," in *,127.0.0.1,*) ;; *) export no_proxy="127.0.0.1,localhost,::1${no_proxy:+,$no_proxy}" ;; esac
EOF
}

# lab_write_env_all : $LAB_STATE/env.sh sources the env.sh of each component that is up
lab_write_env_all() {
  local c f="$LAB_STATE/env.sh"
  mkdir -p "$LAB_STATE"
  {
    echo "# written by tests/lab/up.sh / down.sh: the lab components that are up"
    echo "export LAB_STATE=$LAB_STATE"
    for c in "${LAB_COMPONENTS[@]}"; do
      [[ -f "$LAB_STATE/$c/env.sh" ]] && echo "source $LAB_STATE/$c/env.sh"
    done
  } >"$f.tmp"
  mv "$f.tmp" "$f"
}

# lab_component NAME : source tests/lab/<dir>/component.sh that defines lab_up_NAME etc.
lab_component() {
  case "$1" in
    s3 | s3s) source "$LAB_DIR/s3/component.sh" ;;
    eo) source "$LAB_DIR/eo/component.sh" ;;
    registry) source "$LAB_DIR/registry/component.sh" ;;
    openstack) source "$LAB_DIR/openstack/component.sh" ;;
    nodes) source "$LAB_DIR/nodes/component.sh" ;;
    kube) source "$LAB_DIR/kube/component.sh" ;;
    cluster) source "$LAB_DIR/cluster/component.sh" ;;
    *) lab_die "unknown component '$1' (known: ${LAB_COMPONENTS[*]})" ;;
  esac
}
