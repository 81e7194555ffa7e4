"""Addresses the lab host needs to reach the outside way (provisioner test lab).

The lab puts some ranges on the host itself: one L2 segment per Neutron network of a
machine (the host on the subnet's gateway), a /32 route per floating IP. A range that
holds an address the host reaches through its default route would take that address
away from the host. On a CI machine of this kind the package registries, the DNS
server and the gateway sit in documentation or private ranges (TEST-NET-3, 10/8) that
a lab network may well use too. reserved() lists them, so that the lab can refuse a
network that contains one (the compute driver) and keep them out of the external
network's allocation pool (bootstrap.py).
"""
import functools
import ipaddress
import re
import subprocess

REGISTRY_HOSTS = ('deb.debian.org', 'security.debian.org', 'pypi.org', 'files.pythonhosted.org',
                  'index.crates.io', 'static.crates.io', 'crates.io', 'registry.npmjs.org',
                  'proxy.golang.org', 'sum.golang.org')


def _apt_hosts():
    hosts = set()
    for path in ('/etc/apt/sources.list',):
        try:
            hosts.update(re.findall(r'https?://([^/\s:]+)', open(path).read()))
        except OSError:
            pass
    try:
        import glob
        for path in glob.glob('/etc/apt/sources.list.d/*'):
            hosts.update(re.findall(r'https?://([^/\s:]+)', open(path).read()))
    except OSError:
        pass
    return hosts


@functools.lru_cache(maxsize=1)
def reserved():
    """{address: why} the host needs to reach as it does now."""
    out = {}
    try:
        for line in open('/etc/resolv.conf'):
            f = line.split()
            if len(f) >= 2 and f[0] == 'nameserver':
                out[f[1]] = 'DNS server'
    except OSError:
        pass
    try:
        routes = subprocess.run(['ip', '-4', 'route', 'show', 'default'], capture_output=True,
                                text=True, timeout=5).stdout
        for gw in re.findall(r'\bvia (\d+\.\d+\.\d+\.\d+)', routes):
            out[gw] = 'default gateway'
    except (OSError, subprocess.SubprocessError):
        pass
    for host in sorted(set(REGISTRY_HOSTS) | _apt_hosts()):
        try:
            res = subprocess.run(['getent', 'ahostsv4', host], capture_output=True, text=True,
                                 timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        for addr in {line.split()[0] for line in res.splitlines() if line.strip()}:
            out.setdefault(addr, host)
    return {a: why for a, why in out.items() if _is_v4(a)}


def _is_v4(a):
    try:
        return ipaddress.ip_address(a).version == 4
    except ValueError:
        return False


def conflicts(cidr):
    """[(address, why)] of reserved() inside cidr."""
    net = ipaddress.ip_network(cidr, strict=False)
    return sorted((a, why) for a, why in reserved().items() if ipaddress.ip_address(a) in net)
