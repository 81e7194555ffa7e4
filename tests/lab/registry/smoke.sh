#!/usr/bin/env bash
# tests/lab/registry/smoke.sh [--no-kube] - with `tests/lab/up.sh registry` up, prove the lab
# registry works: /v2/ answers 200 with the lab credentials, 401 without them or with a wrong
# password, and TLS fails without the lab CA; skopeo pushes a small image made by
# tests/lab/kube/image.sh (unique per run), a second push of it uploads no blob (checked in
# the access log $LAB_REGISTRY_LOG), the manifest is found by digest, reading it needs the
# credentials, and it can be deleted.
# With the kube lab up too (unless --no-kube): the kube busybox image is pushed, a Pod pulls
# it BY DIGEST with imagePullPolicy Always and an imagePullSecret (kubernetes.io/
# dockerconfigjson) and completes; the same Pod without the secret fails to pull (401).
# Exit 0 = all passed.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$HERE/../lib.sh"
[[ -f "$LAB_STATE/registry/env.sh" ]] || lab_die "the registry is not up (tests/lab/up.sh registry)"
# shellcheck disable=SC1091
source "$LAB_STATE/registry/env.sh"
kube=1
[[ "${1:-}" != --no-kube ]] || kube=0
pass=0 fail=0
ok() { pass=$((pass + 1)); printf 'ok   %s\n' "$*"; }
bad() { fail=$((fail + 1)); printf 'FAIL %s\n' "$*"; }
t_all=$EPOCHREALTIME
creds="$LAB_REGISTRY_USER:$(<"$LAB_REGISTRY_PASSWORD_FILE")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@" || true; }
# uploads REPO : number of blob upload requests (POST/PATCH/PUT .../blobs/uploads/) for REPO
uploads() { grep -cE "\"(POST|PATCH|PUT) /v2/$1/blobs/uploads/" "$LAB_REGISTRY_LOG" || true; }

echo "--- registry $LAB_REGISTRY_URL (log: $LAB_REGISTRY_LOG)"
c=$(code --cacert "$LAB_REGISTRY_CA" -u "$creds" "$LAB_REGISTRY_URL/v2/")
if [[ "$c" == 200 ]]; then ok "GET /v2/ with the lab credentials: 200"; else bad "GET /v2/ with credentials: $c"; fi
c=$(code --cacert "$LAB_REGISTRY_CA" "$LAB_REGISTRY_URL/v2/")
if [[ "$c" == 401 ]]; then ok "GET /v2/ without credentials: 401"; else bad "GET /v2/ without credentials: $c"; fi
c=$(code --cacert "$LAB_REGISTRY_CA" -u "$LAB_REGISTRY_USER:wrong" "$LAB_REGISTRY_URL/v2/")
if [[ "$c" == 401 ]]; then ok "GET /v2/ with a wrong password: 401"; else bad "GET /v2/ with a wrong password: $c"; fi
c=$(code --cacert /etc/ssl/certs/ca-certificates.crt -u "$creds" "$LAB_REGISTRY_URL/v2/")
if [[ "$c" == 000 ]]; then ok "TLS is refused without the lab CA"; else bad "TLS without the lab CA: HTTP $c"; fi

# a small image, unique per run (so that the first push really uploads its blobs)
repo=lab/smoke
mkdir -p "$tmp/root/etc"
echo "registry smoke $(date +%s.%N) $RANDOM" >"$tmp/root/etc/smoke"
"$LAB_DIR/kube/image.sh" build-rootfs "$tmp/root" "localhost/$repo:1" "$tmp/smoke.tar" 2>/dev/null
ref="docker://$LAB_REGISTRY/$repo:1"
t0=$EPOCHREALTIME
n0=$(uploads "$repo")
if out=$(skopeo copy -q --dest-creds "$creds" --dest-cert-dir "$LAB_REGISTRY_CERT_DIR" \
  --digestfile "$tmp/digest" "oci-archive:$tmp/smoke.tar" "$ref" 2>&1); then
  n1=$(uploads "$repo")
  ok "skopeo push $LAB_REGISTRY/$repo:1 in $(lab_since "$t0") s ($(( (n1 - n0) / 3 )) blob upload(s): POST+PATCH+PUT each)"
