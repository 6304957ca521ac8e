# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Controller side of azaion.jetson.l4t_station_check: the station checks that it reaches the
admin API with the same TLS client certificate, key and CA as the identity phase, which may be
files on the controller (see plugin_utils/_controller_secrets.py). And, first thing on a remote
station, a warning when its SSH connection has no keep-alive."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible.utils.display import Display

from ansible_collections.azaion.jetson.plugins.plugin_utils._controller_secrets import TLS_CONTENT_SOURCES, ControllerSecretsAction
from ansible_collections.azaion.jetson.plugins.plugin_utils._station_watch import ANSWER_VARIABLE, is_ssh_connection

display = Display()

# An SSH option that makes the client notice a peer that went away without closing.
KEEPALIVE = re.compile(r'ServerAliveInterval[\s=]+[1-9]', re.IGNORECASE)
SSH_ARG_OPTIONS = ('ssh_args', 'ssh_common_args', 'ssh_extra_args')


class ActionModule(ControllerSecretsAction):
    MODULE = 'azaion.jetson.l4t_station_check'
    WORK = 'its check'
    SOURCES = TLS_CONTENT_SOURCES

    def run(self, tmp=None, task_vars=None):
        self._warn_without_keepalive()
        return super(ActionModule, self).run(tmp, task_vars)

    def _warn_without_keepalive(self):
        """Ansible's SSH connection waits forever on a station that drops off the network
        without closing the connection (a pulled cable, a sleeping laptop): with a keep-alive,
        the run notices within ServerAliveInterval x ServerAliveCountMax seconds."""
        if not is_ssh_connection(self._connection):
            return
        given = []
        for option in SSH_ARG_OPTIONS:
            try:
                given.append(str(self._connection.get_option(option) or ''))
            except KeyError:
                continue
        if not KEEPALIVE.search(' '.join(given)):
            display.warning('%s: its SSH connection has no keep-alive (no ServerAliveInterval in ansible_ssh_common_args,'
                            ' ssh_args or ssh_extra_args): a station that drops off the network mid-run holds the run'
                            ' until %s runs out (300 s by default); set ansible_ssh_common_args to "-o'
                            ' ServerAliveInterval=15 -o ServerAliveCountMax=4" (unless your ssh_config sets a keep-alive,'
                            ' which Ansible cannot see)' % (self._play_context.remote_addr, ANSWER_VARIABLE))
