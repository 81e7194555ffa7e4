"""nova.virt.lab: the lab's compute driver (compute_driver = lab.LabDriver).

Nova's fake driver, except that a server whose image carries the Glance property
lab_machine=true is a real machine: a systemd-nspawn "machine" of the lab's machine
library (tests/lab/nodes/machine.sh), with systemd as PID 1, sshd and cloud-init.
Every other image (cirros) keeps the fake driver's behaviour: a database row only.

launch.py loads this file as the module nova.virt.lab (LAB_NOVA_VIRT): Nova loads
drivers as 'nova.virt.' + compute_driver only.

A machine of server UUID is named os-UUID, its state lives in
$OSLAB_STATE/nova/machines/UUID (overlay upper dir, console.log, volumes/), and:

  root filesystem  copy-on-write overlay over the server's Glance image, unpacked
                   once per image into $OSLAB_STATE/nova/lab-images/IMAGE_ID (the
                   image data is a tar.zst of a root filesystem: lab_rootfs=tar.zst)
  network          one lab L2 segment per Neutron network (machine.sh net-up
                   os<8 hex of the network id> CIDR GATEWAY: the host holds the
                   subnet's gateway address, so it reaches every lab subnet), the
                   port's fixed IP and MAC on eth0.., default route via the gateway.
                   Floating IPs: see pylib/lab_ml2 (host nftables DNAT).
  identity         hostname = instance.hostname (the server name); cloud-init's
                   NoCloud seed in /var/lib/cloud/seed/nocloud: instance-id = UUID,
                   local-hostname, public-keys = the keypair, user-data = the
                   server's user data (read by the image's cloud-init at boot)
  profile          machine.sh --profile kubelet (what kubelet + containerd need
                   inside nspawn); memory limit = the flavor's RAM
  volumes          a Cinder volume of the lab backend (pylib/lab_cinder) is a host
                   directory; attached, it is moved into the machine's volumes/
                   dir, which is bound at /mnt/volumes: /mnt/volumes/VOLUME_ID and
                   a symlink /mnt/volumes/vdb (Nova's device name) -> VOLUME_ID
  console          get_console_output = the machine's console (cloud-init prints
                   the SSH host keys there)
  snapshot         createImage: the machine is frozen (cgroup freezer) while its
                   root is archived (tar.zst), then the archive is uploaded to the
                   image Nova created (which inherited lab_machine=true)
  power            stop = clean poweroff (power cut after the timeout), start,
                   soft reboot = reboot inside, hard reboot = power cut + boot,
                   pause = cgroup freezer, delete = power cut + delete (no mount,
                   netns, veth, cgroup or process left)

Environment (set by component.sh): LAB_STATE, OSLAB_STATE, LAB_MACHINE_SH.
"""
import base64
import json
import os
import shutil
import time

import netaddr

from oslo_concurrency import lockutils
from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_utils import excutils

from nova.compute import power_state
from nova.compute import task_states
from nova import exception
from nova.image import glance
from nova.virt import fake
from nova.virt import hardware

import lab_hostnet   # pylib/, on nova-compute's PYTHONPATH

LOG = logging.getLogger(__name__)

MACHINE_SH = os.environ.get('LAB_MACHINE_SH', '')
LAB_STATE = os.environ.get('LAB_STATE', '/var/tmp/provisioner-lab')
OSLAB_STATE = os.environ.get('OSLAB_STATE', os.path.join(LAB_STATE, 'openstack'))
MACHINES = os.path.join(OSLAB_STATE, 'nova', 'machines')
IMAGES = os.path.join(OSLAB_STATE, 'nova', 'lab-images')
LOCKS = os.path.join(OSLAB_STATE, 'nova', 'lock')
VOLUME_STORE = os.path.join(OSLAB_STATE, 'cinder', 'lab-volumes')
NODES_REG = os.path.join(LAB_STATE, 'nodes', 'machines')
NODES_NETS = os.path.join(LAB_STATE, 'nodes', 'nets')
FREEZER = '/sys/fs/cgroup/freezer/lab-nodes'
RESIZING = (task_states.RESIZE_PREP, task_states.RESIZE_MIGRATING, task_states.RESIZE_MIGRATED,
            task_states.RESIZE_FINISH, task_states.RESIZE_REVERTING, task_states.RESIZE_CONFIRMING)
