#!/usr/bin/python3
"""Idempotent bootstrap of the lab cloud through its own APIs (openstacksdk).

  bootstrap.py identity    (needs keystone only; run before nova's services start,
                            which authenticate to placement at start-up)
      role "service"; project "service" with one user per service (roles admin and
      service); the catalog (compute, network, image, placement, volumev3,
      block-storage, public/internal/admin endpoints); projects+users "demo" and
      "quota-test" (role member); an application credential "lab-demo" of demo,
      kept in $OSLAB_STATE/appcred.json (its secret is only shown at creation).

  bootstrap.py resources   (needs every API)
      flavors m1.tiny/small/medium/large; public image "cirros" (an empty qcow2);
      public image "debian-12-node" (node-image.sh's rootfs tar.zst, OSLAB_NODE_IMAGE_FILE;
      lab_machine=true: the lab's compute driver boots it as a machine), uploaded again
      only when its key (OSLAB_NODE_IMAGE_KEY, property lab_image_key) changed;
      external flat network "public" + subnet 203.0.113.0/24; quotas of "demo"
      (room for 3 control + 3 worker + bastion) and "quota-test" (tiny); then waits
      until every fake compute host can be scheduled to and cinder-volume is up
      (heartbeats newer than OSLAB_UP_STARTED: this start's processes, not old rows).

Settings come from OSLAB_* environment variables set by component.sh.
"""
import datetime
import json
import os
import sys
import time
import urllib.parse

import openstack

E = os.environ
KEYSTONE = E['OSLAB_KEYSTONE_URL'] + '/v3'
REGION = 'RegionOne'
STATE = E['OSLAB_STATE']
APPCRED_FILE = os.path.join(STATE, 'appcred.json')

FLAVORS = [  # name, vcpus, ram MB, disk GB
    ('m1.tiny', 1, 512, 1),
    ('m1.small', 1, 2048, 20),
    ('m1.medium', 2, 4096, 40),
    ('m1.large', 4, 8192, 80),
]
# demo: 3 control (m1.medium) + 3 worker (m1.large) + bastion fit, with room to spare
DEMO_QUOTAS = {
    'compute': {'instances': 20, 'cores': 40, 'ram': 81920},
    'network': {'port': 100, 'floatingip': 20, 'security_group_rule': 200},
    'volume': {'volumes': 20, 'gigabytes': 1000},
}
# quota-test: one m1.tiny at most and no floating IP, for quota pre-flight tests
QUOTA_TEST_QUOTAS = {
    'compute': {'instances': 1, 'cores': 1, 'ram': 512},
    'network': {'floatingip': 0},
}


def log(*args):
    print(*args, flush=True)


def connect(user, password, project):
    # never pick up the caller's OS_CLOUD / clouds.yaml (env.sh may be sourced)
    return openstack.connect(
        auth_url=KEYSTONE, username=user, password=password, project_name=project,
        user_domain_name='Default', project_domain_name='Default', region_name=REGION,
        load_yaml_config=False, load_envvars=False)


# ---------------------------------------------------------------- identity
# Look-ups are filtered lists, not the SDK's find_*(): those first GET the name as an
# id, and keystone logs every such 404 as an ERROR with a traceback.
def first(resources):
    return next(iter(resources), None)


def ensure_project(conn, name, description):
    project = first(conn.identity.projects(name=name, domain_id='default'))
    if not project:
        project = conn.identity.create_project(name=name, domain_id='default', description=description)
        log('created project', name)
    return project


def ensure_user(conn, name, password, project):
    user = first(conn.identity.users(name=name, domain_id='default'))
    if not user:
        user = conn.identity.create_user(name=name, domain_id='default', password=password,
                                         default_project_id=project.id)
        log('created user', name)
    return user


def ensure_role(conn, name):
    return first(conn.identity.roles(name=name)) or conn.identity.create_role(name=name)


def ensure_grant(conn, role, user, project):
    if not first(conn.identity.role_assignments(role_id=role.id, user_id=user.id,
                                                scope_project_id=project.id)):
        conn.identity.assign_project_role_to_user(project, user, role)


