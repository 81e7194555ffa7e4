# shellcheck shell=bash
# tests/lab/openstack/component.sh - a real OpenStack control plane (Zed, from Debian
# bookworm's packages) on 127.0.0.1, for the provisioner's OpenStack layer. Sourced
# after lib.sh. Needs root (apt, MariaDB and RabbitMQ run as root).
#
#   Keystone  (waitress)                      http://127.0.0.1:$LAB_PORT_KEYSTONE/v3   (15000)
#   Nova      api / conductor / scheduler / N x compute (lab.LabDriver)
#                                             http://127.0.0.1:$LAB_PORT_NOVA/v2.1     (18774)
#   Neutron   ML2 + router plugin, no agents  http://127.0.0.1:$LAB_PORT_NEUTRON       (19696)
#   Glance    file store                      http://127.0.0.1:$LAB_PORT_GLANCE        (19292)
#   Cinder    api / scheduler / volume (lab_cinder: a directory per volume)
#                                             http://127.0.0.1:$LAB_PORT_CINDER/v3/..  (18776)
#   Placement (waitress)                      http://127.0.0.1:$LAB_PORT_PLACEMENT     (18778)
#   MariaDB   data dir on tmpfs               127.0.0.1:$LAB_PORT_MYSQL                (13306)
#   RabbitMQ  + its own epmd                  127.0.0.1:$LAB_PORT_RABBIT (16672), dist 16673, epmd 14369
#
# The services are the packages' Python code behind their real REST APIs; only the
# hypervisor is the lab's (pylib/nova_virt_lab.py, see README "The lab cloud"): a server of an
# image with the property lab_machine=true (debian-12-node) is a real machine, a
# systemd-nspawn machine of tests/lab/nodes (systemd, sshd, cloud-init; its port's
# fixed IP on a lab L2 segment per Neutron network, the host on the subnet's gateway
# address; floating IPs DNATed by the host's nftables table "ip lab_openstack"; volumes
# as directories under /mnt/volumes). Servers of other images (cirros) stay fake: they
# go ACTIVE but nothing runs. Ports are bound by our ML2 driver "lab_bindall" (pylib/lab_ml2).
# No daemon package (nova-api, neutron-server, ...) is installed: launch.py calls the
# entry points, so there are no init scripts, dbconfig or debconf prompts.
#
# Fixture: users admin, demo, quota-test; application credential of demo; flavors
# m1.tiny/small/medium/large; images "cirros" (fake servers) and "debian-12-node"
# (machines; node-image.sh, cached by version); external network "public"
# (203.0.113.0/24; the host's leg on it: 203.0.113.1/32 on veth labos-ext, with a
# /32 route per associated floating IP, never the whole range: see pylib/lab_ml2);
# quotas of demo roomy (3 control + 3 worker + bastion), of quota-test tiny.
# Output: $LAB_STATE/openstack/clouds.yaml (lab-admin, lab-demo, lab-demo-appcred,
# lab-quota) and env.sh (OS_CLIENT_CONFIG_FILE, OS_CLOUD=lab-demo-appcred, LAB_OS_*).
#
# State: $LAB_STATE/openstack/{etc,log,run,keystone,glance,...}; the MariaDB data dir
# and RabbitMQ's mnesia live on tmpfs ($LAB_OS_FAST): fsync on a CI disk made the
# schema migrations ~6x slower. Schemas are made once per data dir (markers in
# $LAB_OS_FAST/done); a restart after down.sh skips them.
# Settings: LAB_PORT_{KEYSTONE,NOVA,NEUTRON,GLANCE,CINDER,PLACEMENT,MYSQL,RABBIT,
# RABBIT_DIST,EPMD}, LAB_OS_COMPUTE_COUNT (number of fake compute hosts, default 3:
# lets a 3-server anti-affinity group schedule), LAB_OS_FAST, LAB_OS_DEBUG=1.

LAB_PORT_KEYSTONE="${LAB_PORT_KEYSTONE:-15000}"
LAB_PORT_NOVA="${LAB_PORT_NOVA:-18774}"
LAB_PORT_CINDER="${LAB_PORT_CINDER:-18776}"
LAB_PORT_PLACEMENT="${LAB_PORT_PLACEMENT:-18778}"
LAB_PORT_GLANCE="${LAB_PORT_GLANCE:-19292}"
LAB_PORT_NEUTRON="${LAB_PORT_NEUTRON:-19696}"
LAB_PORT_MYSQL="${LAB_PORT_MYSQL:-13306}"
LAB_PORT_RABBIT="${LAB_PORT_RABBIT:-16672}"
LAB_PORT_RABBIT_DIST="${LAB_PORT_RABBIT_DIST:-16673}"   # Erlang distribution (default: 0.0.0.0:25672)
LAB_PORT_EPMD="${LAB_PORT_EPMD:-14369}"                 # our own epmd, not a system one on 4369
for _p in "$LAB_PORT_KEYSTONE" "$LAB_PORT_NOVA" "$LAB_PORT_CINDER" "$LAB_PORT_PLACEMENT" \
  "$LAB_PORT_GLANCE" "$LAB_PORT_NEUTRON" "$LAB_PORT_MYSQL" "$LAB_PORT_RABBIT" \
  "$LAB_PORT_RABBIT_DIST" "$LAB_PORT_EPMD"; do
  if ! [[ "$_p" =~ ^[0-9]+$ ]] || ((_p < 1 || _p > 65535)); then
    echo "[lab] ERROR: bad port '$_p' in LAB_PORT_*" >&2; exit 1
  fi
done
LAB_OS_COMPUTE_COUNT="${LAB_OS_COMPUTE_COUNT:-3}"
[[ "$LAB_OS_COMPUTE_COUNT" =~ ^[1-9]$ ]] || { echo "[lab] ERROR: LAB_OS_COMPUTE_COUNT must be 1-9" >&2; exit 1; }

