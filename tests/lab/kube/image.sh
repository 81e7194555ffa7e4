#!/usr/bin/env bash
# tests/lab/kube/image.sh - container images for the kube lab, without any registry.
#
#   image.sh build-rootfs DIR NAME:TAG OUT.tar [--entrypoint JSON] [--cmd JSON]
#                         [--env K=V]... [--workdir DIR]
#       Package directory DIR as the single layer of an OCI image-layout tarball (only tar,
#       sha256sum and printf; files become root-owned, mtime 0, sorted: reproducible).
#       JSON is an array such as '["/app/server","--port","8080"]'. NAME should be a full
#       reference such as localhost/lab/myapp (a bare name would be expanded to docker.io).
#       Pods then use `image: NAME:TAG` with `imagePullPolicy: Never` (or IfNotPresent).
#   image.sh import TARBALL...
#       Import into the containerd (namespace k8s.io) of every running kube lab worker
#       ($LAB_KUBE_NODES, or the workers recorded by tests/lab/up.sh kube).
#   image.sh lab-images OUTDIR PAUSE_C
#       (used by up.sh kube) OUTDIR/busybox.oci.tar = localhost/lab/busybox:1 (Debian's
#       static busybox, one symlink per applet: sh, httpd, nc, sleep, wget, ...; /var/www/
#       index.html) and OUTDIR/pause.oci.tar = localhost/lab/pause:1 (the kubernetes
#       source's pause.c, gcc -static).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$HERE/../lib.sh"

json_str() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

# oci_archive ROOTFS NAME TAG ENTRYPOINT_JSON CMD_JSON ENV_JSON WORKDIR OUT.tar
oci_archive() {
  local rootfs=$1 name=$2 tag=$3 ep=$4 cmd=$5 env=$6 wd=$7 dest=$8 tmp l ld ls cd cs md ms
  tmp=$(mktemp -d); l=$tmp/layout
  mkdir -p "$l/blobs/sha256"
  tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$rootfs" -cf "$tmp/layer.tar" .
  ld=$(sha "$tmp/layer.tar"); ls=$(stat -c %s "$tmp/layer.tar")
  mv "$tmp/layer.tar" "$l/blobs/sha256/$ld"
  printf '{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z","config":{"Env":%s,"Entrypoint":%s,"Cmd":%s,"WorkingDir":%s},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"tests/lab/kube/image.sh"}]}' \
    "$env" "$ep" "$cmd" "$(json_str "$wd")" "$ld" >"$tmp/config.json"
  cd=$(sha "$tmp/config.json"); cs=$(stat -c %s "$tmp/config.json")
  mv "$tmp/config.json" "$l/blobs/sha256/$cd"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$cd" "$cs" "$ld" "$ls" >"$tmp/manifest.json"
  md=$(sha "$tmp/manifest.json"); ms=$(stat -c %s "$tmp/manifest.json")
  mv "$tmp/manifest.json" "$l/blobs/sha256/$md"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$l/oci-layout"
  # io.containerd.image.name gives the full reference on import (ctr images import)
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":%s,"org.opencontainers.image.ref.name":%s}}]}' \
    "$md" "$ms" "$(json_str "$name:$tag")" "$(json_str "$tag")" >"$l/index.json"
  mkdir -p "$(dirname "$dest")"
  tar --numeric-owner --owner=0 --group=0 -C "$l" -cf "$dest.tmp" oci-layout index.json blobs
  mv "$dest.tmp" "$dest"
  rm -rf "$tmp"
  lab_log "image $name:$tag -> $dest ($(du -h "$dest" | cut -f1), manifest sha256:${md:0:12})"
}