def ensure_catalog(conn, name, stype, url):
    svc = next((s for s in conn.identity.services() if s.name == name and s.type == stype), None)
    if not svc:
        svc = conn.identity.create_service(name=name, type=stype, is_enabled=True)
        log('created service', name, stype)
    have = {e.interface: e for e in conn.identity.endpoints(service_id=svc.id)}
    for interface in ('public', 'internal', 'admin'):
        if interface in have and have[interface].url == url:
            continue
        if interface in have:  # a port was changed: replace the endpoint
            conn.identity.delete_endpoint(have[interface])
        conn.identity.create_endpoint(service_id=svc.id, interface=interface, url=url,
                                      region_id=REGION)


def ensure_appcred(demo_password):
    demo = connect('demo', demo_password, 'demo')
    uid = demo.current_user_id
    if os.path.exists(APPCRED_FILE):
        with open(APPCRED_FILE) as f:
            saved = json.load(f)
        if any(ac.id == saved['id'] for ac in demo.identity.application_credentials(uid)):
            return
        log('application credential', saved['id'], 'is gone: making a new one')
    for ac in demo.identity.application_credentials(uid):
        if ac.name == 'lab-demo':
            demo.identity.delete_application_credential(uid, ac.id)
    ac = demo.identity.create_application_credential(
        uid, name='lab-demo', description='provisioner test lab (tests/lab/openstack)')
    tmp = APPCRED_FILE + '.tmp'
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'w') as f:
        json.dump({'id': ac.id, 'secret': ac.secret}, f)
    os.replace(tmp, APPCRED_FILE)
    log('created application credential lab-demo', ac.id)


def identity():
    conn = connect('admin', E['OSLAB_ADMIN_PASSWORD'], 'admin')
    admin, member = ensure_role(conn, 'admin'), ensure_role(conn, 'member')
    service_role = ensure_role(conn, 'service')
    service = ensure_project(conn, 'service', 'OpenStack service users')
    catalog = [  # service user, service name, type, endpoint
        ('nova', 'nova', 'compute', E['OSLAB_URL_COMPUTE']),
        ('neutron', 'neutron', 'network', E['OSLAB_URL_NETWORK']),
        ('glance', 'glance', 'image', E['OSLAB_URL_IMAGE']),
        ('placement', 'placement', 'placement', E['OSLAB_URL_PLACEMENT']),
        ('cinder', 'cinderv3', 'volumev3', E['OSLAB_URL_VOLUME']),
        ('cinder', 'cinder', 'block-storage', E['OSLAB_URL_VOLUME']),
    ]
    for user_name, name, stype, url in catalog:
        user = ensure_user(conn, user_name, E['OSLAB_SERVICE_PASSWORD'], service)
        ensure_grant(conn, admin, user, service)
        ensure_grant(conn, service_role, user, service)
        ensure_catalog(conn, name, stype, url)

    for name, password in (('demo', E['OSLAB_DEMO_PASSWORD']),
                           ('quota-test', E['OSLAB_QUOTA_PASSWORD'])):
        project = ensure_project(conn, name, 'provisioner test lab tenant')
        user = ensure_user(conn, name, password, project)
        ensure_grant(conn, member, user, project)
    ensure_appcred(E['OSLAB_DEMO_PASSWORD'])
    log('identity bootstrap done')


# ---------------------------------------------------------------- resources
def ensure_image(conn):
    image = conn.image.find_image('cirros', ignore_missing=True)
    if image and image.status == 'active':
        return
    if image:  # an upload that was interrupted leaves it queued forever
        log('image cirros is', image.status, '- uploading it again')
        conn.image.delete_image(image)
    qcow = os.path.join(STATE, 'cirros.qcow2')
    if not os.path.exists(qcow):
        # an empty 64 MB-virtual qcow2 (~200 KB): nothing ever boots it
        import subprocess
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', qcow + '.tmp', '64M'], check=True)
        os.replace(qcow + '.tmp', qcow)
    image = conn.create_image('cirros', filename=qcow, disk_format='qcow2',
                              container_format='bare', visibility='public', wait=True)
    log('uploaded image cirros', image.id)


