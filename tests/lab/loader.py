"""A lab stand-in for the Azaion Loader that runs on a flashed Jetson, served over real HTTP.

After flashing, the real device boots, its Loader reads ``/etc/azaion/device.conf`` and serves
``GET /health`` and ``POST /login`` (docs/provisioning-flow.md, steps 6 and 7). The smoke
verification calls exactly those two, so the lab serves them from what was really flashed: the
fake flash tool copies the flashed rootfs to ``<lab_state>/storage/<usb_instance>/`` and one
LabLoader serves each such directory. A device.conf that never reached the image, or reached it with the wrong
mode or another device's password, then fails the smoke check as it would on the floor.

The file is read again at every request, because the lab re-flashes a device's storage while
its Loader keeps running. Logins go on to the lab admin API's ``POST /_lab/login``, where the
real Loader would ask the resource API, so a password that the admin API never received is
denied.

Standard library only, so it also runs out of process:
``python tests/lab/loader.py --storage DIR --admin-api-url URL [--port N] [--port-file F]``.
No password ever appears in a response, in ``login_attempts()`` or on the command line.
"""

import argparse
import hmac
import json
import os
import random
import socket
import stat
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

if not __package__:  # run as a script (python tests/lab/loader.py): make the lab package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lab.serving import LoopbackService, serve_until_signalled  # noqa: E402  pylint: disable=wrong-import-position

DEVICE_CONF = os.path.join('etc', 'azaion', 'device.conf')
EMAIL_KEY = 'AZAION_DEVICE_EMAIL'
PASSWORD_KEY = 'AZAION_DEVICE_PASSWORD'
REQUIRED_MODE = 0o600
ADMIN_API_TIMEOUT = 5  # seconds; the smoke check has its own, longer, retry budget
MAX_BODY_BYTES = 64 * 1024
MAX_CONF_BYTES = 64 * 1024
ROUTES = {'/health': ('GET',), '/login': ('POST',)}


class ConfError(Exception):
    """device.conf cannot be used; the message says why and never holds a value from the file."""


def free_port(host='127.0.0.1'):
    """A loopback port that nothing listens on now, for a Loader whose URL must be known early.

    Picked below the kernel's ephemeral range where possible: a port from that range can be
    taken meanwhile by the local end of some outgoing connection (the Loader's own calls to
    the admin API, for one), and the Loader could then not bind it at boot.
    """
    low = _ephemeral_low()
    candidates = random.sample(range(10000, low), min(50, low - 10000)) if low > 10000 else []
    for port in candidates + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise OSError('no free port on %s' % host)


def _ephemeral_low():
    try:
        with open('/proc/sys/net/ipv4/ip_local_port_range') as port_range:
            return int(port_range.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def read_device_conf(storage_dir):
    """``(email, password)`` from ``<storage_dir>/etc/azaion/device.conf``, or raise ConfError.

    Wants what the real Loader wants: a regular file with mode 0600 holding both keys. A
    symlink is refused, and so is a path that leaves the storage: followed from the station,
    an absolute link in a staged rootfs leads into the station's own /etc.
    """
    storage = os.path.realpath(storage_dir)
    path = os.path.join(storage, DEVICE_CONF)
    parent = os.path.realpath(os.path.dirname(path))
    if parent != storage and not parent.startswith(storage + os.sep):
        raise ConfError('%s leads outside the device storage' % os.path.dirname(DEVICE_CONF))
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise ConfError('%s not found' % DEVICE_CONF)
    except OSError as error:
        raise ConfError('cannot read %s: %s' % (DEVICE_CONF, error.strerror or error))
    if not stat.S_ISREG(info.st_mode):
        raise ConfError('%s is not a regular file' % DEVICE_CONF)
    mode = stat.S_IMODE(info.st_mode)
    if mode != REQUIRED_MODE:
        raise ConfError('%s has mode %04o, the Loader wants %04o' % (DEVICE_CONF, mode, REQUIRED_MODE))
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0))
        with os.fdopen(fd, 'rb') as conf:
            text = conf.read(MAX_CONF_BYTES).decode('utf-8')
    except UnicodeDecodeError:
        raise ConfError('%s is not UTF-8 text' % DEVICE_CONF)
    except OSError as error:
        raise ConfError('cannot read %s: %s' % (DEVICE_CONF, error.strerror or error))
    values = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        key, sep, value = line.partition('=')
        if not sep:
            raise ConfError('%s line %d is not KEY=VALUE' % (DEVICE_CONF, number))
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in '"\'':
            value = value[1:-1]  # as systemd's EnvironmentFile, which starts the real Loader
        values[key.strip()] = value  # the last one wins
    for key in (EMAIL_KEY, PASSWORD_KEY):
        if not values.get(key):
            raise ConfError('%s has no %s' % (DEVICE_CONF, key))
    return values[EMAIL_KEY], values[PASSWORD_KEY]


