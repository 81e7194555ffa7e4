#!/usr/bin/python3
"""Wait until every server of a provisioner state answers SSH; print seconds since T0.

  lab_ssh_ready.py STATE_JSON KEY T0 [TIMEOUT]

The servers (server.* records) and the bastion's floating IP (floating_ip.bastion[0])
come from the state file; host keys from each server's console (Nova's console output,
where cloud-init prints them), so SSH runs with StrictHostKeyChecking=yes: the bastion
by its floating IP, the others through it (ProxyCommand). All servers are polled in
parallel. Output, one JSON object: {"servers": {address: {"keys": s, "ssh": s}},
"all_ssh": s, "machines": {address: "os-<server id>"}}. Needs OS_CLIENT_CONFIG_FILE.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

import openstack

state_file, key, t0 = sys.argv[1], sys.argv[2], float(sys.argv[3])
timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 300
res = json.load(open(state_file))['resources']
fip = res['floating_ip.bastion[0]']['outputs']['address']
servers = {a: r for a, r in res.items() if a.startswith('server.')}
conn = openstack.connect(cloud='lab-demo')
tmp = tempfile.mkdtemp()
kh = os.path.join(tmp, 'known_hosts')
open(kh, 'w').close()
lock = threading.Lock()
result, errors = {}, {}


def fixed_ip(rec):
    return next(a for a in rec['outputs']['addresses'] if a != fip)


def ssh_opts():
    return ['-i', key, '-o', 'UserKnownHostsFile=' + kh, '-o', 'StrictHostKeyChecking=yes',
            '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=5', '-o', 'LogLevel=ERROR']


def watch(addr, rec):
    ip = fixed_ip(rec)
    hosts = [fip, ip] if addr == 'server.bastion[0]' else [ip]
    deadline = t0 + timeout
    keys = []
    while not keys:
        if time.time() > deadline:
            errors[addr] = 'no host keys on the console'
            return
        out = conn.compute.get_server_console_output(rec['id'])['output']
        m = re.search(r'-----BEGIN SSH HOST KEY KEYS-----\r?\n(.*?)-----END SSH HOST KEY KEYS-----', out, re.S)
        if m:
            keys = [' '.join(line.split()[:2]) for line in m.group(1).splitlines() if line.strip()]
        else:
            time.sleep(0.5)
    t_keys = time.time() - t0
    with lock, open(kh, 'a') as f:
        f.writelines('%s %s\n' % (h, k) for h in hosts for k in keys)
    if addr == 'server.bastion[0]':
        cmd = ['ssh'] + ssh_opts() + ['debian@' + fip, 'true']
    else:
        proxy = ' '.join(['ssh'] + ssh_opts() + ['-W', '%h:%p', 'debian@' + fip])
        cmd = ['ssh'] + ssh_opts() + ['-o', 'ProxyCommand=' + proxy, 'debian@' + ip, 'true']
    while subprocess.run(cmd, capture_output=True).returncode != 0:
        if time.time() > deadline:
            errors[addr] = 'no SSH'
            return
        time.sleep(0.3)
    result[addr] = {'keys': round(t_keys, 1), 'ssh': round(time.time() - t0, 1)}


threads = [threading.Thread(target=watch, args=item) for item in servers.items()]
for t in threads:
    t.start()
for t in threads:
    t.join()
if errors:
    sys.exit('not SSH-ready after %.0f s: %s' % (timeout, errors))
print(json.dumps({'servers': result, 'all_ssh': max(r['ssh'] for r in result.values()),
                  'machines': {a: 'os-' + r['id'] for a, r in servers.items()}}))