NODE_IMAGE = 'debian-12-node'


def ensure_node_image(conn):
    path, key = E['OSLAB_NODE_IMAGE_FILE'], E['OSLAB_NODE_IMAGE_KEY']
    old = []
    for image in conn.image.images(name=NODE_IMAGE, visibility='public'):
        if image.status == 'active' and (image.properties or {}).get('lab_image_key') == key:
            return
        old.append(image)
    t0 = time.time()
    image = conn.create_image(
        NODE_IMAGE, filename=path, disk_format='raw', container_format='bare',
        visibility='public', wait=True,
        meta={'lab_machine': 'true', 'lab_rootfs': 'tar.zst', 'lab_image_key': key,
              'os_distro': 'debian', 'os_version': '12', 'os_admin_user': 'debian'})
    log('uploaded image %s %s (key %s) in %.1f s' % (NODE_IMAGE, image.id, key, time.time() - t0))
    for image in old:   # an older build or an interrupted upload; servers keep running
        conn.image.delete_image(image, ignore_missing=True)
        log('deleted the previous image %s %s (%s)' % (NODE_IMAGE, image.id, image.status))


def ensure_public_network(conn):
    net = conn.network.find_network('public', ignore_missing=True)
    if not net:
        net = conn.network.create_network(
            name='public', is_router_external=True, is_shared=False,
            provider_network_type='flat', provider_physical_network='public')
        log('created network public', net.id)
    pools = public_pools()
    subnets = list(conn.network.subnets(network_id=net.id))
    if not subnets:
        # TEST-NET-3 (RFC 5737). The host routes only the floating IPs in use (lab_ml2)
        conn.network.create_subnet(
            name='public-subnet', network_id=net.id, ip_version=4, cidr=PUBLIC_CIDR,
            gateway_ip='203.0.113.1', is_dhcp_enabled=False, allocation_pools=pools)
        log('created subnet %s on public' % PUBLIC_CIDR)
    elif subnets[0].cidr == PUBLIC_CIDR and subnets[0].allocation_pools != pools:
        conn.network.update_subnet(subnets[0], allocation_pools=pools)
        log('allocation pools of %s: %s' % (PUBLIC_CIDR, pools))


PUBLIC_CIDR = '203.0.113.0/24'


def public_pools():
    """203.0.113.10-250 without the addresses this host needs (on a CI machine the
    package registries' gateway may sit in TEST-NET-3): a floating IP never takes one."""
    import ipaddress
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'pylib'))
    import lab_hostnet
    skip = {ipaddress.ip_address(a) for a, _ in lab_hostnet.conflicts(PUBLIC_CIDR)}
    for a, why in lab_hostnet.conflicts(PUBLIC_CIDR):
        log('public: %s (%s) is kept out of the floating IPs' % (a, why))
    pools, start = [], None
    first, last = ipaddress.ip_address('203.0.113.10'), ipaddress.ip_address('203.0.113.250')
    a = first
    while a <= last:
        if a in skip:
            if start is not None:
                pools.append({'start': str(start), 'end': str(a - 1)})
                start = None
        elif start is None:
            start = a
        a += 1
    if start is not None:
        pools.append({'start': str(start), 'end': str(last)})
    return pools


def set_quotas(conn, project, quotas):
    pid = first(conn.identity.projects(name=project, domain_id='default')).id
    if 'compute' in quotas:
        conn.set_compute_quotas(pid, **quotas['compute'])
    if 'network' in quotas:
        conn.set_network_quotas(pid, **quotas['network'])
    if 'volume' in quotas:
        conn.set_volume_quotas(pid, **quotas['volume'])


