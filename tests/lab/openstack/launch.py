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
"""
import importlib
import sys


def target(spec):
    module, func = spec.split(':')
    return getattr(importlib.import_module(module), func)


def main():
    mode, name = sys.argv[1:3]
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
