# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""The smoke check of a flashed device's Loader (docs/provisioning-flow.md, step 7):
``GET /health`` until healthy, then ``POST /login`` with the credentials of the device.conf it
was flashed with."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import threading
import time

from http.client import HTTPException
from ssl import SSLError
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

from ansible.module_utils.urls import Request, SSLValidationError, make_context

from ansible_collections.azaion.jetson.plugins.module_utils._admin_api import (
    MAX_BODY,
    classify_exception,
    display_url,
    normalize_api_url,
    scrub,
    snippet,
)
from ansible_collections.azaion.jetson.plugins.module_utils._device_conf import (
    DeviceConfError,
    read_credentials,
)

USER_AGENT = 'azaion.jetson loader_check (ansible module)'
# One TLS context per trust setting for all the devices of a station run: loading the trust
# store costs more than a Loader's answer.
_TLS_CONTEXTS = {}
_TLS_CONTEXTS_LOCK = threading.Lock()
HEALTHY_STATUSES = ('healthy', 'ok')
# HTTP answers to /health that a booting device (or a proxy in front of it) gives: keep polling.
WAIT_STATUSES = (408, 429)
LOGIN_DENIED_HINT = ('the Loader rejected the device\'s credentials: device.conf and the admin account differ '
                     '- re-run the identity phase with identity_force_sync=true and re-flash')


# The verify phase's options, the same for every device of a station (documented once, in the
# azaion.jetson.verify doc fragment); each device gives its Loader's URL and its device.conf.
VERIFY_OPTIONS = dict(
    health_timeout=dict(type='int', default=600),
    health_interval=dict(type='float', default=5),
    request_timeout=dict(type='float', default=10),
    expected_status=dict(type='str', default='ok'),
    validate_certs=dict(type='bool', default=True),
    ca_path=dict(type='path'),
)
# The keys of a device context that the verify phase reads.
VERIFY_DEVICE_KEYS = ('name', 'loader_url', 'device_conf', 'state_file')


def run(shared, device):
    """The verify phase's core for one device: check its Loader (``device['loader_url']``) with
    the credentials of ``device['device_conf']``. ``shared``: the VERIFY_OPTIONS, and
    ``check_mode``. Returns the result: ``msg`` (naming no secret), ``email``, ``health``,
    ``login``, ``failed`` when the check failed, ``warnings``, and ``no_log_values``, the secrets
    the check met, for the caller to mask and never to show."""
    check = LoaderCheck(shared, device['loader_url'], device['device_conf'])
    try:
        check.run()
    except CheckEnded:
        pass
    return dict(check.result, warnings=check.warnings, no_log_values=sorted(check.secrets))


def tls_context(ca_path, validate_certs):
    """The TLS context for Loaders checked with ``ca_path`` and ``validate_certs`` (made once)."""
    with _TLS_CONTEXTS_LOCK:
        key = (ca_path, bool(validate_certs))
        if key not in _TLS_CONTEXTS:
            _TLS_CONTEXTS[key] = make_context(cafile=ca_path, validate_certs=validate_certs)
        return _TLS_CONTEXTS[key]


class Answer(object):
    """One HTTP answer: ``status_code``, raw ``text`` (never echo it unscrubbed), ``data`` (JSON or None)."""

    def __init__(self, status_code, text):
        self.status_code = status_code
        self.text = text
        self.is_json = False
        self.data = None
        try:
            self.data = json.loads(text)
            self.is_json = True
        except ValueError:
            pass

    @property
    def status(self):
        """The ``status`` field of a JSON object answer, as text, else None."""
        if isinstance(self.data, dict) and self.data.get('status') is not None:
            value = self.data['status']
            return value if isinstance(value, str) else json.dumps(value)
        return None


class NoAnswer(Exception):
    """No HTTP answer came: ``kind`` (as classify_exception), ``text`` (why, for a person), ``retriable``."""

    def __init__(self, kind, text, retriable):
        super(NoAnswer, self).__init__(text)
        self.kind = kind
        self.text = text
        self.retriable = retriable


