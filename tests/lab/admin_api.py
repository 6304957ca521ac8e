"""A lab stand-in for the customer's admin API, served over real HTTP(S).

``azaion.jetson.companion_user`` creates the companion PC's user through this API and sets its
password. Tests and demos run this server instead of the real one so they can check exactly
what the module sent, and inject the failures the module has to survive: 5xx answers, replies
lost after the server already acted, slow answers, HTML error pages, a deployment without the
password endpoint.

Standard library only, so it also runs out of process without installing anything:
``python tests/lab/admin_api.py --port-file F``. The bearer token comes from the environment
variable LAB_ADMIN_API_TOKEN, never from the command line, where any local user could read it.
"""

import argparse
import copy
import hmac
import json
import os
import random
import re
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

if not __package__:  # run as a script (python tests/lab/admin_api.py): make the lab package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lab.serving import LoopbackService, serve_until_signalled  # noqa: E402  pylint: disable=wrong-import-position

TOKEN_ENV_VAR = 'LAB_ADMIN_API_TOKEN'
EMAIL_PATTERN = re.compile(r'[^@\s]+@[^@\s]+\.[^@\s]+')
PASSWORD_PATTERN = re.compile(r'[0-9a-f]{32}')
MAX_BODY_BYTES = 1 << 20
WRITE_ROUTES = {('POST', '/users'), ('PATCH', '/users/password')}
API_ROUTES = {'/users': ('GET', 'POST'), '/users/password': ('PATCH',)}
LAB_ROUTES = {'/_lab/state': ('GET',), '/_lab/faults': ('PUT',),
              '/_lab/reset': ('POST',), '/_lab/login': ('POST',)}
DROPPED = object()  # reply marker: close the connection without answering


class HTTPError(Exception):
    """Ends a request with ``status`` and a JSON ``{"message": ...}`` body."""

    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Fault rule key -> (default, check of a value, what the check wants, for the error message).
FAULT_KEYS = {
    'method': ('*', lambda value: isinstance(value, str), 'a method name or "*"'),
    'path': ('*', lambda value: isinstance(value, str), 'a path or "*"'),
    'status': (None, lambda value: value is None or (_is_int(value) and 100 <= value <= 599),
               'an HTTP status code or null'),
    'rate': (1.0, lambda value: _is_number(value) and 0 <= value <= 1, 'a number from 0 to 1'),
    'times': (None, lambda value: value is None or (_is_int(value) and value >= 0),
              'a non-negative integer or null'),
    # Matching requests let through before the rule may fire: {"skip": 4} faults the 5th on.
    'skip': (0, lambda value: _is_int(value) and value >= 0, 'a non-negative integer'),
    'drop': (None, lambda value: value in (None, 'before', 'after'), '"before", "after" or null'),
    'latency': (0, lambda value: _is_number(value) and value >= 0, 'a number of seconds, 0 or more'),
    'body': (None, lambda value: value is None or isinstance(value, str), 'a string or null'),
}


def _normalize_fault(rule):
    """Return ``rule`` with defaults filled in, or raise ValueError saying what is wrong."""
    if not isinstance(rule, dict):
        raise ValueError('each fault rule must be an object')
    unknown = sorted(set(rule) - set(FAULT_KEYS))
    if unknown:
        raise ValueError('unknown fault key(s): ' + ', '.join(unknown))
    fault = {'fired': 0, 'seen': 0}
    for key, (default, is_valid, wanted) in FAULT_KEYS.items():
        fault[key] = rule.get(key, default)
        if not is_valid(fault[key]):
            raise ValueError('fault %s must be %s' % (key, wanted))
    if fault['body'] is not None and fault['status'] is None:
        raise ValueError('fault body needs a status')
    fault['method'] = fault['method'].upper()
    return fault


