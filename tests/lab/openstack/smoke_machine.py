#!/usr/bin/python3
"""Smoke check of the lab's compute driver (check.sh openstack), as the demo tenant:
a network, subnet and router, a server of debian-12-node with user data, a floating
IP; SSH to the floating IP as "debian" with the lab's key and StrictHostKeyChecking
against the host keys of the console log; the user data's file is there; then
everything is deleted and no machine, netns or lab segment of the server remains.

Needs the lab's env.sh (OS_CLIENT_CONFIG_FILE). Prints one summary line; exit 1 on failure.
"""
import base64
import os
import re
import subprocess
import sys
import tempfile
import time

import openstack

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, '..', '..', '..'))
KEY = os.path.join(REPO, 'tests/fixtures/ssh/id_ed25519')
LAB_STATE = os.environ.get('LAB_STATE', '/var/tmp/provisioner-lab')
IMAGE = os.environ.get('LAB_OS_NODE_IMAGE', 'debian-12-node')
CIDR = '10.238.0.0/24'


def host_keys(console):
    m = re.search(r'-----BEGIN SSH HOST KEY KEYS-----\r?\n(.*?)-----END SSH HOST KEY KEYS-----', console, re.S)
    return [' '.join(line.split()[:2]) for line in m.group(1).splitlines() if line.strip()] if m else []


def main():
    conn = openstack.connect(cloud='lab-demo')
    name = 'lab-smoke-%d' % os.getpid()
    t0 = time.time()
    made = {}
    try:
        net = made['net'] = conn.network.create_network(name=name)
        subnet = made['subnet'] = conn.network.create_subnet(
            name=name, network_id=net.id, ip_version=4, cidr=CIDR, gateway_ip='10.238.0.1')
        public = conn.network.find_network('public')
        router = made['router'] = conn.network.create_router(
            name=name, external_gateway_info={'network_id': public.id})
        conn.network.add_interface_to_router(router, subnet_id=subnet.id)
        made['iface'] = True
        with open(KEY + '.pub') as f:
            made['key'] = conn.compute.create_keypair(name=name, public_key=f.read())
        user_data = '#cloud-config\nwrite_files:\n  - path: /etc/lab-smoke\n    content: "%s"\n' % name
        server = made['server'] = conn.compute.create_server(
            name=name, image_id=conn.image.find_image(IMAGE).id,
            flavor_id=conn.compute.find_flavor('m1.tiny').id, networks=[{'uuid': net.id}],
            key_name=name, user_data=base64.b64encode(user_data.encode()).decode())
        server = conn.compute.wait_for_server(server, wait=120)
        port = next(iter(conn.network.ports(device_id=server.id)))
        fip = made['fip'] = conn.network.create_ip(floating_network_id=public.id, port_id=port.id)
        t_active = time.time() - t0
        keys = []
        deadline = time.time() + 120
        while not keys and time.time() < deadline:
            time.sleep(1)
            keys = host_keys(conn.compute.get_server_console_output(server)['output'])
        if not keys:
            sys.exit('no SSH host keys on the console of %s after 120 s' % server.id)
        with tempfile.TemporaryDirectory() as tmp:
            kh, key = os.path.join(tmp, 'known_hosts'), os.path.join(tmp, 'id')
            with open(kh, 'w') as f:
                f.writelines('%s %s\n' % (fip.floating_ip_address, k) for k in keys)
            with open(key, 'wb') as f, open(KEY, 'rb') as src:
                f.write(src.read())
            os.chmod(key, 0o600)
            out = subprocess.run(
                ['ssh', '-i', key, '-o', 'UserKnownHostsFile=' + kh, '-o', 'StrictHostKeyChecking=yes',
                 '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=10', '-o', 'LogLevel=ERROR',
                 'debian@' + fip.floating_ip_address, 'hostname; cat /etc/lab-smoke'],
                capture_output=True, text=True, timeout=60)
        if out.returncode != 0 or out.stdout.split() != [name, name]:
            sys.exit('ssh debian@%s: rc %d, out %r, err %r' % (fip.floating_ip_address, out.returncode,
                                                               out.stdout, out.stderr))
        t_ssh = time.time() - t0
    finally:
        cleanup(conn, made)
    leftovers = [p for p in (os.path.join(LAB_STATE, 'nodes/machines/os-' + server.id),
                             '/run/netns/labm-os-' + server.id,
                             os.path.join(LAB_STATE, 'nodes/nets/os' + net.id.replace('-', '')[:8]))
                 if os.path.lexists(p)]
    if leftovers:
        sys.exit('left behind after the delete: %s' % leftovers)
    print('ACTIVE %.1f s, SSH via floating IP %s %.1f s, all deleted after %.1f s'
          % (t_active, fip.floating_ip_address, t_ssh, time.time() - t0))


def cleanup(conn, made):
    if 'fip' in made:
        conn.network.delete_ip(made['fip'], ignore_missing=True)
    if 'server' in made:
        conn.compute.delete_server(made['server'], ignore_missing=True)
        conn.compute.wait_for_delete(made['server'], wait=120)
    if 'key' in made:
        conn.compute.delete_keypair(made['key'], ignore_missing=True)
    if 'iface' in made:
        conn.network.remove_interface_from_router(made['router'], subnet_id=made['subnet'].id)
    if 'router' in made:
        conn.network.delete_router(made['router'], ignore_missing=True)
    if 'net' in made:
        conn.network.delete_network(made['net'], ignore_missing=True)


if __name__ == '__main__':
    main()
