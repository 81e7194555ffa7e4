#!/usr/bin/python3
"""Nova's database set-up in one Python process (each nova-manage start-up costs
3-10 s on a busy machine). Same as, in this order:

  nova-manage api_db sync
  nova-manage cell_v2 map_cell0 --database_connection CELL0_URL
  nova-manage cell_v2 create_cell --name cell1      (unless it exists)
  nova-manage db sync                               (cell0 and cell1)

by calling nova-manage's own command methods after the set-up its main() does.
usage: db_nova.py NOVA_CONF CELL0_URL
"""
import sys

from nova import config, context, objects
from nova.cmd import manage
from oslo_log import log as logging


def step(what, rc):
    if rc not in (None, 0):
        sys.exit('nova-manage %s failed (exit status %s)' % (what, rc))
    print('nova-manage %s: ok' % what, flush=True)


def main():
    conf, cell0_url = sys.argv[1:3]
    config.parse_args(['nova-manage', '--config-file', conf])
    logging.setup(manage.CONF, 'nova')
    objects.register_all()
    step('api_db sync', manage.ApiDbCommands().sync())
    cells = manage.CellV2Commands()
    step('cell_v2 map_cell0', cells.map_cell0(database_connection=cell0_url))
    existing = {c.name for c in objects.CellMappingList.get_all(context.get_admin_context())}
    if 'cell1' not in existing:
        step('cell_v2 create_cell --name cell1', cells.create_cell(name='cell1'))
    step('db sync', manage.DbCommands().sync())


if __name__ == '__main__':
    main()