def _describe_fault(fault):
    parts = ['latency %gs' % fault['latency']] if fault['latency'] else []
    if fault['drop']:  # a dropped request has no status to return, so drop wins over status
        parts.append('drop ' + fault['drop'])
    elif fault['status'] is not None:
        parts.append('status %d' % fault['status'])
    return ', '.join(parts) or 'no-op'


def _json_reply(status, data, headers=None):
    payload = None if data is None else json.dumps(data).encode('utf-8')
    return status, payload, 'application/json', headers or {}


def _public(user):
    return {key: user[key] for key in ('id', 'email', 'role')}


class LabAdminAPI(LoopbackService):
    """The admin API double. Bind and serve with ``start()`` (or ``with``), stop with ``stop()``.

    Users and the request log survive ``stop()``/``start()``, and a restart reuses the port,
    so a test can take the API down and bring it back like a real service restart.
    """

    thread_name = 'lab-admin-api'

    def __init__(self, host='127.0.0.1', port=0, token=None, tls_cert=None, tls_key=None,
                 client_ca=None, accepted_roles=('CompanionPC', 30), patch_enabled=True,
                 patch_status=200, seed=0):
        if (tls_cert is None) != (tls_key is None):
            raise ValueError('tls_cert and tls_key go together')
        if client_ca is not None and tls_cert is None:
            raise ValueError('client_ca needs tls_cert and tls_key')
        if patch_status not in (200, 204):
            raise ValueError('patch_status must be 200 or 204')
        self.host = host
        self._port = port
        self._token = token
        self._accepted_roles = tuple(accepted_roles)
        self._patch_enabled = patch_enabled
        self._patch_status = patch_status
        self._seed = seed
        self._tls_context = None
        if tls_cert is not None:
            self._tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls_context.load_cert_chain(tls_cert, tls_key)
            if client_ca is not None:
                self._tls_context.verify_mode = ssl.CERT_REQUIRED
                self._tls_context.load_verify_locations(client_ca)
        self._lock = threading.Lock()
        self._server = None
        self._thread = None
        self.reset()

    # -- life cycle ---------------------------------------------------------------------------

    def _new_server(self):
        return _Server((self.host, self._port), self)

    def _closed(self, server):
        server.close_connections()  # kept-alive connections end too, as with a real outage

    @property
    def url(self):
        if self._tls_context is not None:
            return 'https://localhost:%d' % self._port  # matches a certificate for localhost
        host = '127.0.0.1' if self.host in ('', '0.0.0.0') else self.host
        return 'http://%s:%d' % (host, self._port)

    # -- state for tests ------------------------------------------------------------------------

    def reset(self):
        """Forget users, requests and faults, and restart the random sequence from the seed."""
        with self._lock:
            self._users = {}
            self._next_id = 1
            self._log = []
            self._peers = []
            self._writes = 0
            self._faults = []
            self._random = random.Random(self._seed)
            self._connections_accepted = 0

    def add_user(self, email, password, role):
        """Pre-seed a user (not validated, so tests can plant odd data); returns a copy."""
        with self._lock:
            if email in self._users:
                raise ValueError('user with email %s already exists' % email)
            return dict(self._store_user(email, password, role))

    def users(self):
        """email -> {"id", "email", "password", "role"}, a copy."""
        with self._lock:
            return copy.deepcopy(self._users)

    def request_log(self):
        """API requests in arrival order: {"method", "path", "status", "fault", "applied"}.

        ``status`` is None when the connection was dropped; ``applied`` is True when the request
        changed the stored users. Lab control routes are not logged.
        """
        with self._lock:
            return copy.deepcopy(self._log)

    def request_peers(self):
        """Who sent each API request, in the order of ``request_log()``: {"peer" (the client's
        address), "method", "path"}. Tells which station a request came from."""
        with self._lock:
            return copy.deepcopy(self._peers)

    def write_count(self):
        """POST /users and PATCH /users/password requests received, faulted or not."""
        with self._lock:
            return self._writes

    def connection_count(self):
        """TCP connections accepted (lab routes' included); a client that keeps its connections
        alive makes one per thread, not one per request."""
        with self._lock:
            return self._connections_accepted

    def _connection_accepted(self):
        with self._lock:
            self._connections_accepted += 1

    def state(self):
        """Everything ``GET /_lab/state`` returns."""
        with self._lock:
            users = sorted(self._users.values(), key=lambda user: user['id'])
            return {'users': copy.deepcopy(users), 'requests': copy.deepcopy(self._log),
                    'write_count': self._writes}

    def set_faults(self, rules):
        """Replace the fault rules; the first matching rule that fires wins."""
        if not isinstance(rules, list):
            raise ValueError('faults must be a list of rules')
        faults = [_normalize_fault(rule) for rule in rules]
        with self._lock:
            self._faults = faults

    def _store_user(self, email, password, role):
        user = {'id': self._next_id, 'email': email, 'password': password, 'role': role}
        self._users[email] = user
        self._next_id += 1
        return user

    # -- answering requests (called from the connection threads) ------------------------------

    def _answer(self, method, path, query, headers, body, peer=None):
        """Return ``(status, payload bytes or None, content type, headers)`` or DROPPED."""
        if path.startswith('/_lab/'):
            try:
                return _json_reply(*self._lab_route(method, path, body))
            except HTTPError as error:
                return _json_reply(error.status, {'message': error.message}, error.headers)
        entry = {'method': method, 'path': path, 'status': None, 'fault': None, 'applied': False}
        with self._lock:
            self._log.append(entry)
            self._peers.append({'peer': peer, 'method': method, 'path': path})
            if (method, path) in WRITE_ROUTES:
                self._writes += 1
            fault = self._pick_fault(method, path)
            if fault is not None:
                entry['fault'] = _describe_fault(fault)
        if fault is not None:
            time.sleep(fault['latency'])  # outside the lock: a slow request must not stall others
            if fault['drop'] == 'before':
                return DROPPED
            if fault['status'] is not None and fault['drop'] is None:
                reply = _json_reply(fault['status'], {'message': 'injected fault'})
                if fault['body'] is not None:
                    reply = (fault['status'], fault['body'].encode('utf-8'),
                             'text/html; charset=utf-8', {})
                with self._lock:
                    entry['status'] = fault['status']
                return reply
        try:
            reply = _json_reply(*self._api_route(method, path, query, headers, body, entry))
        except HTTPError as error:
            reply = _json_reply(error.status, {'message': error.message}, error.headers)
        if fault is not None and fault['drop'] == 'after':
            return DROPPED  # the state already changed; only the reply is lost
        with self._lock:
            entry['status'] = reply[0]
        return reply

    def _pick_fault(self, method, path):
        for fault in self._faults:
            if fault['method'] not in ('*', method) or fault['path'] not in ('*', path):
                continue
            if fault['times'] is not None and fault['fired'] >= fault['times']:
                continue
            fault['seen'] += 1
            if fault['seen'] <= fault['skip']:
                continue
            # Certain rules draw no number, so adding one does not shift the others' sequence.
            if fault['rate'] < 1 and self._random.random() >= fault['rate']:
                continue
            fault['fired'] += 1
            return fault
        return None

    def _api_route(self, method, path, query, headers, body, entry):
        if method == 'PATCH' and not self._patch_enabled:
            raise HTTPError(404, 'Not Found')  # as a deployment without the endpoint answers
        allowed = API_ROUTES.get(path)
        if allowed is None:
            raise HTTPError(404, 'Not Found')
        if method not in allowed:
            raise HTTPError(405, 'Method Not Allowed', {'Allow': ', '.join(allowed)})
        self._check_token(headers.get('Authorization'))
        if method == 'GET':
            needle = query.get('searchEmail', [''])[0].lower()
            with self._lock:
                users = sorted(self._users.values(), key=lambda user: user['id'])
                return 200, [_public(user) for user in users if needle in user['email'].lower()]
        if method == 'POST':
            fields = self._parse_fields(headers, body, ('email', 'password', 'role'))
            with self._lock:
                if fields['email'] in self._users:
                    raise HTTPError(409, 'user with email %s already exists' % fields['email'])
                user = self._store_user(fields['email'], fields['password'], fields['role'])
                entry['applied'] = True
                return 201, _public(user)
        fields = self._parse_fields(headers, body, ('email', 'password'))
        with self._lock:
            user = self._users.get(fields['email'])
            if user is None:
                raise HTTPError(404, 'user not found')
            user['password'] = fields['password']
            entry['applied'] = True
        if self._patch_status == 204:
            return 204, None
        return 200, {'email': fields['email']}

    def _check_token(self, authorization):
        if self._token is None:
            return
        scheme, dummy, presented = (authorization or '').partition(' ')
        if scheme.lower() != 'bearer' or not presented.strip():
            raise HTTPError(401, 'missing bearer token', {'WWW-Authenticate': 'Bearer'})
        if not hmac.compare_digest(presented.strip().encode(), self._token.encode()):
            raise HTTPError(403, 'invalid token')

    def _parse_fields(self, headers, body, keys):
        """The body as a dict with exactly ``keys``, checked; messages never echo the password."""
        content_type = (headers.get('Content-Type') or '').split(';')[0].strip().lower()
        if content_type != 'application/json':
            raise HTTPError(400, 'Content-Type must be application/json')
        fields = _parse_json(body)
        if not isinstance(fields, dict):
            raise HTTPError(400, 'body must be a JSON object')
        missing = [key for key in keys if key not in fields]
        if missing:
            raise HTTPError(400, 'missing key(s): ' + ', '.join(missing))
        unknown = sorted(set(fields) - set(keys))
        if unknown:
            raise HTTPError(400, 'unknown key(s): ' + ', '.join(unknown))
        if not isinstance(fields['email'], str) or not EMAIL_PATTERN.fullmatch(fields['email']):
            raise HTTPError(400, 'email must be an e-mail address')
        password = fields['password']
        if not isinstance(password, str) or not PASSWORD_PATTERN.fullmatch(password):
            raise HTTPError(400, 'password must be 32 lowercase hex characters')
        if 'role' in keys and not self._role_accepted(fields['role']):
            raise HTTPError(400, 'role must be one of ' + json.dumps(list(self._accepted_roles)))
        return fields

    def _role_accepted(self, role):
        # Compare types too: JSON 30 and "30" differ, and in Python True == 1.
        return any(type(role) is type(accepted) and role == accepted
                   for accepted in self._accepted_roles)

    def _lab_route(self, method, path, body):
        allowed = LAB_ROUTES.get(path)
        if allowed is None:
            raise HTTPError(404, 'Not Found')
        if method not in allowed:
            raise HTTPError(405, 'Method Not Allowed', {'Allow': ', '.join(allowed)})
        if path == '/_lab/state':
            return 200, self.state()
        if path == '/_lab/reset':
            self.reset()
            return 200, {'status': 'ok'}
        data = _parse_json(body)
        if path == '/_lab/faults':
            try:
                self.set_faults(data)
            except ValueError as error:
                raise HTTPError(400, str(error))
            return 200, {'faults': len(data)}
        if not (isinstance(data, dict) and isinstance(data.get('email'), str)
                and isinstance(data.get('password'), str)):
            raise HTTPError(400, 'body must be {"email": string, "password": string}')
        with self._lock:
            user = self._users.get(data['email'])
            stored = user['password'] if user else ''
        matches = user is not None and hmac.compare_digest(stored.encode(), data['password'].encode())
        return (200, {'status': 'ok'}) if matches else (401, {'status': 'denied'})