CONSOLE_MAX = 256 * 1024   # bytes of console output handed to the API (it tails lines)
VOLUMES_AT = '/mnt/volumes'


def machine_name(instance):
    return 'os-%s' % instance.uuid


def is_machine_image(instance):
    """A server boots a real machine when its image says lab_machine=true (Nova
    copies every image property into system metadata, prefixed image_)."""
    sysmeta = instance.system_metadata or {}
    return str(sysmeta.get('image_lab_machine', '')).lower() in ('true', '1', 'yes')


def run(*cmd, **kw):
    """A command through oslo's processutils (green with eventlet): stdout."""
    env = {'LAB_STATE': LAB_STATE}
    out, _err = processutils.execute(*cmd, env_variables=env, **kw)
    return out


def machine(*args):
    return run(MACHINE_SH, *args)


def lock(name):
    return lockutils.lock(name, lock_file_prefix='lab-', external=True, lock_path=LOCKS)


def proc_start(pid):
    try:
        with open('/proc/%s/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == 'Z':
        return None
    return fields[19]


def alive(pidfile):
    """machine.sh's lab_alive: the recorded process still runs (same start time)."""
    try:
        with open(pidfile) as f:
            pid, start = f.read().split()[:2]
    except (OSError, ValueError):
        return False
    return proc_start(pid) == start


class LabDriver(fake.FakeDriver):
    """The fake driver, with real machines for images marked lab_machine=true."""

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi, read_only)
        for d in (MACHINES, IMAGES, LOCKS, VOLUME_STORE):
            os.makedirs(d, exist_ok=True)
        if not os.access(MACHINE_SH, os.X_OK):
            LOG.warning('lab driver: LAB_MACHINE_SH=%r is not executable: lab_machine '
                        'images cannot boot', MACHINE_SH)

    # ------------------------------------------------------------ helpers
    @staticmethod
    def _dir(instance):
        return os.path.join(MACHINES, instance.uuid)

    @staticmethod
    def _exists(instance):
        return os.path.exists(os.path.join(NODES_REG, machine_name(instance)))

    @classmethod
    def _running(cls, instance):
        d = cls._dir(instance)
        return alive(os.path.join(d, 'run', 'launcher.pid')) or alive(os.path.join(d, 'run', 'nspawn.pid'))

    @staticmethod
    def _freezer(instance):
        return os.path.join(FREEZER, machine_name(instance), 'freezer.state')

    def _freeze(self, instance, frozen, timeout=20):
        """Freeze or thaw every process of the machine (cgroup v1 freezer). False when
        the host has no freezer or the state was not reached in time."""
        path = self._freezer(instance)
        if not os.path.exists(path):
            return False
        want = 'FROZEN' if frozen else 'THAWED'
        with open(path, 'w') as f:
            f.write(want)
        deadline = time.time() + timeout
        while time.time() < deadline:
            with open(path) as f:
                if f.read().strip() == want:
                    return True
            time.sleep(0.05)
        return False

    def _frozen(self, instance):
        try:
            with open(self._freezer(instance)) as f:
                return f.read().strip() in ('FROZEN', 'FREEZING')
        except OSError:
            return False

    # ------------------------------------------------------------ images
    def _image_lower(self, context, image_id):
        """The unpacked root filesystem of a Glance image (read-only lower dir)."""
        lower = os.path.join(IMAGES, image_id)
        if os.path.exists(lower + '.complete'):
            return lower
        with lock('image-' + image_id):
            if os.path.exists(lower + '.complete'):
                return lower
            t0 = time.time()
            tmp, archive = lower + '.tmp', lower + '.tar.zst'
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            try:
                glance.API().download(context, image_id, dest_path=archive)
                run('sh', '-c', 'zstd -q -d -c "$0" | tar -C "$1" --numeric-owner --xattrs '
                    '--xattrs-include="*" -xpf -', archive, tmp)
                if not os.access(os.path.join(tmp, 'lib/systemd/systemd'), os.X_OK):
                    raise exception.ImageUnacceptable(
                        image_id=image_id, reason='lab_machine image without /lib/systemd/systemd '
                        '(its data must be a tar.zst of a root filesystem)')
                shutil.rmtree(lower, ignore_errors=True)
                os.rename(tmp, lower)
                open(lower + '.complete', 'w').close()
            except Exception:
                with excutils.save_and_reraise_exception():
                    shutil.rmtree(tmp, ignore_errors=True)
            finally:
                if os.path.exists(archive):
                    os.unlink(archive)
            LOG.info('lab driver: image %s unpacked in %.1f s', image_id, time.time() - t0)
        return lower

    def _forget_unused_images(self, context):
        """Unpacked images that Glance no longer has and no machine uses."""
        used = set()
        for name in os.listdir(NODES_REG) if os.path.isdir(NODES_REG) else ():
            try:
                with open(os.path.join(NODES_REG, name, 'machine.conf')) as f:
                    used.add(f.read())
            except OSError:
                pass
        for marker in os.listdir(IMAGES):
            if not marker.endswith('.complete'):
                continue
            image_id = marker[:-len('.complete')]
            lower = os.path.join(IMAGES, image_id)
            if any(lower in conf for conf in used):
                continue
            try:
                glance.API().get(context, image_id)
                continue
            except exception.ImageNotFound:
                pass
            except Exception:   # Glance unreachable, forbidden, ...: keep it
                continue
            with lock('image-' + image_id):
                os.unlink(os.path.join(IMAGES, marker))
                shutil.rmtree(lower, ignore_errors=True)
            LOG.info('lab driver: removed the unpacked image %s (gone from Glance)', image_id)

    # ------------------------------------------------------------ networks
    @staticmethod
    def _segments():
        """Lab networks of this host: {name: (cidr, host address)}."""
        nets = {}
        for name in os.listdir(NODES_NETS) if os.path.isdir(NODES_NETS) else ():
            try:
                with open(os.path.join(NODES_NETS, name, 'cidr')) as f:
                    cidr = f.read().strip()
                with open(os.path.join(NODES_NETS, name, 'gw')) as f:
                    gw = f.read().strip()
            except OSError:
                continue
            nets[name] = (cidr, gw)
        return nets

    def _nics(self, instance, network_info):
        """[(segment, cidr, host address, ip/prefix, mac)] of the server's ports."""
        nics = []
        for vif in network_info or []:
            if (vif['network'].get('meta') or {}).get('physical_network'):
                raise exception.InstanceDeployFailure(
                    reason='lab driver: a machine can only be on tenant networks, not on the '
                    'provider network %s (the host does not join external networks)'
                    % vif['network'].get('label'), instance_id=instance.uuid)
            subnets = [s for s in vif['network']['subnets'] if s['version'] == 4 and s['ips']]
            if not subnets:
                continue
            s = subnets[0]
            cidr = s['cidr']
            prefix = cidr.split('/')[1]
            ip = s['ips'][0]['address']
            gw = s['gateway']['address'] if s.get('gateway') and s['gateway'].get('address') else None
            if not gw:   # no gateway: the host takes the subnet's last address
                gw = str(netaddr.IPNetwork(cidr)[-2])
            seg = 'os' + vif['network']['id'].replace('-', '')[:8]
            nics.append((seg, cidr, gw, '%s/%s' % (ip, prefix), vif['address']))
        if not nics:
            raise exception.InstanceDeployFailure(
                reason='lab driver: the server has no IPv4 port', instance_id=instance.uuid)
        return nics

    # ------------------------------------------------------------ machines
    def _write_seed(self, instance, root):
        """cloud-init's NoCloud seed (what a config drive carries on a real cloud)."""
        seed = os.path.join(root, 'var/lib/cloud/seed/nocloud')
        os.makedirs(seed, exist_ok=True)
        meta = {'instance-id': instance.uuid, 'local-hostname': instance.hostname}
        if instance.key_data:
            meta['public-keys'] = [instance.key_data.strip()]
        with open(os.path.join(seed, 'meta-data'), 'w') as f:
            json.dump(meta, f)   # JSON is YAML
            f.write('\n')
        user_data = base64.b64decode(instance.user_data) if instance.user_data else b''
        with open(os.path.join(seed, 'user-data'), 'wb') as f:
            f.write(user_data)
        with open(os.path.join(seed, 'vendor-data'), 'w') as f:
            f.write('')
        os.chmod(seed, 0o700)

    @staticmethod
    def _is_root(instance, bdm):
        return bdm.get('boot_index') == 0 or bdm.get('mount_device') == instance.root_device_name

    def _root_volume_image(self, context, instance, block_device_info):
        """Boot from volume: the image the root volume was made from (its volume image
        metadata); the machine boots that image's root filesystem."""
        from nova.volume import cinder
        for bdm in (block_device_info or {}).get('block_device_mapping') or []:
            if self._is_root(instance, bdm):
                vid, _ = self._volume_store_path(bdm.get('connection_info') or {})
                if vid:
                    vol = cinder.API().get(context, vid)
                    return (vol.get('volume_image_metadata') or {}).get('image_id')
        return None

    def _create_machine(self, context, instance, network_info, block_device_info, power_on):
        name, d = machine_name(instance), self._dir(instance)
        t0 = time.time()
        image_id = instance.image_ref or self._root_volume_image(context, instance, block_device_info)
        if not image_id:
            raise exception.InstanceDeployFailure(
                reason='lab driver: no image to boot from', instance_id=instance.uuid)
        lower = self._image_lower(context, image_id)
        nics = self._nics(instance, network_info)
        args = ['prepare', name, '--lower', lower, '--state', d, '--hostname', instance.hostname,
                '--profile', 'kubelet', '--mem-max', str(instance.flavor.memory_mb * 1024 * 1024),
                '--bind', '%s:%s' % (os.path.join(d, 'volumes'), VOLUMES_AT)]
        for seg, _cidr, _host, ip, mac in nics:
            args += ['--net', seg, '--ip', ip, '--mac', mac]
        args += ['--gw', nics[0][2]]
        os.makedirs(os.path.join(d, 'volumes'), exist_ok=True)
        # segments are made and removed under one lock (a delete must not take down a
        # segment a spawn is about to use)
        with lock('segments'):
            have = self._segments()
            for seg, cidr, host, _ip, _mac in nics:
                taken = lab_hostnet.conflicts(cidr) if seg not in have else []
                if taken:
                    raise exception.InstanceDeployFailure(
                        reason='lab driver: network %s holds %s, which this host reaches through '
                        'its default route: a lab segment for it would cut the host off' % (
                            cidr, ', '.join('%s (%s)' % t for t in taken)),
                        instance_id=instance.uuid)
                # net-up refuses a range the host already routes (another network
                # with the same CIDR, a real interface): the boot fails with that reason
                machine('net-up', seg, cidr, host)
            machine(*args)
        root = os.path.join(d, 'root')
        self._write_seed(instance, root)
        # an image made from a machine may carry containerd's data, which the kubelet
        # profile keeps off the overlay (machine dir containerd/)
        src = os.path.join(lower, 'var/lib/containerd')
        if os.path.isdir(src) and os.listdir(src):
            run('cp', '-a', src + '/.', os.path.join(d, 'containerd'))
        for bdm in (block_device_info or {}).get('block_device_mapping') or []:
            if not self._is_root(instance, bdm):   # the root volume holds nothing here
                self._plug_volume(instance, bdm.get('connection_info') or {}, bdm.get('mount_device'))
        if power_on:
            machine('boot', name, '--wait', 'started')
        LOG.info('lab driver: machine %s (%s, %s) %s in %.1f s', name, instance.hostname,
                 ' '.join(n[3] for n in nics), 'booting' if power_on else 'prepared', time.time() - t0)

    def _delete_machine(self, context, instance):
        name, d = machine_name(instance), self._dir(instance)
        if self._exists(instance):
            try:
                machine('kill', name)   # a deleted server is powered off at once, as on a real cloud
            except processutils.ProcessExecutionError as e:
                LOG.warning('lab driver: kill %s: %s', name, e.stderr)
            self._unplug_all_volumes(instance)
            machine('delete', name, '--timeout', '5')
        elif os.path.isdir(d):
            self._unplug_all_volumes(instance)
            shutil.rmtree(d, ignore_errors=True)
        # segments nobody uses any more (net-down refuses while a machine is cabled)
        with lock('segments'):
            for seg in self._segments():
                if seg.startswith('os'):
                    try:
                        machine('net-down', seg)
                    except processutils.ProcessExecutionError:
                        pass
        try:
            self._forget_unused_images(context)
        except Exception:
            LOG.exception('lab driver: image clean-up failed')

    # ------------------------------------------------------------ volumes
    @staticmethod
    def _volume_store_path(connection_info):
        data = connection_info.get('data') or {}
        vid = data.get('volume_id') or connection_info.get('serial')
        path = data.get('path') or (os.path.join(VOLUME_STORE, vid) if vid else None)
        return vid, path

    def _plug_volume(self, instance, connection_info, mountpoint):
        vid, path = self._volume_store_path(connection_info)
        if not vid:
            LOG.warning('lab driver: attachment without a volume id: %s', connection_info)
            return
        vols = os.path.join(self._dir(instance), 'volumes')
        os.makedirs(vols, exist_ok=True)
        dest = os.path.join(vols, vid)
        if not os.path.exists(dest):
            if path and os.path.isdir(path):
                os.rename(path, dest)   # same file system: atomic, and visible in the machine at once
            else:
                os.makedirs(dest)
        if mountpoint:
            link = os.path.join(vols, os.path.basename(mountpoint))
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(vid, link)
        LOG.info('lab driver: volume %s at %s/%s (%s)', vid, VOLUMES_AT, vid, mountpoint)

    def _unplug_volume(self, instance, vid):
        vols = os.path.join(self._dir(instance), 'volumes')
        src = os.path.join(vols, vid)
        for entry in os.listdir(vols) if os.path.isdir(vols) else ():
            link = os.path.join(vols, entry)
            if os.path.islink(link) and os.readlink(link) == vid:
                os.unlink(link)
        if os.path.isdir(src) and not os.path.islink(src):
            os.makedirs(VOLUME_STORE, exist_ok=True)
            dest = os.path.join(VOLUME_STORE, vid)
            if os.path.exists(dest):   # should not happen: keep both
                dest += '.detached-%d' % time.time()
            os.rename(src, dest)

    def _unplug_all_volumes(self, instance):
        vols = os.path.join(self._dir(instance), 'volumes')
        for entry in os.listdir(vols) if os.path.isdir(vols) else ():
            if not os.path.islink(os.path.join(vols, entry)):
                self._unplug_volume(instance, entry)

    # ------------------------------------------------------------ the driver API
    def spawn(self, context, instance, image_meta, injected_files, admin_password,
              allocations, network_info=None, block_device_info=None, power_on=True,
              accel_info=None):
        super().spawn(context, instance, image_meta, injected_files, admin_password,
                      allocations, network_info, block_device_info, power_on, accel_info)
        if not is_machine_image(instance):
            return
        if self._exists(instance):
            # the same machine seen from another nova-compute of this host: the
            # destination of a resize or migration (FakeDriver.finish_migration)
            if power_on:
                machine('boot', machine_name(instance), '--wait', 'started')
            return
        try:
            self._create_machine(context, instance, network_info, block_device_info, power_on)
        except Exception as e:
            with excutils.save_and_reraise_exception():
                LOG.error('lab driver: machine for %s failed: %s', instance.uuid,
                          getattr(e, 'stderr', '') or e)
                try:
                    self._delete_machine(context, instance)
                except Exception:
                    LOG.exception('lab driver: clean-up after the failed spawn')

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True):
        super().destroy(context, instance, network_info, block_device_info, destroy_disks,
                        destroy_secrets)
        if instance.task_state in RESIZING:
            # a resize or migration cleaning up its other end: the machine is the one
            # the server keeps (all "hypervisors" of the lab are this host)
            return
        if self._exists(instance) or os.path.isdir(self._dir(instance)):
            self._delete_machine(context, instance)

    def get_info(self, instance, use_cache=True):
        if not self._exists(instance):
            return super().get_info(instance, use_cache)
        if not self._running(instance):
            return hardware.InstanceInfo(state=power_state.SHUTDOWN)
        if self._frozen(instance):
            return hardware.InstanceInfo(state=power_state.PAUSED)
        return hardware.InstanceInfo(state=power_state.RUNNING)

    def power_off(self, instance, timeout=0, retry_interval=0):
        if not self._exists(instance):
            return super().power_off(instance, timeout, retry_interval)
        if instance.uuid in self.instances:
            self.instances[instance.uuid].state = power_state.SHUTDOWN
        self._freeze(instance, False)
        if timeout:
            machine('stop', machine_name(instance), '--timeout', str(min(int(timeout), 120)))
        else:
            machine('kill', machine_name(instance))

    def power_on(self, context, instance, network_info, block_device_info=None, accel_info=None):
        if not self._exists(instance):
            return super().power_on(context, instance, network_info, block_device_info, accel_info)
        if instance.uuid not in self.instances:   # e.g. after a restart of nova-compute
            self.instances[instance.uuid] = fake.FakeInstance(instance.name, power_state.RUNNING,
                                                              instance.uuid)
        self.instances[instance.uuid].state = power_state.RUNNING
        self._freeze(instance, False)
        machine('boot', machine_name(instance), '--wait', 'started')

    def reboot(self, context, instance, network_info, reboot_type, block_device_info=None,
               bad_volumes_callback=None, accel_info=None):
        if not self._exists(instance):
            return super().reboot(context, instance, network_info, reboot_type,
                                  block_device_info, bad_volumes_callback, accel_info)
        name = machine_name(instance)
        self._freeze(instance, False)
        if reboot_type.lower() == 'soft' and self._running(instance):
            machine('reboot', name, '--wait', 'started', '--timeout', '120')
        else:
            machine('kill', name)
            machine('boot', name, '--wait', 'started')
        if instance.uuid in self.instances:
            self.instances[instance.uuid].state = power_state.RUNNING

    def pause(self, instance):
        if self._exists(instance):
            if not self._freeze(instance, True):
                raise exception.InstanceFaultRollback(
                    inner_exception=Exception('the machine did not freeze'))
        return super().pause(instance)

    def unpause(self, instance):
        if self._exists(instance):
            self._freeze(instance, False)
        return super().unpause(instance)

    def get_console_output(self, context, instance):
        if not (self._exists(instance) or os.path.isdir(self._dir(instance))):
            return super().get_console_output(context, instance)
        path = os.path.join(self._dir(instance), 'console.log')
        try:
            with open(path, 'rb') as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - CONSOLE_MAX))
                return f.read()
        except OSError:
            return b''

    def snapshot(self, context, instance, image_id, update_task_state):
        if not self._exists(instance):
            return super().snapshot(context, instance, image_id, update_task_state)
        d = self._dir(instance)
        update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
        t0 = time.time()
        out = os.path.join(MACHINES, '.snapshot-%s.tar.zst' % image_id)
        # the root as the machine sees it (the overlay), plus containerd's data that the
        # kubelet profile keeps off the overlay; without the cloud-init seed (the config
        # drive of a real cloud is not part of the disk either)
        script = ('tar -C "$0" --numeric-owner --xattrs --xattrs-include="*" --one-file-system '
                  '--exclude=./var/lib/cloud/seed --exclude=./var/lib/containerd -cpf - . '
                  '-C "$1" --transform="s,^containerd,var/lib/containerd," containerd '
                  '| zstd -q -T0 -3 -o "$2"')
        frozen = self._running(instance) and self._freeze(instance, True)
        try:
            run('sh', '-c', 'rm -f "$2"; mkdir -p "$1/containerd"; ' + script,
                os.path.join(d, 'root'), d, out)
        finally:
            if frozen:
                self._freeze(instance, False)
        t1 = time.time()
        try:
            update_task_state(task_state=task_states.IMAGE_UPLOADING,
                              expected_state=task_states.IMAGE_PENDING_UPLOAD)
            metadata = {'disk_format': 'raw', 'container_format': 'bare',
                        'properties': {'image_location': 'snapshot', 'image_state': 'available',
                                       'owner_id': instance.project_id, 'lab_machine': 'true',
                                       'lab_rootfs': 'tar.zst'}}
            with open(out, 'rb') as f:
                glance.API().update(context, image_id, metadata, f, purge_props=False)
        finally:
            if os.path.exists(out):
                os.unlink(out)
        LOG.info('lab driver: snapshot of %s: archived in %.1f s (%s), uploaded in %.1f s',
                 machine_name(instance), t1 - t0, 'frozen' if frozen else 'not frozen', time.time() - t1)

    def attach_volume(self, context, connection_info, instance, mountpoint, disk_bus=None,
                      device_type=None, encryption=None):
        super().attach_volume(context, connection_info, instance, mountpoint, disk_bus,
                              device_type, encryption)
        if self._exists(instance):
            self._plug_volume(instance, connection_info, mountpoint)

    def detach_volume(self, context, connection_info, instance, mountpoint, encryption=None):
        super().detach_volume(context, connection_info, instance, mountpoint, encryption)
        vid, _ = self._volume_store_path(connection_info)
        if vid and self._exists(instance):
            self._unplug_volume(instance, vid)

    # resize / cold migration: the machine stays where it is (one host); it is powered
    # off and on around the flavor change like a real server
    def migrate_disk_and_power_off(self, context, instance, dest, flavor, network_info,
                                   block_device_info=None, timeout=0, retry_interval=0):
        if self._exists(instance) and self._running(instance):
            machine('stop', machine_name(instance), '--timeout', str(min(int(timeout or 30), 120)))
        return super().migrate_disk_and_power_off(context, instance, dest, flavor, network_info,
                                                  block_device_info, timeout, retry_interval)

    def confirm_migration(self, context, migration, instance, network_info):
        if not self._exists(instance):
            return super().confirm_migration(context, migration, instance, network_info)
        # FakeDriver destroys the source's copy; here both ends are the same machine
        if migration.source_compute != migration.dest_compute:
            fake.FakeDriver.destroy(self, context, instance, network_info)

    def finish_revert_migration(self, context, instance, network_info, migration,
                                block_device_info=None, power_on=True):
        super().finish_revert_migration(context, instance, network_info, migration,
                                        block_device_info, power_on)
        if self._exists(instance) and power_on:
            machine('boot', machine_name(instance), '--wait', 'started')
