# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""Connection layer for the Azaion admin API, shared by the collection's modules.

Only ``ansible.module_utils.urls`` is used (no third-party import): modules run on factory
stations that may not have ``requests``.  Every error is an :class:`AdminAPIError` whose
message names the cause and the fix, with any secret (the bearer token, the device password)
scrubbed out of whatever text the server sent back.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import http.client
import json
import os
import random
import re
import socket
import ssl
import threading
import time

from contextlib import contextmanager
from urllib.error import HTTPError, URLError
from urllib.parse import quote, quote_plus, urlencode, urlsplit
from urllib.request import getproxies, proxy_bypass

from ansible.module_utils.basic import env_fallback
from ansible.module_utils.urls import Request, SSLValidationError, make_context

MASK = '********'
BACKOFF_CAP = 30.0
"""Longest wait between two attempts, in seconds, whatever the backoff base or Retry-After."""
MAX_BODY = 1024 * 1024
SNIPPET_LENGTH = 200
USER_AGENT = 'azaion.jetson (ansible module)'

_RETRY_AFTER_PATTERN = re.compile(r'^\s*(\d+(?:\.\d+)?)\s*$')
_UNPRINTABLE = re.compile(r'[\x00-\x1f\x7f]+')


def admin_api_argument_spec():
    """Return the connection options every admin-API module accepts (a fresh dict)."""
    return dict(
        api_url=dict(type='str', required=True, fallback=(env_fallback, ['AZAION_ADMIN_API_URL'])),
        api_token=dict(type='str', no_log=True, fallback=(env_fallback, ['AZAION_ADMIN_API_TOKEN'])),
        client_cert=dict(type='path'),
        client_key=dict(type='path', no_log=False),
        ca_path=dict(type='path'),
        validate_certs=dict(type='bool', default=True),
        timeout=dict(type='float', default=30),
        retries=dict(type='int', default=5),
        retry_backoff=dict(type='float', default=1.0),
        **tls_content_argument_spec()
    )


def tls_content_argument_spec():
    """The options that carry the content of TLS files from the controller (the action plugin
    fills them from controller files): on the station they exist only in memory."""
    return dict(
        client_cert_content=dict(type='str'),
        client_key_content=dict(type='str', no_log=True),
        ca_content=dict(type='str'),
    )


@contextmanager
def in_memory_files(*contents):
    """Paths from which ``contents`` (text, or None) can be read while the block runs, and which
    are never on a disk: anonymous memory files (``memfd_create``), gone with the process even
    when it is killed. None stays None. The TLS library reads a client certificate and its key
    only from paths (and a CA bundle given as text would be added to the system's, where a
    CA file replaces it), and the key must not be left on the station's disk."""
    descriptors, paths = [], []
    try:
        for content in contents:
            if content is None:
                paths.append(None)
                continue
            descriptor = os.memfd_create('azaion-jetson-tls', os.MFD_CLOEXEC)
            descriptors.append(descriptor)
            os.write(descriptor, content.encode('utf-8'))
            paths.append('/proc/self/fd/%d' % descriptor)
        yield paths
    finally:
        for descriptor in descriptors:
            os.close(descriptor)


class AdminAPIError(Exception):
    """A call to the admin API failed; ``str()`` names the cause and the fix, without secrets.

    ``status`` is the HTTP status of the last answer (None when there was none), ``kind`` a
    short machine-readable cause (``http``, ``refused``, ``dns``, ``tls``, ``timeout``,
    ``connection``, ``json``, ``config``, ...), ``attempts`` how many attempts were made.
    """

    def __init__(self, message, status=None, kind='http', attempts=1, retriable=False, server_message=None):
        super(AdminAPIError, self).__init__(message)
        self.message = message
        self.status = status
        self.kind = kind
        self.attempts = attempts
        self.retriable = retriable
        self.server_message = server_message


class AdminAPIResponse(object):
    """One answer: ``status`` (int), raw ``text`` (unscrubbed: never echo it), parsed ``data``."""

    def __init__(self, status, text, data=None, headers=None):
        self.status = status
        self.text = text
        self.data = data
        self.headers = headers or {}


# ---------------------------------------------------------------------------------------------
# Pure helpers (unit-tested on their own)

def scrub(text, secrets):
    """Return ``text`` with every secret (and its JSON- and URL-escaped forms) replaced by MASK."""
    if not text:
        return text
    variants = set()
    for secret in secrets or ():
        if not secret:
            continue
        secret = str(secret)
        variants.add(secret)
        variants.add(json.dumps(secret)[1:-1])
        variants.add(quote(secret, safe=''))
        variants.add(quote_plus(secret))
    for variant in sorted((v for v in variants if v), key=len, reverse=True):
        text = text.replace(variant, MASK)
    return text


