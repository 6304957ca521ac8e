# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.azaion.jetson.plugins.plugin_utils._context import (
    device_contexts,
    device_outcome,
    device_outcomes,
    run_phases,
    station_leaders,
    station_work,
)


def device_contexts_filter(hosts, hostvars, email_prefix=None, email_domain=None, api_url=None, phases=None,
                           report_dir=''):
    if not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError('device_contexts expects a list of inventory host names')
    return device_contexts(list(hosts), hostvars, email_prefix, email_domain, api_url,
                           None if phases is None else list(phases), report_dir)


def device_outcomes_filter(phase_results, names, finished=(), station_error=None):
    if not isinstance(phase_results, dict):
        raise AnsibleFilterError('device_outcomes expects a dict of phase name -> the result of its station run')
    return device_outcomes(phase_results, list(names), list(finished or ()), station_error)


def station_work_filter(contexts, host):
    return station_work(contexts, host)


def station_leaders_filter(contexts, host=None):
    return station_leaders(contexts, host)


def device_outcome_filter(phase_results, name, finished=False, station_error=None):
    if not isinstance(phase_results, dict):
        raise AnsibleFilterError('device_outcome expects a dict of phase name -> the result of its station run')
    return device_outcome(phase_results, name, finished, station_error)


def run_phases_filter(run_tags, skip_tags=()):
    return run_phases(list(run_tags or ()), list(skip_tags or ()))


class FilterModule(object):
    """azaion.jetson.device_contexts, station_leaders, station_work, device_outcome, device_outcomes and run_phases"""

    def filters(self):
        return {
            'device_contexts': device_contexts_filter,
            'station_leaders': station_leaders_filter,
            'device_outcome': device_outcome_filter,
            'device_outcomes': device_outcomes_filter,
            'station_work': station_work_filter,
            'run_phases': run_phases_filter,
        }