# shellcheck disable=SC2153  # LAB_DIR and LAB_STATE come from lib.sh
{ OSLAB_DIR="$LAB_DIR/openstack"; OSLAB_STATE="$LAB_STATE/openstack"; }
OSLAB_ETC="$OSLAB_STATE/etc"
OSLAB_RUN="$OSLAB_STATE/run"
OSLAB_LOG="$OSLAB_STATE/log"
OSLAB_FAST="${LAB_OS_FAST:-/dev/shm/provisioner-lab/openstack}"
OSLAB_PY=/usr/bin/python3        # Debian's: the packages' modules are not in a pyenv/venv python
OSLAB_CLI=/usr/bin/openstack
OSLAB_PACKAGES=(python3-keystone python3-glance python3-placement python3-nova python3-neutron
  python3-cinder python3-openstackclient rabbitmq-server mariadb-server qemu-utils gettext-base
  systemd-container debootstrap zstd nftables openssh-client iproute2)
OSLAB_MACHINE="$LAB_DIR/nodes/machine.sh"   # the machines of the lab's compute driver
OSLAB_PUBLIC_GW=203.0.113.1                 # gateway of bootstrap.py's "public" subnet 203.0.113.0/24
OSLAB_EXT_DEV=labos-ext                     # the host's leg on it (a veth pair): $OSLAB_PUBLIC_GW/32
OSLAB_NFT_TABLE=lab_openstack               # pylib/lab_ml2's floating IP NAT

# Test credentials (loopback only).
OSLAB_ADMIN_PASSWORD=lab-admin-secret
OSLAB_DEMO_PASSWORD=lab-demo-secret
OSLAB_QUOTA_PASSWORD=lab-quota-secret
OSLAB_SERVICE_PASSWORD=lab-service-secret   # service users, MariaDB user lab, RabbitMQ user lab

OSLAB_KEYSTONE_URL="http://$LAB_HOST:$LAB_PORT_KEYSTONE"
OSLAB_DB="mysql+pymysql://lab:$OSLAB_SERVICE_PASSWORD@$LAB_HOST:$LAB_PORT_MYSQL"
OSLAB_TRANSPORT="rabbit://lab:$OSLAB_SERVICE_PASSWORD@$LAB_HOST:$LAB_PORT_RABBIT/"
OSLAB_COMPUTE_NAMES=$(for ((i = 1; i <= LAB_OS_COMPUTE_COUNT; i++)); do printf 'lab-compute-%d ' "$i"; done)
OSLAB_COMPUTE_NAMES=${OSLAB_COMPUTE_NAMES% }
# the variables the templates may use (envsubst leaves every other "$" alone)
# shellcheck disable=SC2016  # literal names for envsubst
OSLAB_VARS='$LAB_HOST $LAB_PORT_GLANCE $LAB_PORT_NEUTRON $LAB_PORT_NOVA $LAB_PORT_CINDER
$LAB_PORT_RABBIT $OSLAB_STATE $OSLAB_ETC $OSLAB_DB $OSLAB_TRANSPORT $OSLAB_KEYSTONE_URL
$OSLAB_SERVICE_PASSWORD $OSLAB_DEBUG'

# ---------------------------------------------------------------- install
oslab_install() {
  local p missing=() own_policy=0
  for p in "${OSLAB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  # rabbitmq-server's and mariadb-server's postinst would start the system daemons
  # (on 0.0.0.0:5672 / :3306, with /var/lib data). A policy-rc.d answering 101 makes
  # invoke-rc.d skip that; a machine's own policy-rc.d is left as it is.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# temporary, from tests/lab/openstack: no daemon starts during apt-get\nexit 101\n' \
      >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT   # also when lab_apt dies
  fi
  lab_log "installing ${#missing[@]} Debian packages and their dependencies (~3 min on a busy 2-core machine)"
  lab_apt "${OSLAB_PACKAGES[@]}"
  if ((own_policy)); then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
}

# ---------------------------------------------------------------- helpers
oslab_export() {   # for envsubst and bootstrap.py
  OSLAB_DEBUG=false; [[ "${LAB_OS_DEBUG:-0}" == 1 ]] && OSLAB_DEBUG=true
  export LAB_HOST LAB_PORT_GLANCE LAB_PORT_NEUTRON LAB_PORT_NOVA LAB_PORT_CINDER LAB_PORT_RABBIT \
    OSLAB_STATE OSLAB_ETC OSLAB_DB OSLAB_TRANSPORT OSLAB_KEYSTONE_URL OSLAB_DEBUG \
    OSLAB_SERVICE_PASSWORD OSLAB_ADMIN_PASSWORD OSLAB_DEMO_PASSWORD OSLAB_QUOTA_PASSWORD
  export OSLAB_COMPUTE_HOSTS="$OSLAB_COMPUTE_NAMES"
  export OSLAB_UP_STARTED="${EPOCHREALTIME%.*}"   # bootstrap.py waits for newer heartbeats
  export OSLAB_URL_COMPUTE="http://$LAB_HOST:$LAB_PORT_NOVA/v2.1"
  export OSLAB_URL_NETWORK="http://$LAB_HOST:$LAB_PORT_NEUTRON"
  export OSLAB_URL_IMAGE="http://$LAB_HOST:$LAB_PORT_GLANCE"
  export OSLAB_URL_PLACEMENT="http://$LAB_HOST:$LAB_PORT_PLACEMENT"
  export OSLAB_URL_VOLUME="http://$LAB_HOST:$LAB_PORT_CINDER/v3/%(project_id)s"
}

