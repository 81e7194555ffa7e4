# shellcheck shell=bash
# tests/lab/kube/versions.sh - pinned versions of the kube lab (sourced).
# Debian bookworm's `kubernetes` source package: Kubernetes v1.20.2 with Debian's patches
# (the only Debian source that still has the server parts and vendor/).
# shellcheck disable=SC2034  # used by build.sh and component.sh
KUBE_DEB_VERSION=1.20.5+really1.20.2-1.1+deb12u1
# The cache key of our build: the Debian source plus what we change in it. Kubernetes 1.20
# vendors reflect2 1.0.1, whose map iteration faults under Go >= 1.18 (the apiserver dies
# with SIGSEGV in aeshashbody while listing custom resources); the build swaps in Debian's
# reflect2 1.0.2 (package golang-github-modern-go-reflect2-dev).
KUBE_BUILD=$KUBE_DEB_VERSION+reflect2-1.0.2