cmd_build_rootfs() {
  (($# >= 3)) || lab_die "usage: image.sh build-rootfs DIR NAME:TAG OUT.tar [--entrypoint JSON] [--cmd JSON] [--env K=V]... [--workdir DIR]"
  local dir=$1 ref=$2 out=$3 ep=null cmd=null wd=/ envs=() e j envjson
  shift 3
  [[ -d "$dir" ]] || lab_die "$dir is not a directory"
  [[ "$ref" == *:* && "${ref##*:}" != */* ]] || lab_die "image reference '$ref' needs a :TAG"
  while (($#)); do
    case "$1" in
      --entrypoint) ep=$2; shift 2 ;;
      --cmd) cmd=$2; shift 2 ;;
      --env) envs+=("$2"); shift 2 ;;
      --workdir) wd=$2; shift 2 ;;
      *) lab_die "unknown option '$1'" ;;
    esac
  done
  for j in "$ep" "$cmd"; do [[ "$j" == null || "$j" == \[*\] ]] || lab_die "entrypoint/cmd must be a JSON array: $j"; done
  envjson='["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"'
  for e in "${envs[@]}"; do envjson+=",$(json_str "$e")"; done
  envjson+=']'
  oci_archive "$dir" "${ref%:*}" "${ref##*:}" "$ep" "$cmd" "$envjson" "$wd" "$(readlink -f "$(dirname "$out")")/$(basename "$out")"
}

cmd_lab_images() {
  local out=${1:?usage: lab-images OUTDIR PAUSE_C} pause_c=${2:?usage: lab-images OUTDIR PAUSE_C} tmp r a bb
  command -v busybox >/dev/null || lab_apt busybox-static
  command -v gcc >/dev/null || lab_apt gcc libc6-dev
  bb=$(readlink -f "$(command -v busybox)")
  tmp=$(mktemp -d)
  r=$tmp/busybox; mkdir -p "$r"/{bin,etc,tmp,proc,sys,dev,root,var/www}
  cp "$bb" "$r/bin/busybox"
  for a in $("$r/bin/busybox" --list); do [[ "$a" == busybox ]] || ln -sf busybox "$r/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$r/etc/group"
  chmod 1777 "$r/tmp"
  echo '<h1>provisioner lab busybox</h1>' >"$r/var/www/index.html"
  oci_archive "$r" localhost/lab/busybox 1 null '["sh"]' '["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]' / "$out/busybox.oci.tar"
  mkdir -p "$tmp/pause"
  gcc -Os -static -DVERSION=lab -o "$tmp/pause/pause" "$pause_c"
  strip "$tmp/pause/pause"
  oci_archive "$tmp/pause" localhost/lab/pause 1 '["/pause"]' null '["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]' / "$out/pause.oci.tar"
  rm -rf "$tmp"
}

cmd_import() {
  (($#)) || lab_die "usage: image.sh import TARBALL..."
  local nodes t n root tmpname rc=0
  nodes=${LAB_KUBE_NODES:-$(cat "$LAB_STATE/kube/workers" 2>/dev/null || true)}
  [[ -n "$nodes" ]] || lab_die "no kube lab worker (tests/lab/up.sh kube)"
  for t in "$@"; do [[ -f "$t" ]] || lab_die "$t: no such file"; done
  for n in $nodes; do
    root=$("$LAB_DIR/nodes/machine.sh" root "$n") || { rc=1; continue; }
    for t in "$@"; do
      # through the machine's disk: ctr inside reads the file from there
      tmpname=/var/tmp/lab-import-$$-$(basename "$t")
      cp "$t" "$root$tmpname"
      if "$LAB_DIR/nodes/machine.sh" exec "$n" ctr -n k8s.io images import "$tmpname" >&2; then
        lab_log "imported $(basename "$t") into $n"
      else
        lab_log "ERROR: import of $t into $n failed"; rc=1
      fi
      rm -f "$root$tmpname"
    done
  done
  return "$rc"
}

case "${1:-}" in
  build-rootfs) shift; cmd_build_rootfs "$@" ;;
  import) shift; cmd_import "$@" ;;
  lab-images) shift; cmd_lab_images "$@" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
esac
