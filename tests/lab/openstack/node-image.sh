#!/usr/bin/env bash
# tests/lab/openstack/node-image.sh - print "PATH KEY" of the lab cloud's node image: a
# Debian 12 (bookworm) root filesystem as a tar.zst, what the lab's compute driver boots
# as a machine (Glance image debian-12-node, property lab_machine=true; see component.sh).
#
# The rootfs is tests/lab/nodes/base.sh's (minbase + systemd + sshd + the usual tools of a
# cloud image) plus Debian's cloud-init (22.4), configured as a cloud vendor configures
# its image for its datasource:
#   datasource_list [NoCloud, None]   the lab driver writes the NoCloud seed (meta-data:
#                                     instance-id, local-hostname, public-keys; user-data)
#   network: {config: disabled}       the hypervisor sets the port's address up (as DHCP
#                                     would on a real cloud); no ifupdown/networkd inside
#   ssh_genkeytypes [ed25519, ecdsa]  no RSA-3072/DSA host keys: generating them was 6 of
#                                     cloud-init's ~9 CPU-seconds per boot (6 machines
#                                     booting at once on 2 cores: 33 s -> see README "The lab cloud")
#   grub_dpkg disabled                no boot loader in a machine (the module ran debconf)
# and nothing else: the default user "debian" (sudo, the keypair's key), SSH host keys
# made at first boot and printed to the console (-----BEGIN SSH HOST KEY KEYS-----),
# #cloud-config write_files/runcmd/users/... all come from cloud-init itself.
# base.sh's lab-ssh-hostkeys.service is removed: cloud-init makes the host keys, as on
# a real cloud image. Nothing Kubernetes-specific is installed.
#
# Cached as $LAB_CACHE/openstack/debian-12-node-KEY.tar.zst (KEY = hash of the base and
# of this recipe); a new package list or recipe gives a new key, hence a new image.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$HERE/../lib.sh"

NODE_IMAGE_EXTRA="cloud-init python3-cffi-backend iptables conntrack"   # python3-cryptography's virtual dependency (debootstrap does not resolve those); kube-proxy needs iptables + conntrack
NODE_IMAGE_RECIPE=2   # bump when the changes below change

lower=$("$LAB_DIR/nodes/base.sh" --name os-node --extra "$NODE_IMAGE_EXTRA")
key=$(printf 'base=%s\nrecipe=%s\n' "$(basename "$lower")" "$NODE_IMAGE_RECIPE" | sha256sum | cut -c1-12)
out="$LAB_CACHE/openstack/debian-12-node-$key.tar.zst"
if [[ -f "$out" ]]; then echo "$out $key"; exit 0; fi

mkdir -p "$LAB_CACHE/openstack"
exec 6>"$LAB_CACHE/openstack/.image.lock"
flock -w 1800 6 || lab_die "timed out waiting for $LAB_CACHE/openstack/.image.lock"
if [[ -f "$out" ]]; then echo "$out $key"; exit 0; fi

t0=$EPOCHREALTIME
tmp="$LAB_CACHE/openstack/build-$key"
rm -rf "$tmp"; mkdir -p "$tmp"
tar -C "$lower" --numeric-owner --xattrs --xattrs-include='*' -cpf - . |
  tar -C "$tmp" --numeric-owner --xattrs --xattrs-include='*' -xpf -

cat >"$tmp/etc/cloud/cloud.cfg.d/90-lab-cloud.cfg" <<'EOF'
# The provisioner's lab cloud (tests/lab/openstack): its compute driver writes a NoCloud
# seed (/var/lib/cloud/seed/nocloud), the config drive of this cloud, and sets the port's
# address up itself, as DHCP would on a real cloud.
datasource_list: [ NoCloud, None ]
network: {config: disabled}
# host keys of the types OpenSSH clients use; RSA-3072 was most of the CPU of a boot
ssh_genkeytypes: [ed25519, ecdsa]
# no boot loader in a machine
grub_dpkg: {enabled: false}
EOF
rm -f "$tmp/etc/systemd/system/lab-ssh-hostkeys.service" \
  "$tmp/etc/systemd/system/ssh.service.wants/lab-ssh-hostkeys.service" \
  "$tmp/etc/systemd/system/multi-user.target.wants/lab-ssh-hostkeys.service"
printf 'name=debian-12-node\nkey=%s\nbase=%s\nrecipe=%s\nbuilt=%s\n' "$key" "$(basename "$lower")" \
  "$NODE_IMAGE_RECIPE" "$(date -Is)" >"$tmp/etc/lab-node-image"

tar -C "$tmp" --numeric-owner --xattrs --xattrs-include='*' -cpf - . | zstd -q -T0 -3 -o "$out.tmp"
mv "$out.tmp" "$out"
rm -rf "$tmp"
lab_log "node image debian-12-node ($key) made in $(lab_since "$t0") s: $(du -h "$out" | cut -f1)"
echo "$out $key"
