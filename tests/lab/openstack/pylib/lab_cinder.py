"""Cinder volume driver "lab_cinder.LabVolumeDriver" for the provisioner test lab.

Cinder's FakeLoggingVolumeDriver (the API, scheduler, volume manager and DB are real,
no block device exists), plus: each volume is a directory,
$OSLAB_STATE/cinder/lab-volumes/VOLUME_ID, made on create and removed on delete, and
the connection info handed to Nova names it (driver_volume_type "lab_directory").
The lab's compute driver (nova_virt_lab.py) moves that directory into a machine while
the volume is attached (/mnt/volumes/VOLUME_ID there) and back on detach, so what a
machine writes to a volume survives detach, re-attach elsewhere and server replacement.

Not emulated: sizes (nothing limits what is written), snapshots, clones and volumes
made from images (they start empty; boot from volume boots the image's root
filesystem anyway), encryption, multi-attach, block devices.
"""
import os
import shutil

from cinder.tests.fake_driver import FakeLoggingVolumeDriver

STORE = os.path.join(os.environ.get('OSLAB_STATE', '/var/tmp/provisioner-lab/openstack'),
                     'cinder', 'lab-volumes')


def path_of(volume):
    return os.path.join(STORE, volume['id'])


class LabVolumeDriver(FakeLoggingVolumeDriver):
    """A directory per volume."""

    def create_volume(self, volume):
        update = super().create_volume(volume)
        os.makedirs(path_of(volume), exist_ok=True)
        return update

    def create_cloned_volume(self, volume, src_vol):
        os.makedirs(path_of(volume), exist_ok=True)

    def create_volume_from_snapshot(self, volume, snapshot):
        os.makedirs(path_of(volume), exist_ok=True)

    def copy_image_to_volume(self, context, volume, image_service, image_id, disable_sparse=False):
        # a volume made from an image (boot from volume) starts empty: the lab's compute
        # driver boots the image's root filesystem itself (LVM's qemu-img copy would fail)
        os.makedirs(path_of(volume), exist_ok=True)

    def delete_volume(self, volume):
        shutil.rmtree(path_of(volume), ignore_errors=True)

    def initialize_connection(self, volume, connector):
        info = super().initialize_connection(volume, connector)
        info['driver_volume_type'] = 'lab_directory'
        info['data'].update({'path': path_of(volume), 'volume_id': volume['id']})
        return info
