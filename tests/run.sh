#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs the build's system
# packages, starts the lab services the tests need (tests/lab/, cached outside
# the repository), runs every test including the lab tests, stops the lab.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need=()
for p in build-essential pkg-config libssl-dev curl ca-certificates; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
  echo "==> installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# Lab: moto (reference S3) and s3s-fs (strict SigV4 S3); PostgreSQL+pgSTAC, the
# STAC API and TiTiler (eo) for the workload; OpenStack (Debian's Keystone, Nova
# with the fake driver, Neutron, Cinder, Glance) for the cloud layer; a Kubernetes
# v1.20 cluster (kube: control plane + nspawn worker, built once) for charts; an
# OCI registry (Debian's docker-registry, TLS + htpasswd) for images. Stopped on exit.
trap 'bash tests/lab/down.sh >/dev/null 2>&1 || true' EXIT
bash tests/lab/up.sh s3 s3s eo registry openstack kube cluster
# shellcheck disable=SC1091
source "${LAB_STATE:-/var/tmp/provisioner-lab}/env.sh"

# Lab tests are #[ignore]d so a plain `cargo test` stays offline; here they run,
# and each fails loudly if its service is missing.
cargo test --locked --all-targets --no-fail-fast -- --include-ignored