def snippet(text, secrets, length=SNIPPET_LENGTH):
    """A short, single-line, printable, secret-free quote of server text.

    Secrets are scrubbed from the WHOLE text before it is shortened, so a secret cut in half
    by the truncation can never leak its first half.
    """
    if text is None:
        return ''
    if isinstance(text, bytes):
        text = text.decode('utf-8', 'replace')
    text = scrub(text, secrets)
    text = _UNPRINTABLE.sub(' ', text)
    text = ' '.join(text.split())
    if len(text) > length:
        text = text[:length] + '...'
    return text


def parse_retry_after(value):
    """Seconds from a numeric ``Retry-After`` header, or None (absent, HTTP-date, garbage)."""
    if value is None:
        return None
    match = _RETRY_AFTER_PATTERN.match(str(value))
    if not match:
        return None
    return float(match.group(1))


def compute_backoff(attempt, base, cap=BACKOFF_CAP, retry_after=None, rand=random.random):
    """Seconds to wait before retry number ``attempt`` (0 for the first retry).

    Exponential backoff with full jitter: a uniform draw in ``[0, min(cap, base * 2**attempt)]``.
    A server's ``Retry-After`` (seconds) wins when given, capped at ``cap`` as well.
    """
    if retry_after is not None:
        return max(0.0, min(float(retry_after), cap))
    if base <= 0:
        return 0.0
    ceiling = min(cap, base * (2 ** min(max(attempt, 0), 32)))
    return rand() * ceiling


def server_message(text):
    """The human message in an error body (``{"message": ...}`` and friends), else the text."""
    if not text:
        return ''
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if isinstance(data, dict):
        for key in ('message', 'detail', 'title', 'error', 'errors'):
            value = data.get(key)
            if isinstance(value, str) and value:
                return value
            if value:
                return json.dumps(value, sort_keys=True)
    return text


def normalize_api_url(url):
    """``api_url`` as the client uses it: surrounding blanks and trailing slashes removed."""
    return (url or '').strip().rstrip('/')


