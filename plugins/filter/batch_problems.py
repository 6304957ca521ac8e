# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.azaion.jetson.plugins.plugin_utils._context import batch_check
from ansible_collections.azaion.jetson.plugins.plugin_utils._identity import DEFAULT_EMAIL_DOMAIN, DEFAULT_EMAIL_PREFIX


def batch_problems_filter(devices, email_prefix=DEFAULT_EMAIL_PREFIX, email_domain=DEFAULT_EMAIL_DOMAIN):
    if not isinstance(devices, list) or not all(isinstance(device, dict) and 'name' in device for device in devices):
        raise AnsibleFilterError('batch_problems expects a list of dicts, each with at least "name"')
    return batch_check(devices, email_prefix, email_domain)


class FilterModule(object):
    """azaion.jetson.batch_problems"""

    def filters(self):
        return {'batch_problems': batch_problems_filter}
