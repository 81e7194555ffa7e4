#!/usr/bin/env python3
"""Independent reader for the OpenStack lab tests: list what an environment
owns, straight from the APIs with openstacksdk (not provisioner's own client).

usage: count_owned.py ENV   -> JSON {kind: [[address, id, status], ...]}
Uses OS_CLIENT_CONFIG_FILE / OS_CLOUD like any OpenStack tool.
"""
import json
import sys

import openstack

env = sys.argv[1]
conn = openstack.connect()
tag_env = f"pv-env:{env}"


def addr_of(tags):
    if tag_env not in (tags or []):
        return None
    for t in tags:
        if t.startswith("pv-addr:"):
            return t[len("pv-addr:"):]
    return "(no address tag)"


out = {}


def add(kind, addr, rid, status=""):
    if addr:
        out.setdefault(kind, []).append([addr, rid, status])


net = conn.network
for kind, items in [
    ("network", net.networks(tags=tag_env)),
    ("subnet", net.subnets(tags=tag_env)),
    ("router", net.routers(tags=tag_env)),
    ("security_group", net.security_groups(tags=tag_env)),
    ("floating_ip", net.ips(tags=tag_env)),
]:
    for r in items:
        add(kind, addr_of(r.tags), r.id, getattr(r, "status", "") or "")
# Untagged leftovers that still carry our marker or name count as orphans too.
prefix = f"provisioner {env} "
for r in net.security_group_rules():
    if (r.description or "").startswith(prefix):
        add("security_group_rule", r.description[len(prefix):], r.id)
for r in net.ips():
    if (r.description or "").startswith(prefix) and tag_env not in (r.tags or []):
        add("floating_ip", "(untagged) " + r.description[len(prefix):], r.id)
for kind, items in [("network", net.networks()), ("subnet", net.subnets()), ("router", net.routers())]:
    for r in items:
        if r.name == env and tag_env not in (r.tags or []):
            add(kind, "(untagged) " + r.name, r.id)
for s in conn.compute.servers(details=True, tags=tag_env):
    add("server", addr_of(s.tags), s.id, s.status)
for k in conn.compute.keypairs():
    if k.name == f"{env}-deploy":
        add("keypair", "keypair.deploy", k.name)
for g in conn.compute.server_groups():
    if g.name.startswith(env + "-"):
        add("server_group", g.name, g.id)
try:
    for v in conn.block_storage.volumes(details=True):
        md = v.metadata or {}
        if md.get("provisioner_environment") == env:
            add("volume", md.get("provisioner_address"), v.id, v.status)
except Exception as e:  # no block-storage endpoint
    out["volume_error"] = [[str(e), "", ""]]
print(json.dumps(out, sort_keys=True))
