# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.azaion.jetson.plugins.plugin_utils._context import device_contexts, device_outcome, station_leaders
from ansible_collections.azaion.jetson.plugins.plugin_utils._identity import DEFAULT_EMAIL_DOMAIN, DEFAULT_EMAIL_PREFIX


def device_contexts_filter(hosts, hostvars, email_prefix=DEFAULT_EMAIL_PREFIX, email_domain=DEFAULT_EMAIL_DOMAIN,
                           station=None, run_by=None):
    if not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError('device_contexts expects a list of inventory host names')
    return device_contexts(list(hosts), hostvars, email_prefix, email_domain, station, run_by)


def station_leaders_filter(contexts):
    return station_leaders(contexts)


def device_outcome_filter(phase_results, name, finished=False, station_error=None):
    if not isinstance(phase_results, dict):
        raise AnsibleFilterError('device_outcome expects a dict of phase name -> the result of its station run')
    return device_outcome(phase_results, name, finished, station_error)


class FilterModule(object):
    """azaion.jetson.device_contexts, azaion.jetson.station_leaders, azaion.jetson.device_outcome"""

    def filters(self):
        return {
            'device_contexts': device_contexts_filter,
            'station_leaders': station_leaders_filter,
            'device_outcome': device_outcome_filter,
        }
