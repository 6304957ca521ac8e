# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Controller side of azaion.jetson.l4t_station_check: the station checks that it reaches the
admin API with the same TLS client certificate, key and CA as the identity phase, which may be
files on the controller (see plugin_utils/_controller_secrets.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.azaion.jetson.plugins.plugin_utils._controller_secrets import TLS_CONTENT_SOURCES, ControllerSecretsAction


class ActionModule(ControllerSecretsAction):
    MODULE = 'azaion.jetson.l4t_station_check'
    SOURCES = TLS_CONTENT_SOURCES
