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
DOWN forever: ACTIVE while associated with a port, DOWN otherwise.

ML2 loads drivers by entry-point name only; ../lab_ml2-1.0.dist-info declares it,
and up.sh puts this directory on neutron-server's PYTHONPATH.
"""
from neutron_lib import constants
from neutron_lib.api.definitions import portbindings
from neutron_lib.callbacks import events, registry, resources
from neutron_lib.plugins.ml2 import api
from oslo_log import log

LOG = log.getLogger(__name__)

_VIF_DETAILS = {portbindings.CAP_PORT_FILTER: True, portbindings.OVS_HYBRID_PLUG: False}


class BindAllMechanismDriver(api.MechanismDriver):

    def initialize(self):
        LOG.info("lab_bindall: binding every port (test lab only)")
        registry.subscribe(self._floatingip_status, resources.FLOATING_IP, events.AFTER_CREATE)
        registry.subscribe(self._floatingip_status, resources.FLOATING_IP, events.AFTER_UPDATE)

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
