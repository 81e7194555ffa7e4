#!/usr/bin/python3
"""Run the packaged OpenStack services without their daemon packages.

Debian's python3-nova, -neutron, ... hold the code but not the console scripts
(those come with nova-api, neutron-server, ..., which would also pull in init
scripts, dbconfig and debconf). So the lab calls the entry points itself:

  launch.py run  NAME module:function [ARG...]
      sys.argv = [NAME, ARG...], then call the function (oslo.config parses argv)
  launch.py wsgi NAME HOST:PORT THREADS module:factory
      serve a WSGI application factory with waitress (keystone, placement);
      the factories parse sys.argv too, so it is reset to [NAME] first, and
      their config comes from OS_KEYSTONE_CONFIG_FILES / OS_PLACEMENT_CONFIG_DIR.

LAB_NOVA_VIRT=FILE (nova-compute): the module nova.virt.lab is loaded from FILE, so
that compute_driver = lab.LabDriver finds the lab's driver (Nova imports drivers as
'nova.virt.' + compute_driver and nothing else). A finder on sys.meta_path: nothing
is imported before nova.cmd's eventlet monkey-patching.
"""
import importlib
import importlib.abc
import importlib.util
import os
import sys


def target(spec):
    module, func = spec.split(':')
    return getattr(importlib.import_module(module), func)


class NovaVirtLab(importlib.abc.MetaPathFinder):
    """Finds nova.virt.lab in a file outside the nova package."""

    def __init__(self, path):
        self.path = path

    def find_spec(self, fullname, path=None, target=None):
        if fullname != 'nova.virt.lab':
            return None
        return importlib.util.spec_from_file_location(fullname, self.path)


def main():
    mode, name = sys.argv[1:3]
    if os.environ.get('LAB_NOVA_VIRT'):
        sys.meta_path.insert(0, NovaVirtLab(os.environ['LAB_NOVA_VIRT']))
    if mode == 'run':
        func = sys.argv[3]
        sys.argv = [name] + sys.argv[4:]
        return target(func)()
    if mode == 'wsgi':
        listen, threads, factory = sys.argv[3:6]
        sys.argv = [name]
        import waitress
        app = target(factory)()
        waitress.serve(app, listen=listen, threads=int(threads), ident=name, channel_timeout=300)
        return 0
    sys.exit('usage: launch.py run|wsgi NAME ...')


if __name__ == '__main__':
    sys.exit(main())