# oslab_render TEMPLATE DEST : envsubst the template; a line "#@auth SECTION USER" becomes
#   a keystoneauth password section for service user USER (templates/_auth.inc).
oslab_render() {
  local tpl="$OSLAB_DIR/templates/$1" dest=$2 line left
  {
    while IFS= read -r line || [[ -n "$line" ]]; do
      if [[ "$line" =~ ^#@auth\ ([a-z_]+)\ ([a-z]+)$ ]]; then
        printf '[%s]\nusername = %s\n' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
        cat "$OSLAB_DIR/templates/_auth.inc"
        if [[ "${BASH_REMATCH[1]}" == keystone_authtoken ]]; then
          # shellcheck disable=SC2016  # expanded by envsubst
          printf '%s\n' 'www_authenticate_uri = ${OSLAB_KEYSTONE_URL}' 'service_token_roles_required = true'
        fi
      else
        printf '%s\n' "$line"
      fi
    done <"$tpl"
  } | envsubst "$OSLAB_VARS" >"$dest.tmp"
  if left=$(grep -n '[$]{' "$dest.tmp"); then
    lab_die "template $tpl uses a variable that is not in OSLAB_VARS: $left"
  fi
  mv "$dest.tmp" "$dest"
}

# oslab_run NAME module:function ARG... : an OpenStack command through its entry point
oslab_run() { "$OSLAB_PY" "$OSLAB_DIR/launch.py" run "$@"; }

# oslab_once STEP CMD... : one-time set-up step per data dir (schemas); log in log/STEP.log
oslab_once() {
  local step=$1 logf="$OSLAB_LOG/$1.log" t0=$EPOCHREALTIME; shift
  [[ -e "$OSLAB_FAST/done/$step" ]] && return 0
  "$@" >"$logf" 2>&1 || lab_die "$step failed" "$logf"
  mkdir -p "$OSLAB_FAST/done" && touch "$OSLAB_FAST/done/$step"
  lab_log "$step done in $(lab_since "$t0") s"
}

# oslab_step NAME CMD... : a step that runs on every up (idempotent); log in log/NAME.log
oslab_step() {
  local name=$1 logf="$OSLAB_LOG/$1.log" t0=$EPOCHREALTIME; shift
  "$@" >"$logf" 2>&1 || lab_die "$name failed" "$logf"
  lab_log "$name done in $(lab_since "$t0") s ($(tail -n 1 "$logf"))"
}

# oslab_daemon NAME CMD... : start a service that has no HTTP port (no-op when ours is alive)
oslab_daemon() {
  local name=$1 pidfile="$OSLAB_RUN/$1.pid" logf="$OSLAB_LOG/$1.log"; shift
  if lab_alive "$pidfile"; then lab_log "$name already running"; return 0; fi
  lab_log "starting $name (log: $logf)"
  lab_spawn "$pidfile" "$logf" "$@"
}

# oslab_wait_tcp NAME PORT TIMEOUT : wait until our process NAME listens on PORT
oslab_wait_tcp() {
  local name=$1 port=$2 timeout=$3 t0=$EPOCHREALTIME
  until lab_port_busy "$port"; do
    lab_alive "$OSLAB_RUN/$name.pid" || lab_die "$name exited during start-up" "$OSLAB_LOG/$name.log"
    if awk -v a="$t0" -v b="$EPOCHREALTIME" -v t="$timeout" 'BEGIN { exit !(b - a > t) }'; then
      lab_die "$name did not listen on $LAB_HOST:$port within ${timeout}s" "$OSLAB_LOG/$name.log"
    fi
    sleep 0.2
  done
}

# oslab_port_free NAME PORT : refuse a port held by a process we did not start
oslab_port_free() { lab_alive "$OSLAB_RUN/$1.pid" || lab_need_port "$2" "$1"; }

# ---------------------------------------------------------------- state, configs
oslab_prepare() {
  local i
  mkdir -p "$OSLAB_ETC"/{keystone,placement,glance,nova,neutron/plugins/ml2,cinder,rabbitmq} \
    "$OSLAB_RUN" "$OSLAB_LOG" "$OSLAB_STATE"/{glance/{images,staging,cache,lock},nova/{instances,lock}} \
    "$OSLAB_STATE"/{neutron/lock,cinder/{volumes,lock}}
  rm -f "$OSLAB_RUN"/identity-{ready,failed}

  # The tmpfs data (DB, mnesia) belongs to one state dir: an id in both ties them. A
  # DB left by an earlier (purged) state dir holds users/app credentials this state
  # knows nothing of: start it afresh. Only while our MariaDB is down, of course.
  if ! lab_alive "$OSLAB_RUN/mariadb.pid"; then
    [[ -s "$OSLAB_STATE/instance-id" ]] || head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$OSLAB_STATE/instance-id"
    if [[ "$(cat "$OSLAB_FAST/instance-id" 2>/dev/null)" != "$(<"$OSLAB_STATE/instance-id")" ]]; then
      [[ -d "$OSLAB_FAST" ]] && lab_log "discarding $OSLAB_FAST (from another or a purged state dir)"
      rm -rf "$OSLAB_FAST"
      mkdir -p "$OSLAB_FAST"
      cp "$OSLAB_STATE/instance-id" "$OSLAB_FAST/instance-id"
    fi
  fi
  mkdir -p "$OSLAB_FAST/rabbitmq"

  oslab_render keystone.conf "$OSLAB_ETC/keystone/keystone.conf"
  oslab_render placement.conf "$OSLAB_ETC/placement/placement.conf"
  oslab_render glance-api.conf "$OSLAB_ETC/glance/glance-api.conf"
  oslab_render glance-api-paste.ini "$OSLAB_ETC/glance/glance-api-paste.ini"
  oslab_render nova.conf "$OSLAB_ETC/nova/nova.conf"
  oslab_render nova-api-paste.ini "$OSLAB_ETC/nova/api-paste.ini"
  oslab_render neutron.conf "$OSLAB_ETC/neutron/neutron.conf"
  oslab_render ml2_conf.ini "$OSLAB_ETC/neutron/plugins/ml2/ml2_conf.ini"
  oslab_render neutron-api-paste.ini "$OSLAB_ETC/neutron/api-paste.ini"
  oslab_render cinder.conf "$OSLAB_ETC/cinder/cinder.conf"
  oslab_render cinder-api-paste.ini "$OSLAB_ETC/cinder/api-paste.ini"
  oslab_render cinder-resource_filters.json "$OSLAB_ETC/cinder/resource_filters.json"
  oslab_render rabbitmq.conf "$OSLAB_ETC/rabbitmq/rabbitmq.conf"
  echo '[].' >"$OSLAB_ETC/rabbitmq/enabled_plugins"
  : >"$OSLAB_ETC/rabbitmq/rabbitmq-env.conf"   # not /etc/rabbitmq/rabbitmq-env.conf
  for ((i = 1; i <= LAB_OS_COMPUTE_COUNT; i++)); do
    printf '# nova-compute %d of the lab: its service host and hypervisor name\n[DEFAULT]\nhost = lab-compute-%d\n' \
      "$i" "$i" >"$OSLAB_ETC/nova/compute-$i.conf"
  done

  # Keystone's Fernet keys (tokens) and credential keys: the files keystone-manage
  # fernet_setup / credential_setup write (0 = staged, 1 = primary; urlsafe base64 of
  # 32 random bytes), without two more Python start-ups.
  local d n
  for d in fernet-keys credential-keys; do
    mkdir -p "$OSLAB_STATE/keystone/$d" && chmod 700 "$OSLAB_STATE/keystone/$d"
    for n in 0 1; do
      [[ -s "$OSLAB_STATE/keystone/$d/$n" ]] && continue
      (umask 077 && head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' >"$OSLAB_STATE/keystone/$d/$n")
    done
  done
}

# ---------------------------------------------------------------- MariaDB, RabbitMQ
oslab_up_infra() {
  local data="$OSLAB_FAST/mysql" sock="$OSLAB_FAST/mysqld.sock"
  # Every port before anything starts: a foreign server on e.g. the keystone port would
  # otherwise answer our readiness probes, and a late refusal leaves half a cloud up.
  oslab_port_free mariadb "$LAB_PORT_MYSQL"
  oslab_port_free epmd "$LAB_PORT_EPMD"
  oslab_port_free rabbitmq "$LAB_PORT_RABBIT"
  oslab_port_free rabbitmq "$LAB_PORT_RABBIT_DIST"
  oslab_port_free keystone "$LAB_PORT_KEYSTONE"
  oslab_port_free placement "$LAB_PORT_PLACEMENT"
  oslab_port_free glance-api "$LAB_PORT_GLANCE"
  oslab_port_free neutron-server "$LAB_PORT_NEUTRON"
  oslab_port_free nova-api "$LAB_PORT_NOVA"
  oslab_port_free cinder-api "$LAB_PORT_CINDER"

  if ! lab_alive "$OSLAB_RUN/mariadb.pid" && [[ ! -d "$data/mysql" ]]; then
    # a new, empty DB: whatever was derived from an old one is void
    rm -rf "$data" "$OSLAB_FAST/done" "$OSLAB_STATE/appcred.json"
    mariadb-install-db --no-defaults --datadir="$data" --user=root --skip-test-db \
      --auth-root-authentication-method=normal >"$OSLAB_LOG/mariadb-install.log" 2>&1 ||
      lab_die "mariadb-install-db failed" "$OSLAB_LOG/mariadb-install.log"
  fi
  # Disposable data: no fsync, no doublewrite, no binlog. Logs go to stderr (our log).
  oslab_daemon mariadb /usr/sbin/mariadbd --no-defaults --datadir="$data" --user=root \
    --bind-address="$LAB_HOST" --port="$LAB_PORT_MYSQL" --socket="$sock" \
    --pid-file="$OSLAB_FAST/mysqld.pid" --skip-name-resolve --skip-log-bin \
    --innodb-buffer-pool-size=128M --innodb-log-file-size=64M \
    --innodb-flush-log-at-trx-commit=0 --innodb-flush-method=nosync --innodb-doublewrite=0 \
    --max-connections=1000 --character-set-server=utf8mb3 --collation-server=utf8mb3_general_ci

  # RabbitMQ as root, straight from /usr/lib/rabbitmq/bin (Debian's /usr/sbin wrapper
  # switches to the rabbitmq user and its /var/lib data). Its own epmd in the foreground
  # first, so that erl does not daemonize one outside our process group; the Erlang
  # distribution listener is pinned to 127.0.0.1 (it binds 0.0.0.0 otherwise).
  oslab_daemon epmd env ERL_EPMD_ADDRESS="$LAB_HOST" ERL_EPMD_PORT="$LAB_PORT_EPMD" \
    /usr/bin/epmd -address "$LAB_HOST" -port "$LAB_PORT_EPMD"
  oslab_wait_tcp epmd "$LAB_PORT_EPMD" 30
  oslab_daemon rabbitmq env HOME="$OSLAB_FAST/rabbitmq" ERL_EPMD_PORT="$LAB_PORT_EPMD" \
    RABBITMQ_NODENAME=lab@localhost \
    RABBITMQ_CONF_ENV_FILE="$OSLAB_ETC/rabbitmq/rabbitmq-env.conf" \
    RABBITMQ_CONFIG_FILE="$OSLAB_ETC/rabbitmq/rabbitmq.conf" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$OSLAB_ETC/rabbitmq/advanced.config" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$OSLAB_ETC/rabbitmq/enabled_plugins" \
    RABBITMQ_MNESIA_BASE="$OSLAB_FAST/rabbitmq/mnesia" \
    RABBITMQ_LOG_BASE="$OSLAB_LOG/rabbitmq" \
    RABBITMQ_DIST_PORT="$LAB_PORT_RABBIT_DIST" \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    /usr/lib/rabbitmq/bin/rabbitmq-server

  oslab_wait_tcp mariadb "$LAB_PORT_MYSQL" 120
  oslab_once db-users mariadb --no-defaults -uroot --socket="$sock" -e "
    CREATE USER IF NOT EXISTS 'lab'@'$LAB_HOST' IDENTIFIED BY '$OSLAB_SERVICE_PASSWORD';
    GRANT ALL ON *.* TO 'lab'@'$LAB_HOST';
    $(printf 'CREATE DATABASE IF NOT EXISTS %s; ' keystone placement glance nova_api nova nova_cell0 neutron cinder)"
  # RabbitMQ boots in the background (~5-15 s); the chains that need it wait for it.
}

# ---------------------------------------------------------------- one-time schemas
oslab_db_keystone() {
  local c=(--config-file "$OSLAB_ETC/keystone/keystone.conf")
  oslab_run keystone-manage keystone.cmd.manage:main "${c[@]}" db_sync || return 1
  # admin user/project/role, roles member+reader, RegionOne, the identity endpoint
  oslab_run keystone-manage keystone.cmd.manage:main "${c[@]}" bootstrap \
    --bootstrap-password "$OSLAB_ADMIN_PASSWORD" --bootstrap-region-id RegionOne \
    --bootstrap-admin-url "$OSLAB_KEYSTONE_URL/v3/" \
    --bootstrap-internal-url "$OSLAB_KEYSTONE_URL/v3/" \
    --bootstrap-public-url "$OSLAB_KEYSTONE_URL/v3/"
}

# ---------------------------------------------------------------- start chains
# Each chain: schema (first time) -> start -> wait for its API. They run in parallel
# (background subshells: a lab_die there ends only that chain; the caller reports it).
oslab_chain_keystone() {
  oslab_once db-keystone oslab_db_keystone
  lab_service keystone openstack "$LAB_PORT_KEYSTONE" "$OSLAB_KEYSTONE_URL/v3" 300 2xx \
    env OS_KEYSTONE_CONFIG_FILES="$OSLAB_ETC/keystone/keystone.conf" \
    "$OSLAB_PY" "$OSLAB_DIR/launch.py" wsgi keystone "$LAB_HOST:$LAB_PORT_KEYSTONE" 8 \
    keystone.server.wsgi:initialize_public_application
  oslab_step bootstrap-identity "$OSLAB_PY" "$OSLAB_DIR/bootstrap.py" identity
  touch "$OSLAB_RUN/identity-ready"
}

oslab_chain_placement() {
  oslab_once db-placement oslab_run placement-manage placement.cmd.manage:main \
    --config-file "$OSLAB_ETC/placement/placement.conf" db sync
  lab_service placement openstack "$LAB_PORT_PLACEMENT" "http://$LAB_HOST:$LAB_PORT_PLACEMENT/" 300 2xx \
    env OS_PLACEMENT_CONFIG_DIR="$OSLAB_ETC/placement" \
    "$OSLAB_PY" "$OSLAB_DIR/launch.py" wsgi placement "$LAB_HOST:$LAB_PORT_PLACEMENT" 8 \
    placement.wsgi:init_application
}

oslab_chain_glance() {
  local c=(--config-file "$OSLAB_ETC/glance/glance-api.conf")
  oslab_once db-glance oslab_run glance-manage glance.cmd.manage:main "${c[@]}" db_sync
  lab_service glance-api openstack "$LAB_PORT_GLANCE" "http://$LAB_HOST:$LAB_PORT_GLANCE/healthcheck" 300 2xx \
    "$OSLAB_PY" "$OSLAB_DIR/launch.py" run glance-api glance.cmd.api:main "${c[@]}"
}

oslab_chain_neutron() {
  local c=(--config-file "$OSLAB_ETC/neutron/neutron.conf" --config-file "$OSLAB_ETC/neutron/plugins/ml2/ml2_conf.ini")
  oslab_once db-neutron oslab_run neutron-db-manage neutron.db.migration.cli:main "${c[@]}" upgrade heads
  oslab_wait_tcp rabbitmq "$LAB_PORT_RABBIT" 300
  # PYTHONPATH: the lab_bindall mechanism driver and its entry point (pylib/); no
  # __pycache__ written into the repository
  # LAB_FIP_*: where lab_ml2 routes floating IPs (the host's leg on the external network)
  lab_service neutron-server openstack "$LAB_PORT_NEUTRON" "http://$LAB_HOST:$LAB_PORT_NEUTRON/" 300 2xx \
    env PYTHONPATH="$OSLAB_DIR/pylib" PYTHONDONTWRITEBYTECODE=1 LAB_FIP_DEV="$OSLAB_EXT_DEV" LAB_FIP_SRC="$OSLAB_PUBLIC_GW" \
    "$OSLAB_PY" "$OSLAB_DIR/launch.py" run neutron-server neutron.cmd.eventlet.server:main "${c[@]}"
}

oslab_chain_nova() {
  local c=(--config-file "$OSLAB_ETC/nova/nova.conf") s i t0
  oslab_once db-nova "$OSLAB_PY" "$OSLAB_DIR/db_nova.py" "$OSLAB_ETC/nova/nova.conf" \
    "$OSLAB_DB/nova_cell0?charset=utf8"
  oslab_wait_tcp rabbitmq "$LAB_PORT_RABBIT" 300
  lab_service nova-api openstack "$LAB_PORT_NOVA" "http://$LAB_HOST:$LAB_PORT_NOVA/" 300 2xx \
    "$OSLAB_PY" "$OSLAB_DIR/launch.py" run nova-api nova.cmd.api:main "${c[@]}"
  # conductor, scheduler and compute authenticate to placement as they start, and
  # exit when they cannot: the service users must exist first.
  t0=$EPOCHREALTIME
  until [[ -e "$OSLAB_RUN/identity-ready" ]]; do
    [[ -e "$OSLAB_RUN/identity-failed" ]] && lab_die "nova: not starting its services, keystone failed"
    awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { exit !(b - a > 600) }' &&
      lab_die "nova: keystone's identity bootstrap not done after 600 s"
    sleep 0.5
  done
  for s in conductor scheduler; do
    oslab_daemon "nova-$s" "$OSLAB_PY" "$OSLAB_DIR/launch.py" run "nova-$s" "nova.cmd.$s:main" "${c[@]}"
  done
  # the lab's driver (nova.virt.lab, see launch.py) and what it needs to make machines
  for ((i = 1; i <= LAB_OS_COMPUTE_COUNT; i++)); do
    oslab_daemon "nova-compute-$i" env LAB_NOVA_VIRT="$OSLAB_DIR/pylib/nova_virt_lab.py" \
      LAB_STATE="$LAB_STATE" OSLAB_STATE="$OSLAB_STATE" LAB_MACHINE_SH="$OSLAB_MACHINE" \
      PYTHONPATH="$OSLAB_DIR/pylib" PYTHONDONTWRITEBYTECODE=1 \
      "$OSLAB_PY" "$OSLAB_DIR/launch.py" run nova-compute nova.cmd.compute:main \
      "${c[@]}" --config-file "$OSLAB_ETC/nova/compute-$i.conf"
  done
}

oslab_chain_cinder() {
  local c=(--config-file "$OSLAB_ETC/cinder/cinder.conf") s
  oslab_once db-cinder oslab_run cinder-manage cinder.cmd.manage:main "${c[@]}" db sync
  oslab_wait_tcp rabbitmq "$LAB_PORT_RABBIT" 300
  lab_service cinder-api openstack "$LAB_PORT_CINDER" "http://$LAB_HOST:$LAB_PORT_CINDER/healthcheck" 300 2xx \
    "$OSLAB_PY" "$OSLAB_DIR/launch.py" run cinder-api cinder.cmd.api:main "${c[@]}"
  oslab_daemon cinder-scheduler "$OSLAB_PY" "$OSLAB_DIR/launch.py" run cinder-scheduler cinder.cmd.scheduler:main "${c[@]}"
  # the lab's volume driver (pylib/lab_cinder.py: a directory per volume)
  oslab_daemon cinder-volume env PYTHONPATH="$OSLAB_DIR/pylib" PYTHONDONTWRITEBYTECODE=1 OSLAB_STATE="$OSLAB_STATE" \
    "$OSLAB_PY" "$OSLAB_DIR/launch.py" run cinder-volume cinder.cmd.volume:main "${c[@]}"
}

# ---------------------------------------------------------------- outputs
oslab_write_outputs() {
  local id secret f="$OSLAB_STATE/clouds.yaml" auth="$OSLAB_KEYSTONE_URL/v3" common
  read -r id secret < <("$OSLAB_PY" -c 'import json, sys
d = json.load(open(sys.argv[1])); print(d["id"], d["secret"])' "$OSLAB_STATE/appcred.json") ||
    lab_die "cannot read $OSLAB_STATE/appcred.json"
  common="    region_name: RegionOne
    interface: public
    identity_api_version: 3"
  (umask 077 && cat >"$f.tmp" <<EOF
# written by tests/lab/up.sh openstack: the lab's OpenStack on $LAB_HOST (test credentials)
clouds:
  lab-admin:
    auth:
      auth_url: $auth
      username: admin
      password: $OSLAB_ADMIN_PASSWORD
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
$common
  lab-demo:
    auth:
      auth_url: $auth
      username: demo
      password: $OSLAB_DEMO_PASSWORD
      project_name: demo
      user_domain_name: Default
      project_domain_name: Default
$common
  lab-demo-appcred:
    auth_type: v3applicationcredential
    auth:
      auth_url: $auth
      application_credential_id: $id
      application_credential_secret: $secret
$common
  lab-quota:
    auth:
      auth_url: $auth
      username: quota-test
      password: $OSLAB_QUOTA_PASSWORD
      project_name: quota-test
      user_domain_name: Default
      project_domain_name: Default
$common
EOF
  ) && mv "$f.tmp" "$f"
  {
    echo "# written by tests/lab/up.sh openstack: Keystone, Nova (fake driver), Neutron, Glance, Cinder, Placement"
    echo "export OS_CLIENT_CONFIG_FILE=$f"
    echo "export OS_CLOUD=lab-demo-appcred   # also: lab-demo, lab-admin, lab-quota"
    echo "export LAB_OS_AUTH_URL=$auth LAB_OS_REGION=RegionOne"
    echo "# for tests of plain OS_* variables (unset OS_CLOUD there): user/project demo, domain Default"
    echo "export LAB_OS_DEMO_PASSWORD=$OSLAB_DEMO_PASSWORD"
    echo "export LAB_OS_APPCRED_ID=$id"
    echo "export LAB_OS_APPCRED_SECRET=$secret"
    echo "export LAB_OS_ADMIN_PASSWORD=$OSLAB_ADMIN_PASSWORD LAB_OS_QUOTA_PASSWORD=$OSLAB_QUOTA_PASSWORD"
    echo "export LAB_OS_COMPUTE_HOSTS='$OSLAB_COMPUTE_NAMES'   # fake hypervisors (anti-affinity room)"
    echo "export LAB_OS_NODE_IMAGE=debian-12-node   # boots machines (lab_machine=true); cirros: fake servers"
    echo "export LAB_OS_MACHINE=$OSLAB_MACHINE   # the servers' machines: os-<server uuid> (list, exec, ...)"
    echo "export LAB_OS_CLI=$OSLAB_CLI"
    lab_env_noproxy
  } >"$OSLAB_STATE/env.sh"
}

# ---------------------------------------------------------------- up / down
lab_up_openstack() {
  local c pid t0=$EPOCHREALTIME failed=() chains=(keystone placement glance neutron nova cinder)
  local -A pids=()
  [[ $EUID -eq 0 ]] || lab_die "component openstack needs root (apt, MariaDB and RabbitMQ run as root)"
  # a sourced env.sh must not steer our own clients (bootstrap.py, the services)
  unset "${!OS_@}"
  [[ -n "${LAB_OS_FAST:-}" || ( -d /dev/shm && -w /dev/shm ) ]] || OSLAB_FAST="$OSLAB_STATE/fast"
  oslab_install
  oslab_export
  oslab_prepare
  oslab_ext_up
  # the node image (debootstrap ~2 min when not cached) while the services start
  "$OSLAB_DIR/node-image.sh" >"$OSLAB_RUN/node-image.out" 2>"$OSLAB_LOG/node-image.log" &
  local image_pid=$!
  oslab_up_infra
  lab_log "mariadb ready, rabbitmq started ($(lab_since "$t0") s)"

  for c in "${chains[@]}"; do
    ("oslab_chain_$c") &
    pids[$c]=$!
  done
  # keystone first: when it fails, nova (waiting for the identity bootstrap) must know
  for c in "${chains[@]}"; do
    if ! wait "${pids[$c]}"; then
      failed+=("$c")
      [[ "$c" == keystone ]] && touch "$OSLAB_RUN/identity-failed"
    fi
  done
  ((${#failed[@]} == 0)) ||
    lab_die "openstack: start-up failed in: ${failed[*]} (see above; logs in $OSLAB_LOG).
tests/lab/down.sh openstack stops what did start."
  lab_log "all OpenStack APIs answer ($(lab_since "$t0") s)"

  wait "$image_pid" || lab_die "openstack: the node image could not be made" "$OSLAB_LOG/node-image.log"
  read -r OSLAB_NODE_IMAGE_FILE OSLAB_NODE_IMAGE_KEY <"$OSLAB_RUN/node-image.out"
  export OSLAB_NODE_IMAGE_FILE OSLAB_NODE_IMAGE_KEY
  if ! (oslab_step bootstrap-resources "$OSLAB_PY" "$OSLAB_DIR/bootstrap.py" resources); then
    # a service that died at start-up (e.g. nova-compute) is the likelier cause
    for pid in "$OSLAB_RUN"/*.pid; do
      c=$(basename "$pid" .pid)
      lab_alive "$pid" || lab_die "openstack: $c is not running" "$OSLAB_LOG/$c.log"
    done
    exit 1
  fi
  oslab_write_outputs
  lab_log "openstack ready in $(lab_since "$t0") s: OS_CLOUD=lab-demo-appcred OS_CLIENT_CONFIG_FILE=$OSLAB_STATE/clouds.yaml"
}

lab_down_openstack() {
  local f n stoppers=() rc=0
  # Every OpenStack service at once (each lab_stop may wait up to 10 s), then the
  # bus and the database they use.
  for f in "$OSLAB_RUN"/*.pid; do
    [[ -e "$f" ]] || continue
    n=$(basename "$f" .pid)
    case "$n" in mariadb | rabbitmq | epmd) continue ;; esac
    lab_stop "$f" "$n" &
    stoppers+=($!)
  done
  for n in "${stoppers[@]}"; do wait "$n" || rc=1; done
  lab_stop "$OSLAB_RUN/rabbitmq.pid" rabbitmq
  lab_stop "$OSLAB_RUN/epmd.pid" epmd
  lab_stop "$OSLAB_RUN/mariadb.pid" mariadb
  rm -f "$OSLAB_RUN"/identity-{ready,failed}
  oslab_down_machines || rc=1
  if [[ "${LAB_PURGE:-0}" == 1 ]]; then
    rm -rf "$OSLAB_FAST" && lab_log "removed $OSLAB_FAST (MariaDB data, RabbitMQ mnesia)"
  fi
  return "$rc"
}

# oslab_machines : the machines of the lab's compute driver (os-<server uuid>)
oslab_machines() {
  local f
  for f in "$LAB_STATE/nodes/machines"/os-*; do [[ -e "$f" || -L "$f" ]] && basename "$f"; done
  return 0
}

# oslab_ext_up : the host's leg on the external network "public": a veth pair (no kernel
# module needed, unlike a dummy) holding $OSLAB_PUBLIC_GW/32. No route to the external
# range: lab_ml2 adds one /32 route per associated floating IP (the range may hold
# addresses the host needs, e.g. a registry gateway in TEST-NET-3 on a CI machine).
oslab_ext_up() {
  ip link show "$OSLAB_EXT_DEV" >/dev/null 2>&1 || ip link add "$OSLAB_EXT_DEV" type veth peer name "${OSLAB_EXT_DEV}0"
  ip addr replace "$OSLAB_PUBLIC_GW/32" dev "$OSLAB_EXT_DEV"
  ip link set "${OSLAB_EXT_DEV}0" up
  ip link set "$OSLAB_EXT_DEV" up
}

# oslab_down_machines : power cut + delete of every machine of the servers, their lab
# segments (os*), the floating IP routes and NAT table; the volumes' data goes back to
# cinder's store
oslab_down_machines() {
  local n deleters=() rc=0 seg
  for n in $(oslab_machines); do
    { "$OSLAB_MACHINE" kill "$n" && oslab_return_volumes "$n" && "$OSLAB_MACHINE" delete "$n" --timeout 5; } \
      >>"$OSLAB_LOG/machines.log" 2>&1 &
    deleters+=($!)
  done
  for n in "${deleters[@]}"; do wait "$n" || rc=1; done
  ((${#deleters[@]} == 0)) || lab_log "deleted ${#deleters[@]} machine(s) of servers"
  if [[ -d "$LAB_STATE/nodes/nets" ]]; then
    for seg in "$LAB_STATE/nodes/nets"/os*/; do
      [[ -d "$seg" ]] || continue
      "$OSLAB_MACHINE" net-down "$(basename "$seg")" >>"$OSLAB_LOG/machines.log" 2>&1 || rc=1
    done
  fi
  if command -v nft >/dev/null && nft list table ip "$OSLAB_NFT_TABLE" >/dev/null 2>&1; then
    nft delete table ip "$OSLAB_NFT_TABLE" || rc=1
  fi
  if ip link show "$OSLAB_EXT_DEV" >/dev/null 2>&1; then   # its /32 routes go with it
    ip link del "$OSLAB_EXT_DEV" || rc=1
  fi
  return "$rc"
}

# oslab_return_volumes MACHINE : attached volumes (directories) back to cinder's store
oslab_return_volumes() {
  local d v
  d="$OSLAB_STATE/nova/machines/${1#os-}/volumes"
  [[ -d "$d" ]] || return 0
  mkdir -p "$OSLAB_STATE/cinder/lab-volumes"
  for v in "$d"/*; do
    [[ -d "$v" && ! -L "$v" ]] || continue
    mv -T "$v" "$OSLAB_STATE/cinder/lab-volumes/$(basename "$v")" 2>/dev/null || mv "$v" "$OSLAB_STATE/cinder/lab-volumes/$(basename "$v").$$"
  done
}

# ---------------------------------------------------------------- checks (check.sh)
# With env.sh sourced: OS_CLOUD=lab-demo-appcred, so plain "openstack" is the demo tenant.
lab_check_openstack() {
  local cli=${LAB_OS_CLI:-$OSLAB_CLI} plain=(env -u OS_CLOUD -u OS_CLIENT_CONFIG_FILE
    OS_AUTH_URL="$LAB_OS_AUTH_URL" OS_REGION_NAME="$LAB_OS_REGION" OS_IDENTITY_API_VERSION=3)
  lab_check "keystone: token for $OS_CLOUD (clouds.yaml)" "$cli" token issue -f value -c project_id
  lab_check "nova: flavors m1.tiny, m1.small, m1.medium, m1.large" oslab_check_flavors "$cli"
  lab_check "neutron: create + delete a network as $OS_CLOUD" oslab_check_network "$cli"
  lab_check "plain OS_* variables: application credential" "${plain[@]}" \
    OS_AUTH_TYPE=v3applicationcredential OS_APPLICATION_CREDENTIAL_ID="$LAB_OS_APPCRED_ID" \
    OS_APPLICATION_CREDENTIAL_SECRET="$LAB_OS_APPCRED_SECRET" "$cli" token issue -f value -c project_id
  lab_check "plain OS_* variables: password of demo" "${plain[@]}" OS_USERNAME=demo \
    OS_PASSWORD="$LAB_OS_DEMO_PASSWORD" OS_PROJECT_NAME=demo OS_USER_DOMAIN_NAME=Default \
    OS_PROJECT_DOMAIN_NAME=Default "$cli" token issue -f value -c project_id
  lab_check "quotas: demo roomy, quota-test tiny" oslab_check_quotas "$cli"
  lab_check "nova-compute up on $LAB_OS_COMPUTE_HOSTS" oslab_check_computes "$cli"
  lab_check "glance: node image ${LAB_OS_NODE_IMAGE:-debian-12-node} active (lab_machine=true)" \
    oslab_check_node_image "$cli"
  lab_check "nova: a server of ${LAB_OS_NODE_IMAGE:-debian-12-node} boots a machine: SSH to its floating IP, user data, delete leaves nothing" \
    "$OSLAB_PY" "$OSLAB_DIR/smoke_machine.py"
}

oslab_check_node_image() {
  local props
  props=$("$1" image show "${LAB_OS_NODE_IMAGE:-debian-12-node}" -f value -c status -c properties) || return 1
  if ! grep -q "^active" <<<"$props" || ! grep -q "lab_machine.*true" <<<"$props"; then echo "$props"; return 1; fi
  echo "active, $(grep -o "'lab_image_key': '[0-9a-f]*'" <<<"$props")"
}

oslab_check_flavors() {
  local have f
  have=$("$1" flavor list -f value -c Name) || return 1
  for f in m1.tiny m1.small m1.medium m1.large; do
    grep -qx "$f" <<<"$have" || { echo "flavor $f missing; have: $have"; return 1; }
  done
  echo "$(wc -l <<<"$have") flavors"
}

oslab_check_network() {
  local name="lab-smoke-$$-$RANDOM" id
  id=$("$1" network create "$name" -f value -c id) || return 1
  "$1" network delete "$id" || return 1
  echo "network $id created and deleted"
}

oslab_check_quotas() {
  # quota show of one's own project, as the project's user (what a preflight sees)
  local demo quota
  demo=$("$1" quota show -f json) || return 1
  quota=$("$1" --os-cloud lab-quota quota show -f json) || return 1
  "$OSLAB_PY" - "$demo" "$quota" <<'EOF'
import json, sys
demo, quota = (json.loads(a) for a in sys.argv[1:3])
def check(name, got, want):
    bad = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
    if bad:
        sys.exit('%s quotas (have, want): %s' % (name, bad))
check('demo', demo, {'instances': 20, 'cores': 40, 'ram': 81920, 'ports': 100,
                     'floating-ips': 20, 'secgroup-rules': 200, 'volumes': 20, 'gigabytes': 1000})
check('quota-test', quota, {'instances': 1, 'cores': 1, 'ram': 512, 'floating-ips': 0})
print('demo: 20 instances/40 cores/80 GiB; quota-test: 1 instance/1 core/512 MB/0 floating IPs')
EOF
}

oslab_check_computes() {
  local up want=$LAB_OS_COMPUTE_HOSTS h
  up=$("$1" --os-cloud lab-admin compute service list --service nova-compute -f value -c Host -c State) || return 1
  for h in $want; do
    grep -qx "$h up" <<<"$up" || { echo "nova-compute on $h is not up:"; echo "$up"; return 1; }
  done
  echo "$(wc -w <<<"$want") hosts up"
}