else bad "skopeo push: $out"; n1=$n0; fi
digest=$(cat "$tmp/digest" 2>/dev/null || true)
out=$(skopeo copy -q --dest-authfile "$LAB_REGISTRY_AUTH_FILE" --dest-cert-dir "$LAB_REGISTRY_CERT_DIR" \
  "oci-archive:$tmp/smoke.tar" "$ref" 2>&1) || bad "second skopeo push: $out"
n2=$(uploads "$repo")
if ((n1 > n0 && n2 == n1)); then ok "a second push of the same image uploads no blob (access log: $n1 upload requests before and after)"
else bad "blob upload requests in the log: $n0 before, $n1 after the first push, $n2 after the second"; fi
h=$(curl -sI --max-time 10 --cacert "$LAB_REGISTRY_CA" -u "$creds" \
  -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$LAB_REGISTRY_URL/v2/$repo/manifests/1" |
  tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }')
if [[ -n "$digest" && "$h" == "$digest" ]]; then ok "tag 1 resolves to the pushed digest $digest"
else bad "digest: skopeo wrote '$digest', the registry says '$h'"; fi
if out=$(skopeo inspect --creds "$creds" --cert-dir "$LAB_REGISTRY_CERT_DIR" "docker://$LAB_REGISTRY/$repo@$digest" 2>&1) &&
  grep -q "\"Digest\": \"$digest\"" <<<"$out"; then ok "skopeo inspect by digest with the credentials"
else bad "skopeo inspect by digest: $(tail -n 3 <<<"$out")"; fi
if out=$(skopeo inspect --no-creds --cert-dir "$LAB_REGISTRY_CERT_DIR" "docker://$LAB_REGISTRY/$repo@$digest" 2>&1); then
  bad "skopeo inspect without credentials succeeded"
elif grep -qiE 'unauthorized|authentication required|401' <<<"$out"; then ok "without credentials: $(grep -oiE 'unauthorized[^"]*|authentication required' <<<"$out" | head -n1)"
else bad "skopeo inspect without credentials: $(tail -n 3 <<<"$out")"; fi
c=$(code -X DELETE --cacert "$LAB_REGISTRY_CA" -u "$creds" "$LAB_REGISTRY_URL/v2/$repo/manifests/$digest")
if [[ "$c" == 202 ]]; then ok "DELETE of the manifest by digest: 202 (storage.delete.enabled)"; else bad "DELETE manifest: $c"; fi

