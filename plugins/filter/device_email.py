# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.azaion.jetson.plugins.plugin_utils._identity import (
    DEFAULT_EMAIL_DOMAIN,
    DEFAULT_EMAIL_PREFIX,
    IdentityError,
    device_email,
)


def device_email_filter(serial, prefix=DEFAULT_EMAIL_PREFIX, domain=DEFAULT_EMAIL_DOMAIN):
    try:
        return device_email(serial, prefix, domain)
    except IdentityError as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule(object):
    """azaion.jetson.device_email"""

    def filters(self):
        return {'device_email': device_email_filter}
