# shellcheck shell=bash
# tests/lab/kube/versions.sh - pinned versions of the kube lab (sourced).
# Debian bookworm's `kubernetes` source package: Kubernetes v1.20.2 with Debian's patches
# (the only Debian source that still has the server parts and vendor/).
# shellcheck disable=SC2034  # used by build.sh and component.sh
KUBE_DEB_VERSION=1.20.5+really1.20.2-1.1+deb12u1