def display_url(url):
    """``url`` without any ``user:password@`` part, fit for a message."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return '<invalid URL>'
    netloc = parts.netloc.rpartition('@')[2]
    return parts._replace(netloc=netloc).geturl()


def http_error_message(status, method, path, url, text, secrets, token_sent):
    """The message for a non-success HTTP answer (the caller decides what is retried)."""
    where = 'HTTP %d from %s %s' % (status, method, path)
    detail = snippet(server_message(text), secrets)
    said = (': the server said "%s"' % detail) if detail else ''
    if status == 401:
        cause = ('no bearer token was sent' if not token_sent
                 else 'the bearer token sent was not accepted (invalid or expired)')
        return ('%s: %s; set azaion_admin_api_token or AZAION_ADMIN_API_TOKEN (option api_token) '
                'to a valid token of an ApiAdmin account%s' % (where, cause, said))
    if status == 403:
        return ('%s: the token was rejected or its account lacks the rights to manage users; '
                'use the token of an ApiAdmin account (azaion_admin_api_token / AZAION_ADMIN_API_TOKEN)%s'
                % (where, said))
    if status == 400:
        return '%s: the admin API rejected the request%s' % (where, said or ' (no message in the answer)')
    if status == 404:
        return ('%s: the admin API at %s has no such endpoint; check api_url (the base URL of the '
                'admin API, without /users)%s' % (where, display_url(url), said))
    if status == 429:
        return '%s: the admin API is rate-limiting this station; try again later or raise retries%s' % (where, said)
    if 300 <= status < 400:
        return ('%s: the admin API answered with a redirect, which is not followed (the token must '
                'not travel elsewhere); set api_url to the final URL%s' % (where, said))
    if status >= 500:
        return ('%s: the admin API failed on its side; check its logs, try again later or raise retries%s'
                % (where, said))
    return '%s: unexpected answer%s' % (where, said)


def classify_exception(exc, url, timeout):
    """Map a transport exception to ``(kind, message, retriable)``; the message names the fix."""
    reason = exc.reason if isinstance(exc, URLError) and not isinstance(exc, HTTPError) else exc
    shown = display_url(url)
    parts = urlsplit(url)
    host = parts.hostname or shown
    netloc = parts.netloc.rpartition('@')[2]
    if isinstance(reason, str):
        if 'certificate' not in reason.lower():
            return ('connection', 'cannot reach the admin API at %s (%s): check api_url and the network'
                    % (shown, reason), True)
        reason = SSLValidationError(reason)
    if isinstance(reason, (SSLValidationError, ssl.SSLCertVerificationError, ssl.CertificateError)):
        detail = getattr(reason, 'verify_message', None) or str(reason)
        return ('tls', 'TLS verification of the admin API at %s failed (%s): give ca_path (the CA bundle '
                'that signed the server certificate) or fix the server certificate; validate_certs=false '
                'is for labs only' % (shown, detail), False)
    if isinstance(reason, (socket.timeout, TimeoutError)) or getattr(reason, 'errno', None) == errno.ETIMEDOUT:
        return ('timeout', 'no answer from the admin API at %s within %s s: raise timeout or check the network '
                '(VPN, firewall, proxy)' % (shown, _number(timeout)), True)
    if isinstance(reason, socket.gaierror):
        transient = reason.errno == getattr(socket, 'EAI_AGAIN', -3)
        return ('dns', 'the admin API host name %s does not resolve (%s): check api_url and the DNS/VPN '
                'set-up of this station' % (host, reason.strerror or reason), transient)
    if isinstance(reason, ssl.SSLError):
        detail = getattr(reason, 'reason', None) or str(reason)
        eof = isinstance(reason, (ssl.SSLEOFError, ssl.SSLZeroReturnError))
        return ('tls', 'TLS connection to the admin API at %s failed (%s): if the server requires a client '
                'certificate set client_cert and client_key; check ca_path and validate_certs'
                % (shown, detail), eof)
    if isinstance(reason, ConnectionRefusedError) or getattr(reason, 'errno', None) == errno.ECONNREFUSED:
        return ('refused', 'connection refused by %s: is the admin API running at %s? check api_url '
                '(host and port) and the firewall' % (netloc, shown), True)
    if isinstance(reason, (http.client.HTTPException, OSError)):
        detail = getattr(reason, 'strerror', None) or type(reason).__name__
        hint = ''
        if parts.scheme == 'https':
            hint = '; a server that requires a client certificate also closes the connection: set client_cert and client_key'
        return ('connection', 'the connection to the admin API at %s failed before a complete answer (%s): '
                'check the network and the admin API (or a proxy in between)%s' % (shown, detail, hint), True)
    return ('connection', 'cannot reach the admin API at %s (%s)' % (shown, type(reason).__name__), True)


def _number(value):
    return ('%g' % value) if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------------------------------
# The client

class AdminAPIClient(object):
    """Talks JSON to the admin API with retries; keeps a log of what it called.

    ``calls`` is a list of ``{method, path, status}`` (one entry per attempt; ``status`` None
    when no answer came).  ``secrets`` are scrubbed from every message; the token is always
    one of them, and callers add the device password with :meth:`add_secret`.

    With ``keep_alive`` each thread keeps one HTTP(S) connection open and sends all its
    requests over it (a station run makes a few requests for each of up to a hundred devices;
    a TLS handshake per request would be most of the work). A connection the server dropped
    fails the attempt as any connection error does, and the next attempt opens a new one.
    Through a proxy, or with credentials in ``api_url``, every request takes the ordinary
    one-connection-per-request path, which knows about both. One client may be shared by
    threads: the call log and the secrets are guarded by a lock.
    """

    def __init__(self, api_url, api_token=None, client_cert=None, client_key=None, ca_path=None,
                 validate_certs=True, timeout=30, retries=5, retry_backoff=1.0, backoff_cap=BACKOFF_CAP,
                 user_agent=USER_AGENT, sleep=time.sleep, rand=random.random, keep_alive=False,
                 client_cert_content=None, client_key_content=None, ca_content=None):
        self.secrets = set()
        if api_token:
            self.secrets.add(api_token)
        url = normalize_api_url(api_url)
        parts = urlsplit(url)
        if parts.scheme not in ('http', 'https') or not parts.netloc:
            raise AdminAPIError('api_url must be an http:// or https:// URL such as https://admin.example.com, '
                                'got %r' % display_url(url), kind='config')
        if (client_key or client_key_content) and not (client_cert or client_cert_content):
            raise AdminAPIError('client_key (or client_key_content) is set but client_cert (or client_cert_content) is not:'
                                ' give both for mTLS', kind='config')
        if timeout is None or timeout <= 0:
            raise AdminAPIError('timeout must be a positive number of seconds', kind='config')
        if retries is None or retries < 0:
            raise AdminAPIError('retries must be 0 or more', kind='config')
        if retry_backoff is None or retry_backoff < 0:
            raise AdminAPIError('retry_backoff must be 0 or more seconds', kind='config')
        self.api_url = url
        self.token = api_token or None
        self.timeout = timeout
        self.retries = retries
        self.retry_backoff = retry_backoff
        self.backoff_cap = backoff_cap
        self.calls = []
        self._sleep = sleep
        self._rand = rand
        self._lock = threading.Lock()
        self._parts = parts
        self.keep_alive = keep_alive and not parts.username and not _proxied(parts)
        self._local = threading.local()  # .connection: this thread's kept-alive connection
        self._connections = []  # every kept-alive connection, for close()
        # One TLS context for all requests (Request would load the trust store on every call).
        try:
            with in_memory_files(client_cert_content, client_key_content, ca_content) as in_memory:
                cert_in_memory, key_in_memory, ca_in_memory = in_memory
                context = make_context(cafile=ca_path or ca_in_memory, validate_certs=validate_certs,
                                       client_cert=client_cert or cert_in_memory, client_key=client_key or key_in_memory)
        except (OSError, ValueError) as exc:
            raise AdminAPIError(
                'cannot load the TLS files (ca_path=%s, client_cert=%s, client_key=%s): %s; check that '
                'the files exist, are PEM, and that the key matches the certificate'
                % (ca_path or ('from the controller' if ca_content else None),
                   client_cert or ('from the controller' if client_cert_content else None),
                   client_key or ('from the controller' if client_key_content else None),
                   getattr(exc, 'strerror', None) or exc), kind='config')
        headers = {'Accept': 'application/json'}
        if self.token:
            headers['Authorization'] = 'Bearer %s' % self.token
        self._context = context
        self._headers = dict(headers, **{'User-Agent': user_agent})
        self._request = Request(headers=headers, timeout=timeout, validate_certs=validate_certs,
                                http_agent=user_agent, follow_redirects='none', use_netrc=False,
                                context=context)

    @classmethod
    def from_params(cls, params, **kwargs):
        """Build a client from a module's ``params`` (the options of :func:`admin_api_argument_spec`)."""
        return cls(api_url=params['api_url'], api_token=params.get('api_token'),
                   client_cert=params.get('client_cert'), client_key=params.get('client_key'),
                   ca_path=params.get('ca_path'), validate_certs=params.get('validate_certs', True),
                   client_cert_content=params.get('client_cert_content'),
                   client_key_content=params.get('client_key_content'), ca_content=params.get('ca_content'),
                   timeout=params.get('timeout', 30), retries=params.get('retries', 5),
                   retry_backoff=params.get('retry_backoff', 1.0), **kwargs)

    def add_secret(self, value):
        """Scrub ``value`` from every message from now on."""
        if value:
            with self._lock:
                # A new set, not add(): another thread may be iterating the current one.
                self.secrets = self.secrets | {value}

    def scrub(self, text):
        return scrub(text, self.secrets)

    @property
    def requests(self):
        """A copy of the call log: list of ``{method, path, status}``."""
        with self._lock:
            return [dict(call) for call in self.calls]

    def close(self):
        """Close every kept-alive connection (a later request opens a new one)."""
        with self._lock:
            connections, self._connections = self._connections, []
            self._local = threading.local()  # so that a later request opens (and tracks) a new one
        for connection in connections:
            connection.close()

    def request(self, method, path, body=None, query=None, expected=(200,), want_json=False, calls=None):
        """Call ``method path`` with the JSON ``body``; return an AdminAPIResponse.

        Statuses in ``expected`` are returned to the caller.  Connection errors, timeouts, 429
        and 5xx are retried up to ``retries`` times; anything else raises AdminAPIError.  With
        ``want_json`` the body must be JSON (``response.data``).  ``calls``: a list that gets
        this request's attempts too (the log of one device when threads share the client).
        """
        method = method.upper()
        shown_path = path + ('?' + urlencode(query) if query else '')
        url = self.api_url + shown_path
        data = None
        headers = {}
        if body is not None:
            data = json.dumps(body).encode('utf-8')
            headers['Content-Type'] = 'application/json'
        attempts = self.retries + 1
        last = None
        for attempt in range(attempts):
            if attempt:
                self._sleep(compute_backoff(attempt - 1, self.retry_backoff, self.backoff_cap,
                                            last.retry_after if last else None, self._rand))
            try:
                response = self._attempt(method, shown_path, url, data, headers, expected, want_json, calls)
            except _Retriable as exc:
                last = exc
                continue
            except AdminAPIError as exc:
                exc.attempts = attempt + 1
                raise
            return response
        raise AdminAPIError(
            self.scrub('gave up on %s %s after %d attempts (retries=%d); last cause: %s'
                       % (method, shown_path, attempts, self.retries, last.message)),
            status=last.status, kind=last.kind, attempts=attempts, retriable=True,
            server_message=last.server_message)

    # -- internals ------------------------------------------------------------------------

    def _attempt(self, method, shown_path, url, data, headers, expected, want_json, calls):
        call = {'method': method, 'path': shown_path, 'status': None}
        with self._lock:
            self.calls.append(call)
        if calls is not None:
            calls.append(call)
        try:
            if self.keep_alive:
                status, text, response_headers = self._exchange(method, shown_path, data, headers)
            else:
                try:
                    response = self._request.open(method, url, data=data, headers=headers)
                except HTTPError as exc:
                    response = exc
                status = response.getcode()
                text = _read(response)
                response_headers = response.headers or {}
            with self._lock:
                call['status'] = status
        except (URLError, SSLValidationError, http.client.HTTPException, OSError, ValueError) as exc:
            if isinstance(exc, ValueError) and not isinstance(exc, ssl.SSLError):
                raise AdminAPIError(self.scrub('invalid request to %s: %s; check api_url'
                                               % (display_url(url), exc)), kind='config')
            kind, message, retriable = classify_exception(exc, self.api_url, self.timeout)
            message = self.scrub(message)
            if retriable:
                raise _Retriable(message, None, kind, None)
            raise AdminAPIError(message, kind=kind)

        if status in expected:
            parsed = None
            if want_json:
                parsed = self._parse_json(status, text, response_headers, method, shown_path)
            return AdminAPIResponse(status, text, parsed, response_headers)

        message = http_error_message(status, method, shown_path, self.api_url, text, self.secrets, bool(self.token))
        said = snippet(server_message(text), self.secrets)
        if status == 429 or status >= 500:
            retry_after = None
            if status in (429, 503):
                retry_after = parse_retry_after(response_headers.get('Retry-After'))
            raise _Retriable(self.scrub(message), status, 'http', retry_after, said)
        raise AdminAPIError(self.scrub(message), status=status, kind='http', server_message=said)

    def _exchange(self, method, shown_path, data, headers):
        """One request over this thread's kept-alive connection: ``(status, text, headers)``.

        Any error closes the connection, so the next attempt starts on a fresh one.
        """
        connection = getattr(self._local, 'connection', None)
        if connection is None:
            parts = self._parts
            if parts.scheme == 'https':
                connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=self.timeout,
                                                         context=self._context)
            else:
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        try:
            connection.request(method, self._parts.path + shown_path, body=data, headers=dict(self._headers, **headers))
            response = connection.getresponse()
            text = _read(response)
            if not response.isclosed():  # a body longer than MAX_BODY: the rest would garble the next answer
                connection.close()
            return response.status, text, response.headers
        except BaseException:
            connection.close()
            raise

    def _parse_json(self, status, text, headers, method, shown_path):
        try:
            return json.loads(text) if text.strip() else None
        except ValueError:
            content_type = headers.get('Content-Type') or 'no Content-Type'
            raise AdminAPIError(
                'expected JSON from %s %s but the answer (HTTP %d, %s) is not JSON: "%s"; check that '
                'api_url points at the admin API itself (not a proxy or a login page)'
                % (method, shown_path, status, snippet(content_type, self.secrets, 60),
                   snippet(text, self.secrets)),
                status=status, kind='json')


class _Retriable(AdminAPIError):
    def __init__(self, message, status, kind, retry_after, said=None):
        super(_Retriable, self).__init__(message, status=status, kind=kind, retriable=True, server_message=said)
        self.retry_after = retry_after


def _proxied(parts):
    """Whether the environment sends requests to this URL through a proxy (as urllib would)."""
    return bool(getproxies().get(parts.scheme)) and not proxy_bypass(parts.hostname or '')


def _read(response):
    """The body as text, at most MAX_BODY bytes (an error answer may have no body at all)."""
    try:
        raw = response.read(MAX_BODY)
    except AttributeError:
        return ''
    if raw is None:
        return ''
    if isinstance(raw, bytes):
        return raw.decode('utf-8', 'replace')
    return raw
