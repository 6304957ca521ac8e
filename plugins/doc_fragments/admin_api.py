# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The connection options of every module that talks to the Azaion admin API.
    DOCUMENTATION = r'''
options:
  api_url:
    description:
      - Base URL of the admin API, for example V(https://admin.internal.example.com).
      - The module appends the endpoint paths (V(/users), V(/users/password)) to it; a trailing
        slash is removed.
      - If not set, the inventory variable C(azaion_admin_api_url) is used, else the environment
        variable E(AZAION_ADMIN_API_URL) of the controller, else that of the host the module
        runs on.
    type: str
    required: true
  api_token:
    description:
      - Bearer token, sent in the C(Authorization) header as C(Bearer <token>) with every
        request; for example the token of an C(ApiAdmin) account.
      - If not set, the inventory variable C(azaion_admin_api_token) is used, else the
        environment variable E(AZAION_ADMIN_API_TOKEN) of the controller, else that of the host
        the module runs on.
      - Better left unset in playbooks. The controller then hands the token to the module
        itself, while a token written as a task argument reaches every callback (loggers, AWX
        job events) with the task's arguments before the module can mask it.
      - Optional because the runbook's stock admin API sits on a restricted network without
        authentication; an admin API that wants a token answers HTTP 401 without one.
      - The token never appears in results or error messages.
    type: str
  client_cert:
    description:
      - PEM certificate (chain) presented to the admin API for mutual TLS.
      - May also hold the private key, in which case O(client_key) is not needed.
    type: path
  client_key:
    description:
      - PEM private key of O(client_cert), for mutual TLS. Requires O(client_cert).
    type: path
  ca_path:
    description:
      - PEM bundle of the certificate authorities that may sign the admin API's certificate.
      - When set, only these authorities are trusted; otherwise the system trust store is used.
    type: path
  validate_certs:
    description:
      - Whether the admin API's TLS certificate is verified.
      - Set to V(false) only in a lab; give O(ca_path) instead when the admin API uses a
        private certificate authority.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for the admin API to connect and to answer, per attempt.
    type: float
    default: 30
  retries:
    description:
      - How many times a request is repeated after a connection error, a timeout, HTTP 429 or an
        HTTP 5xx answer. Other answers (for example 400, 401, 403, 404) are never retried.
      - V(0) makes a single attempt.
    type: int
    default: 5
  retry_backoff:
    description:
      - Base, in seconds, of the exponential backoff between attempts. Before retry number N the
        module waits a random time between 0 and O(retry_backoff) * 2^(N-1) seconds (full jitter),
        at most 30 seconds.
      - A numeric C(Retry-After) header on HTTP 429 or 503 is honoured instead, also capped at 30 seconds.
    type: float
    default: 1.0
'''