def mapped_hosts():
    """Compute hosts mapped to a cell (nova_api.host_mappings). The scheduler's
    periodic discovery writes them; a host without one fails every boot with
    "Host ... is not mapped to any cell", and no API shows the mapping."""
    import pymysql
    url = urllib.parse.urlsplit(E['OSLAB_DB'])
    db = pymysql.connect(host=url.hostname, port=url.port, user=url.username,
                         password=urllib.parse.unquote(url.password), database='nova_api')
    try:
        with db.cursor() as cur:
            cur.execute('SELECT host FROM host_mappings')
            return {row[0] for row in cur.fetchall()}
    finally:
        db.close()


def heartbeat_since(service, started):
    """True when the service reported after `started` (epoch s). A restarted service's
    row still looks "up" for service_down_time on its old heartbeats, but its RPC queue
    (non-durable, gone with the RabbitMQ restart) exists only once it runs again."""
    updated = service.get('updated_at') if isinstance(service, dict) else service.updated_at
    if not updated:
        return False
    when = datetime.datetime.fromisoformat(updated.replace('Z', '')).replace(tzinfo=datetime.timezone.utc)
    return when.timestamp() >= int(started)


def schedulable(conn, hosts, started):
    """What is still missing before a server can be booted on every host ('' = nothing)."""
    fresh = {(s.binary, s.host) for s in conn.compute.services()
             if s.state == 'up' and s.status == 'enabled' and heartbeat_since(s, started)}
    for binary in ('nova-conductor', 'nova-scheduler'):
        if not any(b == binary for b, _ in fresh):
            return 'a heartbeat of %s' % binary
    stale = {h for h in hosts if ('nova-compute', h) not in fresh}
    if stale:
        return 'a heartbeat of nova-compute on %s' % sorted(stale)
    hypervisors = {h.name for h in conn.compute.hypervisors()}
    if not hosts <= hypervisors:
        return 'hypervisors %s' % sorted(hosts - hypervisors)
    rps = conn.placement.get('/resource_providers?resources=VCPU:1,MEMORY_MB:512',
                             microversion='1.4').json()['resource_providers']
    with_inventory = {rp['name'] for rp in rps}
    if not hosts <= with_inventory:
        return 'placement inventory of %s' % sorted(hosts - with_inventory)
    unmapped = hosts - mapped_hosts()
    if unmapped:
        return 'cell mapping of %s' % sorted(unmapped)
    volume = conn.block_storage.get('/os-services').json()['services']
    for binary in ('cinder-scheduler', 'cinder-volume'):
        if not any(s['binary'] == binary and s['state'] == 'up' and s['status'] == 'enabled'
                   and heartbeat_since(s, started) for s in volume):
            return 'a heartbeat of %s' % binary
    return ''


def resources():
    conn = connect('admin', E['OSLAB_ADMIN_PASSWORD'], 'admin')
    for name, vcpus, ram, disk in FLAVORS:
        if not conn.compute.find_flavor(name, ignore_missing=True):
            conn.compute.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=disk, is_public=True)
            log('created flavor', name)
    ensure_image(conn)
    ensure_node_image(conn)
    ensure_public_network(conn)
    set_quotas(conn, 'demo', DEMO_QUOTAS)
    set_quotas(conn, 'quota-test', QUOTA_TEST_QUOTAS)
    log('quotas set (demo, quota-test)')

    hosts = set(E['OSLAB_COMPUTE_HOSTS'].split())
    started = float(E['OSLAB_UP_STARTED'])
    t0 = time.time()
    deadline = t0 + float(E.get('OSLAB_COMPUTE_WAIT', '300'))
    missing = schedulable(conn, hosts, started)
    while missing:
        if time.time() > deadline:
            sys.exit('compute not schedulable after %.0f s: still waiting for %s' %
                     (time.time() - t0, missing))
        time.sleep(1)
        missing = schedulable(conn, hosts, started)
    log('schedulable: %s (waited %.1f s); cinder-volume up' % (' '.join(sorted(hosts)), time.time() - t0))


if __name__ == '__main__':
    {'identity': identity, 'resources': resources}[sys.argv[1]]()
