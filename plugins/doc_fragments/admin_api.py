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
      - If not set, the controller takes it from the inventory variable C(azaion_admin_api_token),
        else from the file that C(azaion_admin_api_token_file) names, else from its environment
        variable E(AZAION_ADMIN_API_TOKEN), else from the file that its environment variable
        E(AZAION_ADMIN_API_TOKEN_FILE) names (the way an AWX credential gives it, so that the
        token is not in the job's environment); else the module takes E(AZAION_ADMIN_API_TOKEN)
        of the host it runs on.
      - Better left unset in playbooks. The controller then hands the token to the module
        itself, while a token written as a task argument reaches every callback (loggers, AWX
        job events) with the task's arguments before the module can mask it.
      - Optional because the stock admin API sits on a restricted network without
        authentication (C(docs/provisioning-flow.md), step 4); an admin API that wants a token
        answers HTTP 401 without one.
      - The token never appears in results or error messages.
    type: str
  client_cert:
    description:
      - PEM certificate (chain) presented to the admin API for mutual TLS, a file on the host
        the module runs on.
      - May also hold the private key, in which case O(client_key) is not needed.
      - For a certificate that is a file on the controller, see O(client_cert_content).
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

    # The content of TLS files that live on the controller, carried to the module by its action plugin.
    TLS_CONTENT = r'''
options:
  client_cert_content:
    description:
      - The PEM client certificate for mutual TLS with the admin API, when it is a file on the
        controller (for example an AWX credential's file) rather than on the station.
      - Better left unset in playbooks. The controller takes it from the inventory variable
        C(azaion_admin_api_client_cert), else from the file that C(azaion_admin_api_client_cert_file)
        names, else from its environment variable E(AZAION_ADMIN_API_CLIENT_CERT), else from the
        file that E(AZAION_ADMIN_API_CLIENT_CERT_FILE) names.
      - On the station it exists only in memory, never in a file. Mutually exclusive with O(client_cert).
    type: str
  client_key_content:
    description:
      - The PEM private key of O(client_cert_content), from the inventory variable
        C(azaion_admin_api_client_key), the file that C(azaion_admin_api_client_key_file) names, or
        the controller's E(AZAION_ADMIN_API_CLIENT_KEY) or E(AZAION_ADMIN_API_CLIENT_KEY_FILE), in that order.
      - On the station it exists only in memory, never in a file, and it never appears in results.
        Mutually exclusive with O(client_key).
    type: str
  ca_content:
    description:
      - The PEM CA bundle of the admin API, when it is a file on the controller, from the inventory
        variable C(azaion_admin_api_ca), the file that C(azaion_admin_api_ca_file) names, or the
        controller's E(AZAION_ADMIN_API_CA) or E(AZAION_ADMIN_API_CA_FILE), in that order.
      - Mutually exclusive with O(ca_path).
    type: str
'''
