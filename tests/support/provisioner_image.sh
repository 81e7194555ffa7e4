#!/usr/bin/env bash
# tests/support/provisioner_image.sh BINARY REF - a container image of the provisioner
# binary for the kube lab (a stand-in for images/geozarr until that builds it): the
# binary, the shared libraries ldd says it needs, CA certificates and a non-root user,
# packed by tests/lab/kube/image.sh and imported into every lab worker. Prints REF.
set -euo pipefail
bin=${1:?usage: provisioner_image.sh BINARY REF}
ref=${2:?usage: provisioner_image.sh BINARY REF}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
image_sh="$here/../lab/kube/image.sh"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{usr/local/bin,etc/ssl/certs,tmp}
cp "$bin" "$root/usr/local/bin/provisioner"
# Every library the dynamic loader resolves, at the same path, plus the loader itself.
ldd "$bin" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/bin/false\nprovisioner:x:65532:65532:provisioner:/tmp:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nprovisioner:x:65532:\n' >"$root/etc/group"
chmod 1777 "$root/tmp"
out=$(mktemp -u /tmp/provisioner-image-XXXXXX.oci.tar)
bash "$image_sh" build-rootfs "$root" "$ref" "$out" --entrypoint '["/usr/local/bin/provisioner"]' >&2
bash "$image_sh" import "$out" >&2
rm -f "$out"
echo "$ref"