def _parse_json(body):
    try:
        return json.loads(body.decode('utf-8'))
    except ValueError:  # UnicodeDecodeError is a ValueError too
        raise HTTPError(400, 'body is not valid JSON')


class _Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'LabAdminAPI/1.0'
    sys_version = ''
    timeout = 30  # an idle keep-alive client or a stalled TLS handshake must not hold a thread

    def log_message(self, format, *args):
        pass  # quiet: tests read request_log(), and request lines can carry e-mail addresses

    def do_GET(self):
        try:
            body = self._read_body()
        except HTTPError as error:  # unreadable framing: answer, then close (body left unread)
            self.close_connection = True
            self._send(*_json_reply(error.status, {'message': error.message}))
            return
        url = urlsplit(self.path)
        reply = self.server.lab_api._answer(self.command, url.path, parse_qs(url.query),
                                            self.headers, body, peer=self.client_address[0])
        if reply is DROPPED:
            self.close_connection = True  # the server closes the socket: EOF, no status line
            return
        self._send(*reply)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _read_body(self):
        if 'chunked' in self.headers.get('Transfer-Encoding', '').lower():
            raise HTTPError(411, 'chunked bodies are not supported, send Content-Length')
        try:
            length = int(self.headers.get('Content-Length', '0'))
        except ValueError:
            length = -1
        if length < 0:
            raise HTTPError(400, 'invalid Content-Length')
        if length > MAX_BODY_BYTES:
            raise HTTPError(413, 'body too large')
        return self.rfile.read(length)

    def _send(self, status, payload, content_type, headers):
        self.send_response(status)
        if payload is not None:  # a 204 carries neither body nor Content-Length
            self.send_header('Content-Type', content_type)
            self.send_header('Content-Length', str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if payload:
            self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, lab_api):
        self.lab_api = lab_api
        self._connections = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):
        self.lab_api._connection_accepted()  # in the accept loop, once per TCP connection
        super().process_request(request, client_address)

    def finish_request(self, request, client_address):
        # ThreadingMixIn calls this in the connection's own thread, so the TLS handshake of a
        # slow or broken client ties up only that thread, never the accept loop.
        connection = request
        self._track(request)
        try:
            tls_context = self.lab_api._tls_context
            if tls_context is not None:
                request.settimeout(_Handler.timeout)
                connection = tls_context.wrap_socket(request, server_side=True)  # handshakes
                self._track(connection, replaces=request)
            self.RequestHandlerClass(connection, client_address, self)
        except OSError:
            pass  # refused handshake (ssl.SSLError is an OSError) or a client that went away
        finally:
            self._track(None, replaces=connection)
            if connection is not request:
                connection.close()

    def _track(self, connection, replaces=None):
        with self._connections_lock:
            self._connections.discard(replaces)
            if connection is not None:
                self._connections.add(connection)

    def close_connections(self):
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Serve the lab admin API. The bearer token, if any, is read from the '
                    'environment variable %s.' % TOKEN_ENV_VAR)
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=0, help='0 picks a free port')
    parser.add_argument('--port-file', help='write the bound port here once listening')
    parser.add_argument('--tls-cert', help='PEM certificate: serve HTTPS')
    parser.add_argument('--tls-key', help='PEM private key of --tls-cert')
    parser.add_argument('--client-ca', help='PEM CA: require client certificates it signed')
    parser.add_argument('--patch-disabled', action='store_true',
                        help='answer every PATCH with 404, as a deployment without it')
    parser.add_argument('--seed', type=int, default=0, help='seed for fault rates')
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error('--tls-cert and --tls-key go together')
    if args.client_ca is not None and args.tls_cert is None:
        parser.error('--client-ca needs --tls-cert and --tls-key')

    service = LabAdminAPI(host=args.host, port=args.port, token=os.environ.get(TOKEN_ENV_VAR) or None,
                          tls_cert=args.tls_cert, tls_key=args.tls_key, client_ca=args.client_ca,
                          patch_enabled=not args.patch_disabled, seed=args.seed)
    return serve_until_signalled(service, args.port_file, 'lab admin API')


if __name__ == '__main__':
    sys.exit(main())
