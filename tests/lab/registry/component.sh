# shellcheck shell=bash
# tests/lab/registry/component.sh - "registry": a real OCI registry (Debian's docker-registry,
# distribution 2.8.2) over TLS with basic auth (sourced after lib.sh).
#
#   address   $LAB_REGISTRY_ADDR:$LAB_PORT_REGISTRY (10.239.0.1:5000), the same from the
#             host and from the lab's machines. The address sits on the host's veth
#             "labreg0" (a /32, no route; a veth because this kernel has no dummy module),
#             so the host accepts it as a local address from any interface. Machines send to
#             it through the host's leg on their network: the cluster lab's machines by their
#             default route (10.236.0.1), the kube workers (no default route) by a /32 route
#             via their gateway 10.231.0.1 that tests/lab/kube/component.sh gives them. The
#             host keeps ip_forward=0: nothing is forwarded, the packets are for the host.
#   TLS       a lab CA made by openssl (EC P-256), server certificate with IP SAN = the
#             address: $LAB_STATE/registry/pki/; made once, kept across restarts (a new
#             address gives a new server certificate). $LAB_REGISTRY_CERT_DIR holds only
#             ca.crt (skopeo --cert-dir / containerd certs.d / docker certs.d layout).
#   auth      htpasswd (bcrypt): user "lab", password generated once into
#             $LAB_STATE/registry/password (0600); auth.json (0600) = the same as a docker
#             config ({"auths": {...}}: skopeo --authfile, kubectl create secret generic
#             --type=kubernetes.io/dockerconfigjson --from-file=.dockerconfigjson=...)
#   storage   filesystem under $LAB_STATE/registry/data (kept across restarts; delete enabled)
#   log       $LAB_STATE/registry/registry.log (truncated at each start): the registry's own
#             lines (logrus text, level info) on stderr, and the access log on stdout, one
#             Apache combined line per request, e.g.
#               10.239.0.1 - - [02/Jan/2006:15:04:05 +0000] "POST /v2/lab/x/blobs/uploads/ HTTP/1.1" 202 0 "" "skopeo/1.9.3"
#             (first field: the client, e.g. 10.231.0.11 for a kube worker). A blob upload is
#             POST + PATCH + PUT .../blobs/uploads/...; a blob known in another repository is
#             mounted instead: one "POST /v2/R/blobs/uploads/?from=..&mount=sha256:.." 201.
#             The logrus lines ("authorized request", "response completed") repeat method and
#             URI as http.request.method=/http.request.uri=: count the access lines
#             (grep '"POST /v2/...'), not every line naming the path.
#
# kube lab workers trust the CA through containerd's certs.d (hosts.toml); credentials come
# only from imagePullSecrets. Started after kube, the registry also updates running workers
# (route + certs.d). Settings: LAB_REGISTRY_ADDR, LAB_PORT_REGISTRY (lib.sh).
# State: $LAB_STATE/registry/{config.yml,htpasswd,password,auth.json,pki,certs,data,run,
# registry.log,env.sh}. down.sh stops the process and removes labreg0; --purge registry
# also deletes the data, CA and password.

REG_S="$LAB_STATE/registry"
REG_DEV=labreg0
REG_USER=lab
REG_HOSTPORT="$LAB_REGISTRY_ADDR:$LAB_PORT_REGISTRY"
REG_PID="$REG_S/run/registry.pid"
REG_LOG="$REG_S/registry.log"

# reg_net_up : labreg0 (veth, its peer labreg0p) up with the registry address as a /32
reg_net_up() {
  ip link show "$REG_DEV" >/dev/null 2>&1 || ip link add "$REG_DEV" type veth peer name "${REG_DEV}p"
  ip addr replace "$LAB_REGISTRY_ADDR/32" dev "$REG_DEV"
  ip link set "${REG_DEV}p" up
  ip link set "$REG_DEV" up
}

