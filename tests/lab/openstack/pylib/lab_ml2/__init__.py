"""ML2 mechanism driver "lab_bindall" for the provisioner test lab (never for real use).

The lab's neutron-server runs without any L2 agent (no OVS, OVN or linuxbridge),
so no stock mechanism driver can bind a port: every port handed to nova would
get binding:vif_type=binding_failed and nova would fail the boot with
PortBindingFailed (vif_plugging_is_fatal=false does not help: nova checks the
binding right after updating the port, before any wait for events).

This driver binds every port, on any host, to the first segment offered, with
vif_type "ovs" (what a real OVS deployment reports), and sets the port ACTIVE
(no agent exists to report "device up"). Nova's fake virt driver ignores the VIF,
so servers go ACTIVE with a real neutron port and a real fixed IP.

It also plays the L3 agent's part for floating IPs, which would otherwise stay
DOWN forever: ACTIVE while associated with a port, DOWN otherwise. And, for the
servers that are real machines (tests/lab/openstack/pylib/nova_virt_lab.py), it
makes a floating IP reachable from the host as on a real cloud. After every floating
IP change it rebuilds, from the database (so that nothing drifts):
  * a host route FIP/32 on the host's leg on the external network ($LAB_FIP_DEV,
    address $LAB_FIP_SRC/32, made by component.sh): the host connects from that
    address. Only the associated floating IPs are routed, never the whole external
    range, and never an address the host already routes some other way (on a CI
    machine the external network's TEST-NET range may hold the package registries'
    gateway: that floating IP is then left out, with an error in the log);
  * the nftables table "ip lab_openstack", map "fip": connections the host makes to a
    floating IP are DNATed to the fixed IP of its port, which the host reaches on the
    lab segment of its network; the machine answers through its default route (the
    host).
Only connections from the host: the host does not forward, so a machine cannot reach
another's floating IP. LAB_FIP_NAT=0 leaves the host's routes and nftables alone.

ML2 loads drivers by entry-point name only; ../lab_ml2-1.0.dist-info declares it,
and up.sh puts this directory on neutron-server's PYTHONPATH.
"""
import os
import re

from neutron_lib import constants
from neutron_lib.api.definitions import portbindings
from neutron_lib.callbacks import events, registry, resources
from neutron_lib.plugins.ml2 import api
from oslo_concurrency import processutils
from oslo_log import log

LOG = log.getLogger(__name__)

_VIF_DETAILS = {portbindings.CAP_PORT_FILTER: True, portbindings.OVS_HYBRID_PLUG: False}
NFT_TABLE = 'lab_openstack'


def fip_nat_ruleset(pairs):
    """The nft script that makes the table hold exactly these (floating, fixed) pairs."""
    lines = [
        'add table ip %s' % NFT_TABLE,
        'add map ip %s fip { type ipv4_addr : ipv4_addr ; }' % NFT_TABLE,
        'add chain ip %s output { type nat hook output priority -100 ; policy accept ; }' % NFT_TABLE,
        'flush chain ip %s output' % NFT_TABLE,
        'add rule ip %s output dnat to ip daddr map @fip' % NFT_TABLE,
        'flush map ip %s fip' % NFT_TABLE,
    ]
    if pairs:
        lines.append('add element ip %s fip { %s }' % (
            NFT_TABLE, ', '.join('%s : %s' % p for p in sorted(pairs))))
    return '\n'.join(lines) + '\n'


def _ip(*args):
    out, _err = processutils.execute('ip', *args)
    return out


def sync_fip_routes(wanted, dev, src):
    """Host routes FIP/32 dev DEV src SRC for exactly the wanted floating IPs; returns
    the ones routed (an address the host routes otherwise is skipped)."""
    have = set(re.findall(r'^(\d+\.\d+\.\d+\.\d+)\b', _ip('-4', 'route', 'show', 'dev', dev), re.M))
    for addr in sorted(have - wanted):
        _ip('route', 'del', addr + '/32', 'dev', dev)
    routed = set(have & wanted)
    for addr in sorted(wanted - have):
        taken = _ip('-4', 'route', 'show', 'table', 'all', 'match', addr + '/32').splitlines()
        taken = [r for r in taken if not r.startswith(('default', 'local ', 'broadcast '))
                 and r.split()[0] != '0.0.0.0/0']
        if taken:
            LOG.error("lab_bindall: floating IP %s is not reachable from the host: the host "
                      "already routes it (%s); the lab leaves that route alone", addr, taken[0])
            continue
        _ip('route', 'add', addr + '/32', 'dev', dev, 'src', src)
        routed.add(addr)
    return routed


class BindAllMechanismDriver(api.MechanismDriver):

    def initialize(self):
        LOG.info("lab_bindall: binding every port (test lab only)")
        registry.subscribe(self._floatingip_status, resources.FLOATING_IP, events.AFTER_CREATE)
        registry.subscribe(self._floatingip_status, resources.FLOATING_IP, events.AFTER_UPDATE)
        if os.environ.get('LAB_FIP_NAT', '1') != '0':
            for event in (events.AFTER_CREATE, events.AFTER_UPDATE, events.AFTER_DELETE):
                registry.subscribe(self._floatingip_nat, resources.FLOATING_IP, event)

    def bind_port(self, context):
        segments = context.segments_to_bind
        if not segments:
            return
        context.set_binding(segments[0][api.ID], portbindings.VIF_TYPE_OVS, _VIF_DETAILS,
                            status=constants.PORT_STATUS_ACTIVE)
        LOG.debug("lab_bindall: port %s bound on host %s", context.current['id'], context.host)

    @staticmethod
    def _floatingip_status(resource, event, trigger, payload):
        # Runs after the DB commit, where an L3 agent's status report would land;
        # the trigger is the L3 plugin.
        fip = payload.latest_state
        status = (constants.FLOATINGIP_STATUS_ACTIVE if fip.get('port_id')
                  else constants.FLOATINGIP_STATUS_DOWN)
        if fip.get('status') != status:
            trigger.update_floatingip_status(payload.context.elevated(), fip['id'], status)

    @staticmethod
    def _floatingip_nat(resource, event, trigger, payload):
        """Rebuild the host's floating IP map from the database (all projects)."""
        try:
            fips = trigger.get_floatingips(payload.context.elevated(),
                                           fields=['floating_ip_address', 'fixed_ip_address',
                                                   'port_id'])
            pairs = {(f['floating_ip_address'], f['fixed_ip_address']) for f in fips
                     if f.get('port_id') and f.get('fixed_ip_address')}
            dev, src = os.environ.get('LAB_FIP_DEV'), os.environ.get('LAB_FIP_SRC')
            if not (dev and src and os.path.exists('/sys/class/net/%s' % dev)):
                LOG.warning("lab_bindall: no host leg on the external network (LAB_FIP_DEV): "
                            "floating IPs are not reachable from the host")
                pairs = set()
            else:
                routed = sync_fip_routes({fip for fip, _ in pairs}, dev, src)
                pairs = {p for p in pairs if p[0] in routed}
            processutils.execute('nft', '-f', '-', process_input=fip_nat_ruleset(pairs))
            LOG.debug("lab_bindall: floating IP NAT: %d address(es)", len(pairs))
        except Exception:   # never fail the API call for the lab's NAT
            LOG.exception("lab_bindall: could not update the floating IP NAT (nft)")