def health_is_ok(answer):
    """HTTP 200, and when the answer is JSON its ``status`` is healthy or ok."""
    if answer.status_code != 200:
        return False
    if not answer.is_json:
        return True
    status = answer.status
    return status is not None and status.strip().lower() in HEALTHY_STATUSES


def describe_no_answer(exc, url, timeout):
    """``(kind, text, retriable)`` for a transport error, worded for the Loader.

    The classification (kind, retriable) is the admin API client's; only the words differ.
    """
    kind, dummy, retriable = classify_exception(exc, url, timeout)
    reason = exc.reason if isinstance(exc, URLError) and not isinstance(exc, HTTPError) else exc
    detail = (getattr(reason, 'verify_message', None) or getattr(reason, 'strerror', None)
              or str(reason) or type(reason).__name__)
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition('@')[2]
    if kind == 'refused':
        text = 'connection refused by %s (nothing listens there: the device is not up yet, the Loader is not running, ' \
               'or url has the wrong host or port)' % netloc
    elif kind == 'timeout':
        text = 'no answer within %s s (device off, unreachable, or slow: check the network, raise request_timeout)' \
               % _number(timeout)
    elif kind == 'dns':
        text = 'the host name %s does not resolve (%s): check url and the DNS of this station' % (parts.hostname, detail)
    elif kind == 'tls' and not retriable:
        text = ('TLS with the Loader failed (%s): give ca_path (the CA bundle that signed the Loader\'s certificate) '
                'or fix its certificate; validate_certs=false is for labs only' % detail)
    elif kind == 'tls':
        text = 'the TLS connection was closed (%s): check that url uses the scheme the Loader serves' % detail
    else:
        text = 'the connection failed before a complete answer (%s)' % detail
    # Name resolution succeeds once the booted device registers itself; a booting device also
    # resets connections. Only a certificate problem will not go away by waiting.
    return kind, text, kind != 'tls' or retriable


def _number(value):
    return ('%g' % value) if isinstance(value, float) else str(value)


def _requests(count):
    return '%d request%s' % (count, '' if count == 1 else 's')


class CheckEnded(Exception):
    """The check has its result (in LoaderCheck.result)."""


