# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Controller side of azaion.jetson.station_identity: the admin API URL and token come from
``azaion_admin_api_url`` / ``azaion_admin_api_token`` or the controller's
``AZAION_ADMIN_API_URL`` / ``AZAION_ADMIN_API_TOKEN``, never from the task's arguments
(see plugin_utils/_controller_secrets.py for why)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.azaion.jetson.plugins.plugin_utils._controller_secrets import ControllerSecretsAction


class ActionModule(ControllerSecretsAction):
    MODULE = 'azaion.jetson.station_identity'
    SOURCES = {
        'api_url': ('azaion_admin_api_url', 'AZAION_ADMIN_API_URL'),
        'api_token': ('azaion_admin_api_token', 'AZAION_ADMIN_API_TOKEN'),
    }