# ---------------------------------------------------------------- kube: pull with a pull secret
if ((kube)) && [[ -f "$LAB_STATE/kube/env.sh" ]]; then
  # shellcheck disable=SC1091
  source "$LAB_STATE/kube/env.sh"
  kc() { "$LAB_KUBECTL" "$@"; }
  NS=lab-registry-smoke-$$   # own namespace per run: an earlier one may still be terminating
  echo "--- kube $LAB_KUBE_VERSION, nodes: $LAB_KUBE_NODES"
  # the kube busybox plus a file unique to this run: its layer is new to the workers, so the
  # pull must fetch it (layers a worker already has, e.g. from the imported
  # localhost/lab/busybox:1, are not fetched again: containerd only reads the manifest)
  mkdir -p "$tmp/bb/layout" "$tmp/bb/root"
  tar -xf "$LAB_STATE/kube/images/busybox.oci.tar" -C "$tmp/bb/layout"
  layer=$(find "$tmp/bb/layout/blobs/sha256" -type f -printf '%s %f\n' | sort -rn | awk 'NR == 1 { print $2 }')
  tar -xf "$tmp/bb/layout/blobs/sha256/$layer" -C "$tmp/bb/root"
  echo "registry smoke $(date +%s.%N) $RANDOM" >"$tmp/bb/root/etc/smoke"
  "$LAB_DIR/kube/image.sh" build-rootfs "$tmp/bb/root" localhost/lab/busybox-smoke:1 "$tmp/bb.tar" --cmd '["sh"]' 2>/dev/null
  t0=$EPOCHREALTIME
  out=$(skopeo copy -q --dest-creds "$creds" --dest-cert-dir "$LAB_REGISTRY_CERT_DIR" --digestfile "$tmp/bb-digest" \
    "oci-archive:$tmp/bb.tar" "docker://$LAB_REGISTRY/lab/busybox-smoke:1" 2>&1) ||
    bad "push of the busybox-smoke image: $out"
  image="$LAB_REGISTRY/lab/busybox-smoke@$(cat "$tmp/bb-digest")"
  bb_layer=$(skopeo inspect --raw --creds "$creds" --cert-dir "$LAB_REGISTRY_CERT_DIR" "docker://$image" |
    grep -o '"layers":\[{[^}]*' | grep -o 'sha256:[0-9a-f]*')
  kc create namespace "$NS" >/dev/null
  for _ in $(seq 100); do kc -n "$NS" get serviceaccount default >/dev/null 2>&1 && break; sleep 0.1; done
  kc -n "$NS" create secret generic lab-registry --type=kubernetes.io/dockerconfigjson \
    --from-file=.dockerconfigjson="$LAB_REGISTRY_AUTH_FILE" >/dev/null
  pod() { # pod NAME [SECRET]
    local sec=
    [[ -z "${2:-}" ]] || sec="imagePullSecrets: [{name: $2}]"
    kc -n "$NS" apply -f - >/dev/null <<Y
apiVersion: v1
kind: Pod
metadata: {name: $1}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  $sec
  containers:
  - name: c
    image: $image
    imagePullPolicy: Always
    command: ["sh", "-c", "echo ok from \$(hostname); cat /var/www/index.html"]
Y
  }
  pod pulled lab-registry
  ph=
  for _ in $(seq 600); do
    ph=$(kc -n "$NS" get pod pulled -o jsonpath='{.status.phase}' 2>/dev/null || true)
    [[ "$ph" == Succeeded || "$ph" == Failed ]] && break; sleep 0.1
  done
  out=$(kc -n "$NS" logs pulled 2>&1 || true)
  if [[ "$ph" == Succeeded ]] && grep -q 'ok from pulled' <<<"$out"; then
    ok "Pod with imagePullSecrets pulled $image (Always) and completed in $(lab_since "$t0") s: $(head -n1 <<<"$out")"
    ips=" $LAB_KUBE_NODE_IPS "
    if awk -v l="$bb_layer" -v ips="$ips" 'index(ips, " " $1 " ") && index($0, "\"GET /v2/lab/busybox-smoke/blobs/" l " ") && $9 == 200 { f = 1 } END { exit !f }' "$LAB_REGISTRY_LOG"; then
      ok "the worker's containerd fetched the layer $bb_layer with the secret's credentials (access log: GET .../blobs/... 200)"
    else bad "no 200 GET of the layer $bb_layer from a worker in $LAB_REGISTRY_LOG"; fi
  else
    bad "Pod pulled: phase '$ph', logs: $out"; kc -n "$NS" describe pod pulled | tail -n 12
  fi
  t0=$EPOCHREALTIME
  pod nosecret
  reason='' msg=''
  for _ in $(seq 300); do
    reason=$(kc -n "$NS" get pod nosecret -o jsonpath='{.status.containerStatuses[0].state.waiting.reason}' 2>/dev/null || true)
    [[ "$reason" == ErrImagePull || "$reason" == ImagePullBackOff ]] && break; sleep 0.1
  done
  msg=$(kc -n "$NS" get events --field-selector involvedObject.name=nosecret -o jsonpath='{range .items[*]}{.message}{"\n"}{end}' 2>/dev/null |
    grep -iE '401|unauthorized' | head -n1 || true)
  if [[ "$reason" == ErrImagePull || "$reason" == ImagePullBackOff ]] && [[ -n "$msg" ]]; then
    ok "Pod without the pull secret: $reason after $(lab_since "$t0") s ($(grep -oE 'failed to resolve reference.*' <<<"$msg" | head -n1 || true))"
  else bad "Pod without the pull secret: reason '$reason', event: '$msg'"; fi
  kc delete namespace "$NS" --wait=false >/dev/null
fi

echo "--- $pass passed, $fail failed in $(lab_since "$t_all") s"
((fail == 0))
