#!/usr/bin/env bash
# tests/lab/kube/build.sh - build Kubernetes v1.20 (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kube-proxy, kubectl) from Debian bookworm's `kubernetes` source
# package, as Debian's own rules do (GOPATH mode, `make WHAT=...`), with Debian's Go 1.19.
#
#   $LAB_CACHE/kubernetes/<KUBE_BUILD>/bin/      the six binaries (KUBE_BUILD: versions.sh)
#   $LAB_CACHE/kubernetes/<debian source version>/bin/.complete   stamp: the build finished
#   $LAB_CACHE/kubernetes/<debian source version>/pause.c   the pause container's source
#   $LAB_CACHE/kubernetes/<debian source version>/build/    sources + Go cache while building
#                                                           (kept after a failure: a rerun
#                                                           resumes there; removed on success)
#   $LAB_CACHE/log/kubernetes-<version>.log                 build log
#
# ~13 min on 2 cores, at nice 10. Without the stamp the bin/ directory is never used. The
# deb-src entry it needs is added for the download only and removed afterwards.
# Prints the bin directory on stdout. Called by tests/lab/kube/component.sh; may be run alone.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source-path=SCRIPTDIR source=versions.sh
source "$(dirname "${BASH_SOURCE[0]}")/versions.sh"

top="$LAB_CACHE/kubernetes/$KUBE_BUILD"
bin="$top/bin"
KUBE_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
if [[ -f "$bin/.complete" ]]; then echo "$bin"; exit 0; fi

# own lock, not lab_cache_lock: the ~13 min build must not hold up the other installs
# (the node base is built meanwhile). Callers install the apt packages first.
mkdir -p "$top" "$LAB_CACHE/log"
exec 5>"$LAB_CACHE/kubernetes/.lock"
flock -w 3600 5 || lab_die "timed out waiting for $LAB_CACHE/kubernetes/.lock"
if [[ -f "$bin/.complete" ]]; then echo "$bin"; exit 0; fi   # built by a concurrent run

logf="$LAB_CACHE/log/kubernetes-$KUBE_BUILD.log"
w="$top/build"
t0=$EPOCHREALTIME
lab_apt golang-go rsync dpkg-dev make gcc libc6-dev debian-archive-keyring golang-github-modern-go-reflect2-dev
mkdir -p "$w"
lab_log "building Kubernetes from Debian source $KUBE_DEB_VERSION at nice 10 (~13 min on 2 cores; log: $logf)"
{
  echo "==== $(date -Is) build of kubernetes $KUBE_DEB_VERSION in $w"
} >>"$logf"

# ---- sources: apt-get source needs a deb-src entry; ours is removed right after.
srcfile=/etc/apt/sources.list.d/provisioner-lab-deb-src.sources
cleanup_src() { rm -f "$srcfile"; }
if ! compgen -G "$w/kubernetes_${KUBE_DEB_VERSION#*:}.dsc" >/dev/null; then
  trap cleanup_src EXIT
  uri=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  uri=${uri:-http://deb.debian.org/debian}
  cat >"$srcfile" <<S
# added by provisioner tests/lab/kube/build.sh for 'apt-get source kubernetes'; removed after
Types: deb-src
URIs: $uri
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
S
  {
    apt-get -o DPkg::Lock::Timeout=600 update -q \
      -o Dir::Etc::sourcelist="$srcfile" -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0 &&
      (cd "$w" && apt-get source --download-only "kubernetes=$KUBE_DEB_VERSION")
  } >>"$logf" 2>&1 || { cleanup_src; lab_die "apt-get source kubernetes=$KUBE_DEB_VERSION failed" "$logf"; }
  cleanup_src
  trap - EXIT
fi

cd "$w"
if [[ ! -f src/.lab-unpacked ]]; then
  rm -rf src
  dpkg-source -x "kubernetes_${KUBE_DEB_VERSION#*:}.dsc" src >>"$logf" 2>&1 ||
    lab_die "dpkg-source -x failed" "$logf"
  # reflect2 1.0.1 (vendored) faults under Go 1.19: use Debian's 1.0.2 (see versions.sh).
  rm -rf src/vendor/github.com/modern-go/reflect2
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 src/vendor/github.com/modern-go/reflect2
  rm -rf src/vendor/github.com/modern-go/reflect2/{.git,debian,*_test.go} 2>/dev/null || true
  touch src/.lab-unpacked
fi
cd src
mkdir -p .go/src/k8s.io "$w/home" "$w/gocache"
[[ -L .go/src/k8s.io/kubernetes ]] || ln -s ../../.. .go/src/k8s.io/kubernetes
# make is incremental and the Go cache survives a failed run: a rerun resumes.
GOPATH=$PWD/.go CGO_ENABLED=0 HOME=$w/home GOCACHE=$w/gocache \
  PATH=/usr/lib/go/bin:$PATH \
  nice -n 10 make WHAT="${KUBE_BINS[*]/#/cmd/}" >>"$logf" 2>&1 ||
  lab_die "make of kubernetes failed (a rerun resumes from $w)" "$logf"

rm -rf "$bin" && mkdir -p "$bin"
for b in "${KUBE_BINS[@]}"; do install -m 755 "_output/bin/$b" "$bin/$b"; done
"$bin/kube-apiserver" --version >>"$logf" 2>&1 || lab_die "the built kube-apiserver does not run" "$logf"
cp build/pause/linux/pause.c "$top/pause.c"   # the sandbox image is built from it (image.sh)
date -Is >"$bin/.complete"
cd / && rm -rf "$w"
lab_log "Kubernetes built in $(lab_since "$t0") s: $bin"
echo "$bin"
