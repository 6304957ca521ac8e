# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Controller side of azaion.jetson.station_identity: the admin API URL and token come from
``azaion_admin_api_url`` / ``azaion_admin_api_token`` or the controller's
``AZAION_ADMIN_API_URL`` / ``AZAION_ADMIN_API_TOKEN`` (or the files their ``_file`` forms name), and
so may the TLS client certificate, key and CA, never from the task's arguments
(see plugin_utils/_controller_secrets.py for why)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.azaion.jetson.plugins.plugin_utils._controller_secrets import ADMIN_API_SOURCES, ControllerSecretsAction


class ActionModule(ControllerSecretsAction):
    MODULE = 'azaion.jetson.station_identity'
    WORK = 'identity'
    SOURCES = ADMIN_API_SOURCES