class LabLoader(LoopbackService):
    """The Loader of one device. ``start()`` (or ``with``) boots it, ``stop()`` powers it off.

    It is "booting" for ``boot_seconds`` after each ``start()``. With ``port`` fixed, the URL
    is known before the device is flashed and stays the same across restarts.
    """

    thread_name = 'lab-loader'

    def __init__(self, storage_dir, admin_api_url, host='127.0.0.1', port=0, boot_seconds=0.0):
        self.storage_dir = os.fspath(storage_dir)
        self.admin_api_url = admin_api_url.rstrip('/')
        self.host = host
        self._port = port
        self.boot_seconds = boot_seconds
        self._lock = threading.Lock()
        self._attempts = []
        self._started_at = None
        self._server = None
        self._thread = None

    # -- life cycle ------------------------------------------------------------------------------

    def _new_server(self):
        return _Server((self.host, self._port), self)

    def _started(self):
        self._started_at = time.monotonic()

    @property
    def url(self):
        host = '127.0.0.1' if self.host in ('', '0.0.0.0') else self.host
        return 'http://%s:%d' % (host, self._port)

    @property
    def booting(self):
        return self._started_at is None or time.monotonic() - self._started_at < self.boot_seconds

    def login_attempts(self):
        """``POST /login`` requests with a readable body, in order: ``{"email", "ok"}``."""
        with self._lock:
            return [dict(attempt) for attempt in self._attempts]

    # -- answering requests (called from the connection threads) -------------------------------

    def _answer(self, method, path, body):
        """Return ``(status, JSON-able body, extra headers)``."""
        allowed = ROUTES.get(path)
        if allowed is None:
            return 404, {'status': 'error', 'reason': 'not found'}, {}
        if method not in allowed:
            return 405, {'status': 'error', 'reason': 'method not allowed'}, {'Allow': ', '.join(allowed)}
        if self.booting:
            return 503, {'status': 'booting'}, {'Retry-After': '1'}
        if path == '/health':
            try:
                read_device_conf(self.storage_dir)
            except ConfError as error:
                return 500, {'status': 'unhealthy', 'reason': str(error)}, {}
            return 200, {'status': 'healthy'}, {}
        return self._login(body) + ({},)

    def _login(self, body):
        try:
            data = json.loads(body.decode('utf-8'))
        except ValueError:  # UnicodeDecodeError is a ValueError too
            data = None
        if not (isinstance(data, dict) and isinstance(data.get('email'), str)
                and isinstance(data.get('password'), str)):
            return 400, {'status': 'error', 'reason': 'body must be {"email": string, "password": string}'}
        status, reply = self._check_login(data['email'], data['password'])
        with self._lock:
            self._attempts.append({'email': data['email'], 'ok': status == 200})
        return status, reply

    def _check_login(self, email, password):
        try:
            conf_email, conf_password = read_device_conf(self.storage_dir)
        except ConfError as error:
            return 500, {'status': 'unhealthy', 'reason': str(error)}
        # Both compared, always, so the time taken does not tell which one differs.
        same_email = hmac.compare_digest(email.encode('utf-8'), conf_email.encode('utf-8'))
        same_password = hmac.compare_digest(password.encode('utf-8'), conf_password.encode('utf-8'))
        if not (same_email and same_password):
            return 401, {'status': 'denied', 'reason': 'credentials do not match device.conf'}
        request = urllib.request.Request(
            self.admin_api_url + '/_lab/login', method='POST',
            data=json.dumps({'email': email, 'password': password}).encode('utf-8'),
            headers={'Content-Type': 'application/json', 'Accept': 'application/json'})
        try:
            with urllib.request.urlopen(request, timeout=ADMIN_API_TIMEOUT) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
            error.close()
        except (urllib.error.URLError, OSError):  # refused, reset, timed out, TLS failure
            return 502, {'status': 'error', 'reason': 'admin API unreachable'}
        if status == 200:
            return 200, {'status': 'ok'}
        if status in (401, 403):
            return 401, {'status': 'denied', 'reason': 'the admin API rejected the credentials'}
        return 502, {'status': 'error', 'reason': 'admin API answered HTTP %d' % status}


