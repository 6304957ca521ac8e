# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The options of the verify phase (VERIFY_OPTIONS in plugins/module_utils/_loader.py), for
    # azaion.jetson.loader_check (one device) and azaion.jetson.station_verify (a station's).
    DOCUMENTATION = r'''
options:
  health_timeout:
    description:
      - How many seconds to wait for a Loader's C(/health) to become healthy after its device
        was powered on. At least one request is always made; the last one may add up to
        O(request_timeout).
    type: int
    default: 600
  health_interval:
    description:
      - Seconds between two C(/health) requests while a Loader is not healthy yet.
    type: float
    default: 5
  request_timeout:
    description:
      - Seconds to wait for one answer from a Loader.
    type: float
    default: 10
  expected_status:
    description:
      - The C(status) field that C(POST /login) must return for the check to pass; the reference
        Loader answers C({"status":"ok"}).
    type: str
    default: ok
  validate_certs:
    description:
      - Verify the Loaders' TLS certificates for C(https://) URLs. V(false) is for labs only.
    type: bool
    default: true
  ca_path:
    description:
      - CA bundle (PEM) that signed the Loaders' certificates, instead of the system trust store.
    type: path
'''
