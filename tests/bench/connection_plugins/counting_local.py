# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The local connection, counting what an SSH connection would carry: one line per command run
on the station (and per file put there) in $BENCH_COMMAND_LOG. The benchmark stands a station
on this machine in for a remote one and counts what the run sends it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = '''
name: counting_local
short_description: The local connection, counting commands and file transfers
description: Runs like ansible.builtin.local; appends one line per command and per file put to $BENCH_COMMAND_LOG.
author: Azaion engineering (@azaion)
extends_documentation_fragment:
  - connection_pipelining
'''

import os

from ansible.plugins.connection.local import Connection as LocalConnection


def _count(kind, host):
    path = os.environ.get('BENCH_COMMAND_LOG')
    if path:
        with open(path, 'a') as log:
            log.write('%s %s\n' % (kind, host))


class Connection(LocalConnection):
    transport = 'counting_local'

    def exec_command(self, cmd, in_data=None, sudoable=True):
        _count('command', self._play_context.remote_addr)
        return super(Connection, self).exec_command(cmd, in_data=in_data, sudoable=sudoable)

    def put_file(self, in_path, out_path):
        _count('put', self._play_context.remote_addr)
        return super(Connection, self).put_file(in_path, out_path)