class LabLoaderFleet:
    """One LabLoader per flashed device, under ``<storage_root>/<usb_instance>``.

    Each device gets its port the first time anyone asks (``port()``, ``url()`` or ``boot()``)
    and keeps it, so an inventory can name ``jetson_loader_url`` before the device is flashed.
    """

    def __init__(self, lab_state_storage_root, admin_api_url, boot_seconds=0.0, host='127.0.0.1'):
        self.storage_root = os.fspath(lab_state_storage_root)
        self.admin_api_url = admin_api_url
        self.boot_seconds = boot_seconds
        self.host = host
        self._lock = threading.Lock()
        self._ports = {}
        self._loaders = {}

    def port(self, usb_instance):
        _check_instance(usb_instance)
        with self._lock:
            if usb_instance not in self._ports:
                port = free_port(self.host)
                while port in self._ports.values():
                    port = free_port(self.host)
                self._ports[usb_instance] = port
            return self._ports[usb_instance]

    def url(self, usb_instance):
        host = '127.0.0.1' if self.host in ('', '0.0.0.0') else self.host
        return 'http://%s:%d' % (host, self.port(usb_instance))

    def boot(self, usb_instance):
        """Start the device's Loader, or restart it (a re-flashed device boots again)."""
        port = self.port(usb_instance)
        self.stop(usb_instance)
        loader = LabLoader(os.path.join(self.storage_root, usb_instance), self.admin_api_url,
                           host=self.host, port=port, boot_seconds=self.boot_seconds).start()
        with self._lock:
            self._loaders[usb_instance] = loader
        return loader

    def loader(self, usb_instance):
        """The running LabLoader of ``usb_instance``, or None."""
        with self._lock:
            return self._loaders.get(usb_instance)

    def stop(self, usb_instance):
        """Power the device off; its port stays reserved for the next ``boot()``."""
        with self._lock:
            loader = self._loaders.pop(usb_instance, None)
        if loader is not None:
            loader.stop()

    def stop_all(self):
        with self._lock:
            instances = list(self._loaders)
        for usb_instance in instances:
            self.stop(usb_instance)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop_all()


def _check_instance(usb_instance):
    # It becomes a directory name under the storage root, so it must be one plain name.
    if (not isinstance(usb_instance, str) or usb_instance in ('', '.', '..')
            or '/' in usb_instance or os.sep in usb_instance):
        raise ValueError('usb_instance must be a port path such as 1-3, not %r' % (usb_instance,))


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so stop() leaves no kept-alive connection behind
    # that would still answer after the "device" went off.
    protocol_version = 'HTTP/1.0'
    server_version = 'LabLoader/1.0'
    sys_version = ''
    timeout = 10  # a client that never sends its request must not hold a thread

    def log_message(self, format, *args):
        pass  # quiet: request lines and errors are no business of the test output

    def do_GET(self):
        try:
            length = int(self.headers.get('Content-Length', '0'))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self._send(400, {'status': 'error', 'reason': 'invalid or too large Content-Length'}, {})
            return
        body = self.rfile.read(length)
        status, reply, headers = self.server.loader._answer(self.command, urlsplit(self.path).path, body)
        self._send(status, reply, headers)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _send(self, status, reply, headers):
        payload = json.dumps(reply).encode('utf-8')
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(payload)))
        self.send_header('Connection', 'close')
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, loader):
        self.loader = loader
        super().__init__(address, _Handler)

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client that went away mid-request: nothing worth printing
        super().handle_error(request, client_address)  # a bug in the lab: show it


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Serve the lab Loader of one flashed device from its storage directory.')
    parser.add_argument('--storage', required=True,
                        help='the device storage: the flashed rootfs, holding etc/azaion/device.conf')
    parser.add_argument('--admin-api-url', required=True, help='the lab admin API, for POST /login')
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=0, help='0 picks a free port')
    parser.add_argument('--port-file', help='write the bound port here once listening')
    parser.add_argument('--boot-seconds', type=float, default=0.0,
                        help='answer 503 "booting" for this long after the start')
    args = parser.parse_args(argv)
    if args.boot_seconds < 0:
        parser.error('--boot-seconds must be 0 or more')

    service = LabLoader(args.storage, args.admin_api_url, host=args.host, port=args.port,
                        boot_seconds=args.boot_seconds)
    return serve_until_signalled(service, args.port_file, 'lab loader')


if __name__ == '__main__':
    sys.exit(main())
