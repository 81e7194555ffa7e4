#!/usr/bin/env python3
"""The baseline for tests/bench/openstack_up.sh: the same creates as
`provisioner up` of tests/fixtures/environments/bench-os.yaml, done one after
another from one openstacksdk process (what a plain script or a serial
Terraform apply does). Prints JSON: wall seconds and HTTP calls, then deletes
everything it made.

usage: sequential_up.py NAME PUBLIC_KEY_FILE
"""
import json
import sys
import time

import openstack

name, keyfile = sys.argv[1], sys.argv[2]
conn = openstack.connect()
calls = 0


def count(resp, *args, **kwargs):
    global calls
    calls += 1


conn.session.session.hooks["response"].append(count)
made = []
t0 = time.monotonic()

kp = conn.compute.create_keypair(name=f"{name}-deploy", public_key=open(keyfile).read().strip())
net = conn.network.create_network(name=name)
sub = conn.network.create_subnet(name=name, network_id=net.id, cidr="10.77.30.0/24", ip_version=4, dns_nameservers=["9.9.9.9", "1.1.1.1"])
ext = conn.network.find_network("public")
rtr = conn.network.create_router(name=name, external_gateway_info={"network_id": ext.id})
conn.network.add_interface_to_router(rtr, subnet_id=sub.id)
sg_nodes = conn.network.create_security_group(name=f"{name}-nodes", description="cluster nodes")
sg_bast = conn.network.create_security_group(name=f"{name}-bastion", description="SSH bastion")
for sg, proto, lo, hi, remote in [
    (sg_bast, "tcp", 22, 22, "10.0.0.0/8"),
    (sg_nodes, "tcp", 6443, 6443, "10.0.0.0/8"),
    (sg_nodes, "tcp", 1, 65535, "10.77.30.0/24"),
    (sg_nodes, "udp", 1, 65535, "10.77.30.0/24"),
]:
    conn.network.create_security_group_rule(security_group_id=sg.id, direction="ingress", ethertype="IPv4", protocol=proto, port_range_min=lo, port_range_max=hi, remote_ip_prefix=remote)
grp = conn.compute.create_server_group(name=f"{name}-control", policies=["soft-anti-affinity"])
flavor = conn.compute.find_flavor("m1.tiny")
image = conn.image.find_image("cirros")
servers = []
for pool, i, sg in [("bastion", 0, sg_bast)] + [("control", i, sg_nodes) for i in range(3)] + [("worker", i, sg_nodes) for i in range(3)]:
    hints = {"group": grp.id} if pool == "control" else {}
    s = conn.compute.create_server(name=f"{name}-{pool}-{i}", flavor_id=flavor.id, image_id=image.id, key_name=kp.name, networks=[{"uuid": net.id}], security_groups=[{"name": sg.id}], scheduler_hints=hints)
    s = conn.compute.wait_for_server(s, wait=300)
    servers.append((pool, s))
vols = []
for pool, s in servers:
    if pool == "control":
        v = conn.block_storage.create_volume(size=1, name=f"{s.name}-etcd")
        conn.block_storage.wait_for_status(v, "available", wait=300)
        conn.compute.create_volume_attachment(s, volume_id=v.id)
        conn.block_storage.wait_for_status(v, "in-use", wait=300)
        vols.append((s, v))
bastion = servers[0][1]
port = next(conn.network.ports(device_id=bastion.id))
fip = conn.network.create_ip(floating_network_id=ext.id, port_id=port.id)
wall = time.monotonic() - t0
create_calls = calls
print(json.dumps({"wall_s": round(wall, 2), "api_calls": create_calls, "servers": len(servers)}))

# Clean up (not timed).
conn.network.delete_ip(fip)
for s, v in vols:
    conn.compute.delete_volume_attachment(v.id, s.id)
for s, v in vols:
    conn.block_storage.wait_for_status(v, "available", wait=300)
for pool, s in servers:
    conn.compute.delete_server(s)
for pool, s in servers:
    conn.compute.wait_for_delete(s, wait=300)
for s, v in vols:
    conn.block_storage.delete_volume(v)
conn.compute.delete_server_group(grp)
conn.network.remove_interface_from_router(rtr, subnet_id=sub.id)
conn.network.delete_router(rtr)
for sg in (sg_nodes, sg_bast):
    conn.network.delete_security_group(sg)
for p in conn.network.ports(network_id=net.id):
    conn.network.delete_port(p)
conn.network.delete_subnet(sub)
conn.network.delete_network(net)
conn.compute.delete_keypair(kp)