reg_pki() {
  local p="$REG_S/pki"
  mkdir -p "$p" "$REG_S/certs"; chmod 700 "$p"
  if [[ ! -f "$p/ca.crt" || ! -f "$p/ca.key" ]]; then
    rm -f "$p"/*
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -subj /CN=provisioner-lab-registry-ca -keyout "$p/ca.key" -out "$p/ca.crt" 2>/dev/null ||
      lab_die "openssl: registry CA failed"
  fi
  if [[ "$(cat "$p/params" 2>/dev/null)" != "$LAB_REGISTRY_ADDR" || ! -f "$p/server.crt" ]]; then
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$LAB_REGISTRY_ADDR" \
      -keyout "$p/server.key" -out "$p/server.csr" 2>/dev/null || lab_die "openssl: registry server key failed"
    openssl x509 -req -in "$p/server.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
      -days 3650 -out "$p/server.crt" -extfile <(printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\n' \
      "$LAB_REGISTRY_ADDR") 2>/dev/null || lab_die "openssl: registry server certificate failed"
    rm -f "$p/server.csr"
    echo "$LAB_REGISTRY_ADDR" >"$p/params"
  fi
  # only the CA: a cert dir with a *.key but no *.cert is an error for skopeo
  cp "$p/ca.crt" "$REG_S/certs/ca.crt"
}

reg_auth() {
  local pw
  if [[ ! -s "$REG_S/password" ]]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$REG_S/password")
  fi
  chmod 600 "$REG_S/password"
  pw=$(<"$REG_S/password")
  # bcrypt (-B), password on stdin (-i), not on the command line
  htpasswd -iBc "$REG_S/htpasswd.tmp" "$REG_USER" <<<"$pw" 2>/dev/null || lab_die "htpasswd failed"
  mv "$REG_S/htpasswd.tmp" "$REG_S/htpasswd"
  (umask 077
    printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$REG_HOSTPORT" "$(printf '%s:%s' "$REG_USER" "$pw" | base64 -w0)" \
      >"$REG_S/auth.json")
}

reg_config() {   # 0600: it holds the upload-state secret
  (umask 077; : >"$REG_S/config.yml.tmp")
  cat >"$REG_S/config.yml.tmp" <<Y
# written by tests/lab/up.sh registry
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: $REG_S/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $REG_HOSTPORT
  secret: $(head -c 24 /dev/urandom | base64 | tr -d '/+=')
  tls:
    certificate: $REG_S/pki/server.crt
    key: $REG_S/pki/server.key
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: provisioner-lab-registry
    path: $REG_S/htpasswd
Y
  mv "$REG_S/config.yml.tmp" "$REG_S/config.yml"
}

# reg_kube_workers : when the kube lab runs, give its workers the route and certs.d now
# (workers made later get both from tests/lab/kube/component.sh)
reg_kube_workers() {
  local m="$LAB_DIR/nodes/machine.sh" w gw root d
  [[ -f "$LAB_STATE/kube/workers" ]] || return 0
  gw=$("$m" net-list 2>/dev/null | awk '$1 == "kube" { print $3 }')
  [[ -n "$gw" ]] || return 0
  for w in $(<"$LAB_STATE/kube/workers"); do
    [[ "$("$m" status "$w" 2>/dev/null | cut -d' ' -f1)" == running ]] || continue
    root=$("$m" root "$w") || continue
    d="$root/etc/containerd/certs.d/$REG_HOSTPORT"
    mkdir -p "$d"
    reg_hosts_toml "$d" "$REG_S/certs/ca.crt"
    "$m" exec "$w" ip route replace "$LAB_REGISTRY_ADDR/32" via "$gw" >/dev/null ||
      lab_log "WARNING: could not add the registry route in $w"
    lab_log "registry: kube worker $w trusts $REG_HOSTPORT"
  done
}

# reg_hosts_toml DIR CA : containerd (1.6, config_path) hosts.toml for the registry + its CA
# (the paths are the ones inside a worker: DIR = <root>/etc/containerd/certs.d/HOST:PORT)
reg_hosts_toml() {
  local d=$1 ca=$2 hp
  hp=$(basename "$d")
  cp "$ca" "$d/ca.crt"
  # only the top-level server (+ its ca): a [host."https://HOST:PORT"] section would be
  # tried first and the server again after it, without that section's ca (a failed pull,
  # e.g. 401, then also logs "tls: bad certificate" from the second attempt)
  cat >"$d/hosts.toml" <<T
# written by tests/lab (registry): no credentials here, they come from imagePullSecrets
server = "https://$hp"
ca = "/etc/containerd/certs.d/$hp/ca.crt"
T
}

lab_up_registry() {
  local t0=$EPOCHREALTIME url="https://$REG_HOSTPORT/v2/"
  [[ $EUID -eq 0 ]] || lab_die "registry needs root (an address on a host interface)"
  if ! command -v docker-registry >/dev/null || ! command -v htpasswd >/dev/null || ! command -v skopeo >/dev/null; then
    reg_install
  fi
  mkdir -p "$REG_S/run" "$REG_S/data"
  reg_net_up
  reg_pki
  if lab_alive "$REG_PID"; then
    CURL_CA_BUNDLE=$REG_S/certs/ca.crt lab_wait_http registry "$url" 20 "$REG_PID" any ||
      lab_die "$LAB_WAIT_ERR (it is ours: tests/lab/down.sh registry stops it)" "$REG_LOG"
    lab_log "registry already running on $REG_HOSTPORT"
  else
    if (exec 3<>"/dev/tcp/$LAB_REGISTRY_ADDR/$LAB_PORT_REGISTRY") 2>/dev/null; then
      lab_die "$REG_HOSTPORT (for the registry) is held by a process this lab did not start:
$(ss -ltnpH "sport = :$LAB_PORT_REGISTRY" 2>/dev/null || true)
Stop it, or choose another address/port (LAB_REGISTRY_ADDR, LAB_PORT_REGISTRY)."
    fi
    reg_auth
    reg_config
    lab_log "starting registry on $REG_HOSTPORT (log: $REG_LOG)"
    lab_spawn "$REG_PID" "$REG_LOG" docker-registry serve "$REG_S/config.yml"
    # /v2/ answers 401 without credentials: any status means up (and TLS verified with the CA)
    if ! CURL_CA_BUNDLE=$REG_S/certs/ca.crt lab_wait_http registry "$url" 30 "$REG_PID" any; then
      lab_stop "$REG_PID" registry
      lab_die "$LAB_WAIT_ERR" "$REG_LOG"
    fi
    lab_log "registry ready in $(lab_since "$t0") s"
  fi
  reg_kube_workers
  {
    echo "# written by tests/lab/up.sh registry: docker-registry (distribution $(docker-registry --version | awk '{print $3}')), TLS + basic auth"
    echo "export LAB_REGISTRY=$REG_HOSTPORT"
    echo "export LAB_REGISTRY_URL=https://$REG_HOSTPORT"
    echo "export LAB_REGISTRY_USER=$REG_USER"
    echo "export LAB_REGISTRY_PASSWORD_FILE=$REG_S/password"
    echo "export LAB_REGISTRY_AUTH_FILE=$REG_S/auth.json   # {\"auths\":{...}}: skopeo --authfile, .dockerconfigjson"
    echo "export LAB_REGISTRY_CA=$REG_S/certs/ca.crt"
    echo "export LAB_REGISTRY_CERT_DIR=$REG_S/certs   # only ca.crt: skopeo --cert-dir / --dest-cert-dir"
    echo "export LAB_REGISTRY_LOG=$REG_LOG   # access log: one line per request (method, path, status)"
    echo "export LAB_REGISTRY_DATA=$REG_S/data"
    lab_env_noproxy
    echo "case \",\${NO_PROXY:-},\" in *,$LAB_REGISTRY_ADDR,*) ;; *) export NO_PROXY=\"$LAB_REGISTRY_ADDR,\$NO_PROXY\" ;; esac"
    echo "case \",\${no_proxy:-},\" in *,$LAB_REGISTRY_ADDR,*) ;; *) export no_proxy=\"$LAB_REGISTRY_ADDR,\$no_proxy\" ;; esac"
  } >"$REG_S/env.sh"
}

reg_install() {
  local own_policy=0
  # docker-registry's postinst would start the Debian service (:5000 on every address). A
  # policy-rc.d answering 101 makes invoke-rc.d skip that; an existing one is left alone.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# temporary, from tests/lab/registry: no daemon starts during apt-get\nexit 101\n' \
      >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT   # also when lab_apt dies
  fi
  lab_apt docker-registry apache2-utils skopeo openssl
  if ((own_policy)); then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
}

lab_down_registry() {
  local rc=0
  lab_stop "$REG_PID" registry || rc=1
  if ip link show "$REG_DEV" >/dev/null 2>&1; then ip link del "$REG_DEV" || rc=1; fi
  return "$rc"
}

# ---------------------------------------------------------------- checks (check.sh)
# shellcheck disable=SC2016  # $1.. are expanded by the inner bash
lab_check_registry() {
  lab_check "registry $LAB_REGISTRY_URL/v2/ answers 401 without credentials" \
    bash -c '[[ $(curl -s -o /dev/null -w "%{http_code}" --max-time 5 --cacert "$1" "$2/v2/") == 401 ]]' _ \
    "$LAB_REGISTRY_CA" "$LAB_REGISTRY_URL"
  lab_check "registry: smoke test (tests/lab/registry/smoke.sh: auth, push, pull; kube pull if up)" \
    bash "$LAB_DIR/registry/smoke.sh"
}