class LoaderCheck(object):
    """One check of one device's Loader (see :func:`run`); :meth:`run` ends by raising
    :class:`CheckEnded` with ``result`` complete, failed or not."""

    def __init__(self, shared, url, device_conf):
        self.params = shared
        self.check_mode = bool(shared.get('check_mode'))
        self.device_conf = device_conf
        self.secrets = set()
        self.warnings = []
        self.result = {'changed': False, 'email': None, 'health': None, 'msg': ''}
        self.url = normalize_api_url(url or '')
        self.shown_url = display_url(self.url)
        self._request = None

    # -- plumbing -----------------------------------------------------------------------------

    def scrub(self, text):
        return scrub(text, self.secrets)

    def said(self, answer):
        """What the Loader said in ``answer`` besides its status, short and scrubbed ('' if nothing)."""
        if not answer.is_json:
            return snippet(answer.text, self.secrets)
        if isinstance(answer.data, dict):
            for key in ('reason', 'message', 'detail', 'error', 'title'):
                value = answer.data.get(key)
                if isinstance(value, str) and value:
                    return snippet(value, self.secrets)
        return ''

    def fail(self, msg):
        self.result.update(failed=True, msg=self.scrub(msg))
        raise CheckEnded()

    def done(self, msg):
        self.result['msg'] = self.scrub(msg)
        raise CheckEnded()

    def check_params(self):
        params = self.params
        parts = urlsplit(self.url)
        if parts.scheme not in ('http', 'https') or not parts.netloc:
            self.fail('url must be an http:// or https:// URL such as http://10.20.0.42:8080, got %r (the verify role '
                      'takes it from jetson_loader_url)' % self.shown_url)
        if params['health_timeout'] < 0:
            self.fail('health_timeout must be 0 or more seconds')
        if params['health_interval'] <= 0:
            self.fail('health_interval must be a positive number of seconds')
        if params['request_timeout'] <= 0:
            self.fail('request_timeout must be a positive number of seconds')
        if not params['expected_status']:
            self.fail('expected_status must not be empty')

    def connect(self):
        params = self.params
        try:
            context = tls_context(params['ca_path'], params['validate_certs'])
        except (OSError, ValueError) as exc:
            self.fail('cannot load the CA bundle ca_path=%s: %s; check that the file exists and is PEM'
                      % (params['ca_path'], getattr(exc, 'strerror', None) or exc))
        self._request = Request(headers={'Accept': 'application/json'}, validate_certs=params['validate_certs'],
                                http_agent=USER_AGENT, follow_redirects='none', use_netrc=False,
                                context=context)

    def call(self, method, path, body=None, timeout=None):
        """One request; return an Answer for any HTTP status, raise NoAnswer when none came."""
        timeout = timeout or self.params['request_timeout']
        data = None
        headers = {}
        if body is not None:
            data = json.dumps(body).encode('utf-8')
            headers['Content-Type'] = 'application/json'
        try:
            try:
                response = self._request.open(method, self.url + path, data=data, headers=headers, timeout=timeout)
            except HTTPError as exc:
                response = exc
            status = response.getcode()
            raw = response.read(MAX_BODY) if hasattr(response, 'read') else b''
        except (URLError, SSLValidationError, HTTPException, OSError, SSLError, ValueError) as exc:
            if isinstance(exc, ValueError) and not isinstance(exc, SSLError):
                self.fail('invalid request to %s: %s; check url' % (self.shown_url, exc))
            kind, text, retriable = describe_no_answer(exc, self.url, timeout)
            raise NoAnswer(kind, self.scrub(text), retriable)
        if isinstance(raw, bytes):
            raw = raw.decode('utf-8', 'replace')
        return Answer(status, raw or '')

    # -- the flow -------------------------------------------------------------------------------

    def run(self):
        self.check_params()
        device_conf = self.device_conf
        password = None
        if self.check_mode and not os.path.lexists(device_conf):
            self.warnings.append('%s does not exist (yet): check mode cannot tell which account the Loader would log '
                                 'in with' % device_conf)
        else:
            try:
                email, password = read_credentials(device_conf)
            except DeviceConfError as exc:
                self.fail('%s (the device.conf the device was flashed with)' % exc)
            self.secrets.add(password)
            self.result['email'] = email
        self.connect()

        if self.check_mode:
            self.predict(device_conf)
        self.wait_healthy()
        self.login(self.result['email'], password, device_conf)

    def describe(self, answer):
        text = 'HTTP %d' % answer.status_code
        if answer.status is not None:
            text += ', status "%s"' % snippet(answer.status, self.secrets, 60)
        elif not answer.is_json and answer.text.strip():
            text += ', not JSON'
            return text + ': "%s"' % self.said(answer)
        said = self.said(answer)
        if said:
            text += ': "%s"' % said
        return text

    def predict(self, device_conf):
        health = {'status_code': None, 'status': None, 'seconds_waited': 0.0, 'attempts': 1}
        try:
            answer = self.call('GET', '/health')
        except NoAnswer as exc:
            now = 'no answer to GET /health yet, %s' % exc.text
        else:
            health.update(status_code=answer.status_code, status=answer.status)
            verdict = 'healthy' if health_is_ok(answer) else 'not healthy yet'
            now = 'GET /health answers %s (%s)' % (self.describe(answer), verdict)
        self.result['health'] = health
        who = self.result['email'] or 'the e-mail in %s' % device_conf
        self.done('check mode: %s; would wait up to %d s for the Loader at %s to be healthy, then POST /login as %s '
                  'with the password from %s and expect status "%s" (no login is sent in check mode)'
                  % (now, self.params['health_timeout'], self.shown_url, who, device_conf,
                     self.params['expected_status']))

    def wait_healthy(self):
        params = self.params
        started = time.monotonic()
        deadline = started + params['health_timeout']
        health = {'status_code': None, 'status': None, 'seconds_waited': 0.0, 'attempts': 0}
        self.result['health'] = health
        last = 'nothing'
        while True:
            remaining = deadline - time.monotonic()
            timeout = min(params['request_timeout'], max(remaining, 1.0))
            health['attempts'] += 1
            try:
                answer = self.call('GET', '/health', timeout=timeout)
            except NoAnswer as exc:
                health.update(status_code=None, status=None)
                last = 'error: %s' % exc.text
                if not exc.retriable:
                    health['seconds_waited'] = round(time.monotonic() - started, 1)
                    self.fail('GET %s/health failed: %s' % (self.shown_url, exc.text))
            else:
                health.update(status_code=answer.status_code, status=answer.status)
                last = 'answer: %s' % self.describe(answer)
                if health_is_ok(answer):
                    health['seconds_waited'] = round(time.monotonic() - started, 1)
                    return
                code = answer.status_code
                if code != 200 and code < 500 and code not in WAIT_STATUSES:
                    health['seconds_waited'] = round(time.monotonic() - started, 1)
                    self.fail('GET %s/health answered %s: that is not the Loader\'s health endpoint; check url (the '
                              'Loader\'s base URL, without /health; redirects are not followed)'
                              % (self.shown_url, self.describe(answer)))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(params['health_interval'], remaining))
        health['seconds_waited'] = round(time.monotonic() - started, 1)
        self.fail('the Loader at %s did not become healthy within %d s (%s to GET /health); last %s. Check '
                  'that the device is powered on and booted from the flashed image, that the Loader service runs on '
                  'it, and that url reaches it from this station; raise health_timeout for a slower first boot'
                  % (self.shown_url, params['health_timeout'], _requests(health['attempts']), last))

    def login(self, email, password, device_conf):
        expected = self.params['expected_status']
        where = 'POST %s/login' % self.shown_url
        self.result['login'] = login = {'status_code': None, 'status': None}
        try:
            answer = self.call('POST', '/login', body={'email': email, 'password': password})
        except NoAnswer as exc:
            self.fail('%s failed after /health was healthy: %s; the Loader may have restarted, run the check again'
                      % (where, exc.text))
        login.update(status_code=answer.status_code, status=answer.status)
        code = answer.status_code
        said = self.said(answer)
        said = (' (the Loader said "%s")' % said) if said else ''
        if code in (401, 403):
            self.fail('%s as %s answered HTTP %d: %s%s' % (where, email, code, LOGIN_DENIED_HINT, said))
        if code == 502:
            self.fail('%s answered HTTP 502: the Loader cannot reach the resource API it forwards the login to%s; '
                      'check the device\'s network route to the resource API and the Loader\'s API URL setting, '
                      'then run the check again' % (where, said))
        if code != 200:
            hint = {400: 'the Loader did not accept the request body {"email", "password"}',
                    404: 'the Loader has no /login there; check url',
                    405: 'the Loader has no POST /login there; check url'}.get(code)
            if hint is None and 300 <= code < 400:
                hint = 'redirects are not followed (the password must not travel elsewhere); set url to the final URL'
            if hint is None and code >= 500:
                hint = 'the Loader failed on its side; check its log on the device (and device.conf there)'
            self.fail('%s answered HTTP %d%s: %s' % (where, code, said, hint or 'unexpected answer'))
        if not answer.is_json:
            self.fail('%s answered HTTP 200 but not JSON ("%s"): check that url points at the Loader itself, not a '
                      'proxy or a login page' % (where, snippet(answer.text, self.secrets)))
        if answer.status != expected:
            self.fail('%s answered HTTP 200 with status %s, expected "%s"%s: check expected_status against the '
                      'Loader\'s version' % (where, json.dumps(answer.status), expected, said))
        health = self.result['health']
        self.done('the Loader at %s is healthy (after %s s, %s to /health) and logged in as %s with the password '
                  'from %s (status "%s")'
                  % (self.shown_url, health['seconds_waited'], _requests(health['attempts']), email, device_conf,
                     answer.status))
