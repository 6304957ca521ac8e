# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The admin-API connection layer: pure logic, then real HTTP against the lab server."""

import http.client
import json
import os
import socket
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.error import URLError

import pytest

from lab.admin_api import LabAdminAPI

from ansible_collections.azaion.jetson.plugins.module_utils._admin_api import (
    MASK,
    AdminAPIClient,
    AdminAPIError,
    admin_api_argument_spec,
    classify_exception,
    compute_backoff,
    http_error_message,
    in_memory_files,
    normalize_api_url,
    parse_retry_after,
    scrub,
    server_message,
    snippet,
)

PASSWORD = '0123456789abcdef0123456789abcdef'
TOKEN = 'lab-token-Zq9/+x=='
EMAIL = 'azaion-jetson-0042@azaion.com'


def client_for(url, **kwargs):
    kwargs.setdefault('retries', 3)
    kwargs.setdefault('retry_backoff', 0.001)
    kwargs.setdefault('timeout', 5)
    return AdminAPIClient(url, **kwargs)


@pytest.fixture
def lab():
    with LabAdminAPI() as server:
        yield server


# ---------------------------------------------------------------------------------------------
# argument spec

def test_argument_spec_options_and_env_fallbacks():
    spec = admin_api_argument_spec()
    assert set(spec) == {'api_url', 'api_token', 'client_cert', 'client_key', 'ca_path', 'validate_certs',
                         'timeout', 'retries', 'retry_backoff', 'client_cert_content', 'client_key_content', 'ca_content'}
    assert spec['client_key_content']['no_log'] is True
    assert spec['api_url']['required'] is True
    assert spec['api_url']['fallback'][1] == ['AZAION_ADMIN_API_URL']
    assert spec['api_token']['no_log'] is True
    assert spec['api_token']['fallback'][1] == ['AZAION_ADMIN_API_TOKEN']
    assert (spec['timeout']['type'], spec['timeout']['default']) == ('float', 30)
    assert (spec['retries']['type'], spec['retries']['default']) == ('int', 5)
    assert (spec['retry_backoff']['type'], spec['retry_backoff']['default']) == ('float', 1.0)
    assert spec['validate_certs']['default'] is True
    assert admin_api_argument_spec() is not spec  # a fresh dict: modules may update it


def test_normalize_api_url_strips_trailing_slashes():
    assert normalize_api_url(' https://admin.example.com/api/ ') == 'https://admin.example.com/api'
    assert normalize_api_url('http://h:1//') == 'http://h:1'


# ---------------------------------------------------------------------------------------------
# backoff

def test_backoff_is_full_jitter_under_an_exponential_ceiling():
    assert compute_backoff(0, 1.0, rand=lambda: 1.0) == 1.0
    assert compute_backoff(3, 1.0, rand=lambda: 1.0) == 8.0
    assert compute_backoff(3, 1.0, rand=lambda: 0.5) == 4.0
    assert compute_backoff(3, 1.0, rand=lambda: 0.0) == 0.0


def test_backoff_is_capped_even_for_huge_attempt_numbers():
    assert compute_backoff(10, 1.0, rand=lambda: 1.0) == 30.0
    assert compute_backoff(10000, 2.0, cap=7.0, rand=lambda: 1.0) == 7.0


def test_backoff_zero_base_never_waits():
    assert compute_backoff(4, 0, rand=lambda: 1.0) == 0.0


def test_retry_after_wins_and_is_capped():
    assert compute_backoff(0, 1.0, retry_after=4, rand=lambda: 0.0) == 4.0
    assert compute_backoff(0, 1.0, retry_after=3600, rand=lambda: 0.0) == 30.0


@pytest.mark.parametrize('value, expected', [
    ('5', 5.0), (' 7 ', 7.0), ('1.5', 1.5), ('0', 0.0),
    ('Wed, 21 Oct 2015 07:28:00 GMT', None), ('-1', None), ('', None), (None, None), ('soon', None),
])
def test_parse_retry_after_takes_numbers_only(value, expected):
    assert parse_retry_after(value) == expected


# ---------------------------------------------------------------------------------------------
# scrubbing

def test_scrub_replaces_secrets_and_their_escaped_forms():
    text = 'pw=%s tok=%s json="%s" url=%s' % (PASSWORD, TOKEN, json.dumps(TOKEN)[1:-1], 'lab-token-Zq9%2F%2Bx%3D%3D')
    out = scrub(text, [PASSWORD, TOKEN, None, ''])
    assert PASSWORD not in out and TOKEN not in out and 'Zq9' not in out
    assert out.count(MASK) == 4


def test_snippet_scrubs_before_truncating_so_no_half_secret_leaks():
    text = 'x' * 190 + PASSWORD + 'tail'
    out = snippet(text, [PASSWORD], length=200)
    assert PASSWORD[:8] not in out
    assert out.endswith('...') and len(out) <= 203


def test_snippet_is_one_printable_line():
    assert snippet('<html>\n\t<body>\x00oops\x1b[31m</body>', []) == '<html> <body> oops [31m</body>'


def test_server_message_prefers_the_json_message():
    assert server_message('{"message": "role must be one of [30]"}') == 'role must be one of [30]'
    assert server_message('{"errors": {"email": ["bad"]}}') == '{"email": ["bad"]}'
    assert server_message('<html>Bad</html>') == '<html>Bad</html>'


# ---------------------------------------------------------------------------------------------
# error mapping

def test_http_401_names_the_token_variables():
    missing = http_error_message(401, 'POST', '/users', 'http://h', '', [], token_sent=False)
    assert 'no bearer token was sent' in missing
    assert 'azaion_admin_api_token' in missing and 'AZAION_ADMIN_API_TOKEN' in missing
    wrong = http_error_message(401, 'POST', '/users', 'http://h', '', [], token_sent=True)
    assert 'not accepted' in wrong


def test_http_403_asks_for_an_apiadmin_token():
    assert 'ApiAdmin' in http_error_message(403, 'POST', '/users', 'http://h', '{"message":"invalid token"}', [], True)


def test_http_400_quotes_the_scrubbed_server_message():
    msg = http_error_message(400, 'POST', '/users', 'http://h', '{"message": "bad password %s"}' % PASSWORD,
                             [PASSWORD], False)
    assert 'bad password ' + MASK in msg and PASSWORD not in msg


def test_http_404_points_at_api_url():
    assert 'check api_url' in http_error_message(404, 'GET', '/users', 'http://h/api', '', [], False)


def test_classify_connection_refused():
    kind, msg, retriable = classify_exception(URLError(ConnectionRefusedError(111, 'Connection refused')),
                                              'http://127.0.0.1:9', 1)
    assert (kind, retriable) == ('refused', True)
    assert 'is the admin API running at http://127.0.0.1:9?' in msg


def test_classify_dns_failure_permanent_and_transient():
    kind, msg, retriable = classify_exception(URLError(socket.gaierror(socket.EAI_NONAME, 'Name or service not known')),
                                              'https://admin.nowhere:8443', 1)
    assert (kind, retriable) == ('dns', False)
    assert 'admin.nowhere does not resolve' in msg
    assert classify_exception(URLError(socket.gaierror(socket.EAI_AGAIN, 'try again')), 'http://x', 1)[2] is True


def test_classify_tls_verification_failure():
    error = ssl.SSLCertVerificationError(1, 'certificate verify failed')
    error.verify_message = 'self-signed certificate'
    kind, msg, retriable = classify_exception(URLError(error), 'https://admin', 1)
    assert (kind, retriable) == ('tls', False)
    assert 'self-signed certificate' in msg and 'ca_path' in msg and 'validate_certs=false' in msg


def test_classify_timeout_and_dropped_connection():
    kind, msg, retriable = classify_exception(socket.timeout('timed out'), 'http://h', 2.5)
    assert (kind, retriable) == ('timeout', True)
    assert 'within 2.5 s' in msg and 'raise timeout' in msg
    kind, msg, retriable = classify_exception(http.client.RemoteDisconnected('closed'), 'http://h', 1)
    assert (kind, retriable) == ('connection', True)


def test_client_rejects_bad_configuration(tmp_path):
    with pytest.raises(AdminAPIError, match='http:// or https://'):
        AdminAPIClient('admin.example.com')
    with pytest.raises(AdminAPIError, match=r'client_key \(or client_key_content\) is set but client_cert \(or client_cert_content\) is not'):
        AdminAPIClient('https://admin.example.com', client_key=str(tmp_path / 'k.pem'))
    with pytest.raises(AdminAPIError, match='cannot load the TLS files'):
        AdminAPIClient('https://admin.example.com', client_cert=str(tmp_path / 'missing.pem'))


# ---------------------------------------------------------------------------------------------
# real HTTP against the lab server

def test_bearer_token_is_sent_and_json_parsed():
    with LabAdminAPI(token=TOKEN) as server:
        server.add_user(EMAIL, PASSWORD, 30)
        client = client_for(server.url + '/', api_token=TOKEN)
        response = client.request('GET', '/users', query={'searchEmail': EMAIL}, want_json=True)
    assert response.status == 200
    assert response.data == [{'id': 1, 'email': EMAIL, 'role': 30}]
    assert client.requests == [{'method': 'GET', 'path': '/users?searchEmail=azaion-jetson-0042%40azaion.com',
                                'status': 200}]


def test_retries_5xx_then_succeeds_with_backoff_between_attempts(lab):
    lab.set_faults([{'method': 'GET', 'path': '/users', 'status': 503, 'rate': 1.0, 'times': 2}])
    waits = []
    client = client_for(lab.url, retry_backoff=0.5, sleep=waits.append, rand=lambda: 1.0)
    assert client.request('GET', '/users', want_json=True).status == 200
    assert [call['status'] for call in client.requests] == [503, 503, 200]
    assert waits == [0.5, 1.0]  # full jitter drawn at its ceiling: base * 2**n


def test_gives_up_after_retries_and_says_how_many_attempts(lab):
    lab.set_faults([{'status': 500}])
    client = client_for(lab.url, retries=2)
    with pytest.raises(AdminAPIError) as caught:
        client.request('GET', '/users')
    assert 'after 3 attempts (retries=2)' in str(caught.value)
    assert 'HTTP 500 from GET /users' in str(caught.value)
    assert caught.value.attempts == 3 and caught.value.status == 500
    assert len(lab.request_log()) == 3


@pytest.mark.parametrize('status', [400, 401, 403, 404, 409, 422])
def test_other_4xx_are_never_retried(lab, status):
    lab.set_faults([{'status': status}])
    client = client_for(lab.url)
    with pytest.raises(AdminAPIError) as caught:
        client.request('GET', '/users')
    assert caught.value.status == status
    assert len(lab.request_log()) == 1 and len(client.requests) == 1


def test_server_echo_of_secrets_is_scrubbed_from_errors(lab):
    lab.set_faults([{'status': 400, 'body': '<pre>you sent {"password": "%s"} with Bearer %s</pre>' % (PASSWORD, TOKEN)}])
    client = client_for(lab.url)
    client.add_secret(PASSWORD)
    with pytest.raises(AdminAPIError) as caught:
        client.request('POST', '/users', body={'email': EMAIL, 'password': PASSWORD, 'role': 'CompanionPC'})
    message = str(caught.value)
    assert 'HTTP 400 from POST /users' in message and 'you sent' in message
    assert PASSWORD not in message and MASK in message


def test_token_is_scrubbed_without_being_added_explicitly(lab):
    lab.set_faults([{'status': 500, 'body': 'token %s rejected' % TOKEN}])
    client = client_for(lab.url, api_token=TOKEN, retries=0)
    with pytest.raises(AdminAPIError) as caught:
        client.request('GET', '/users')
    assert TOKEN not in str(caught.value) and 'token ' + MASK + ' rejected' in str(caught.value)


def test_non_json_body_is_quoted_short_and_sanitised(lab):
    lab.set_faults([{'method': 'GET', 'status': 200, 'body': '<html><title>Login</title>' + 'x' * 500 + '</html>'}])
    client = client_for(lab.url)
    with pytest.raises(AdminAPIError) as caught:
        client.request('GET', '/users', want_json=True)
    message = str(caught.value)
    assert caught.value.kind == 'json'
    assert 'is not JSON' in message and '<html><title>Login</title>' in message and 'x' * 300 not in message
    assert 'text/html' in message


def test_timeout_is_retried_then_reported(lab):
    lab.set_faults([{'latency': 0.4}])
    client = client_for(lab.url, timeout=0.1, retries=1)
    with pytest.raises(AdminAPIError) as caught:
        client.request('GET', '/users')
    assert caught.value.kind == 'timeout' and caught.value.attempts == 2
    assert 'raise timeout' in str(caught.value)


def test_dropped_reply_is_retried(lab):
    lab.set_faults([{'method': 'GET', 'drop': 'before', 'times': 1}])
    client = client_for(lab.url)
    assert client.request('GET', '/users').status == 200
    assert [call['status'] for call in client.requests] == [None, 200]


def test_connection_refused_names_the_url():
    server = LabAdminAPI().start()
    url = server.url
    server.stop()
    client = client_for(url, retries=1)
    with pytest.raises(AdminAPIError) as caught:
        client.request('GET', '/users')
    assert caught.value.kind == 'refused' and caught.value.attempts == 2
    assert 'is the admin API running at %s?' % url in str(caught.value)
    assert 'after 2 attempts' in str(caught.value)


def test_dns_failure_is_reported_as_such():
    client = client_for('http://admin-api.invalid', retries=0)
    with pytest.raises(AdminAPIError) as caught:
        client.request('GET', '/users')
    assert caught.value.kind == 'dns'
    assert 'admin-api.invalid does not resolve' in str(caught.value)


class _RetryAfterHandler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    answers = []

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        status, headers = self.answers.pop(0)
        body = b'{"message": "slow down"}' if status != 200 else b'[]'
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_retry_after_on_429_and_503_is_honoured():
    _RetryAfterHandler.answers = [(429, {'Retry-After': '2'}), (503, {'Retry-After': '999'}),
                                  (502, {'Retry-After': '5'}), (200, {})]
    server = ThreadingHTTPServer(('127.0.0.1', 0), _RetryAfterHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
    thread.start()
    try:
        waits = []
        client = client_for('http://127.0.0.1:%d' % server.server_address[1], retry_backoff=0.25,
                            sleep=waits.append, rand=lambda: 1.0)
        assert client.request('GET', '/users').status == 200
    finally:
        server.shutdown()
        server.server_close()
    # 2 s as asked; 999 s capped at 30; Retry-After on a 502 is not honoured: jitter ceiling 0.25 * 2**2
    assert waits == [2.0, 30.0, 1.0]


def test_redirects_are_not_followed(lab):
    lab.set_faults([{'status': 301}])
    client = client_for(lab.url)
    with pytest.raises(AdminAPIError) as caught:
        client.request('POST', '/users', body={})
    assert caught.value.status == 301 and 'set api_url to the final URL' in str(caught.value)


# ---------------------------------------------------------------------------------------------
# TLS

@pytest.fixture(scope='module')
def pki(tmp_path_factory):
    trustme = pytest.importorskip('trustme')
    directory = tmp_path_factory.mktemp('pki')
    ca = trustme.CA()
    server = ca.issue_cert('localhost', '127.0.0.1')
    station = ca.issue_cert('station.azaion.test')
    paths = dict((name, str(directory / name)) for name in
                 ('ca.pem', 'server.crt', 'server.key', 'station.crt', 'station.key'))
    ca.cert_pem.write_to_path(paths['ca.pem'])
    server.cert_chain_pems[0].write_to_path(paths['server.crt'])
    server.private_key_pem.write_to_path(paths['server.key'])
    station.cert_chain_pems[0].write_to_path(paths['station.crt'])
    station.private_key_pem.write_to_path(paths['station.key'])
    return paths


def test_tls_with_private_ca(pki):
    with LabAdminAPI(tls_cert=pki['server.crt'], tls_key=pki['server.key']) as server:
        assert server.url.startswith('https://')
        response = client_for(server.url, ca_path=pki['ca.pem']).request('GET', '/users', want_json=True)
        assert response.data == []
        untrusted = client_for(server.url)
        with pytest.raises(AdminAPIError) as caught:
            untrusted.request('GET', '/users')
    assert caught.value.kind == 'tls' and 'ca_path' in str(caught.value)
    assert len(untrusted.requests) == 1  # a verification failure is not retried


def test_tls_with_required_client_certificate(pki):
    with LabAdminAPI(tls_cert=pki['server.crt'], tls_key=pki['server.key'], client_ca=pki['ca.pem']) as server:
        client = client_for(server.url, ca_path=pki['ca.pem'], client_cert=pki['station.crt'],
                            client_key=pki['station.key'])
        assert client.request('GET', '/users').status == 200
        anonymous = client_for(server.url, ca_path=pki['ca.pem'], retries=0)
        with pytest.raises(AdminAPIError) as caught:
            anonymous.request('GET', '/users')
        assert len(server.request_log()) == 1  # only the authenticated request reached the API
    assert caught.value.kind in ('tls', 'connection')
    assert 'set client_cert and client_key' in str(caught.value)


def test_tls_files_carried_from_the_controller_are_used_from_memory_and_never_written(pki, tmp_path, monkeypatch):
    def content(name):
        with open(pki[name]) as pem:
            return pem.read()

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))  # where a temporary file would go
    with LabAdminAPI(tls_cert=pki['server.crt'], tls_key=pki['server.key'], client_ca=pki['ca.pem']) as server:
        client = client_for(server.url, ca_content=content('ca.pem'), client_cert_content=content('station.crt'),
                            client_key_content=content('station.key'))
        assert client.request('GET', '/users').status == 200
        assert len(server.request_log()) == 1
    assert os.listdir(str(tmp_path)) == []


def test_in_memory_files_are_readable_in_the_block_only_and_leave_none_as_none():
    with in_memory_files('first\n', None, 'second') as paths:
        assert paths[1] is None
        with open(paths[0]) as first, open(paths[2]) as second:
            assert (first.read(), second.read()) == ('first\n', 'second')
        assert paths[0].startswith('/proc/self/fd/')
    assert not os.path.exists(paths[0])


def test_a_bad_tls_content_names_its_source_not_its_text(pki):
    with pytest.raises(AdminAPIError) as caught:
        client_for('https://127.0.0.1:9', client_cert_content='not a certificate', client_key_content='not a key')
    assert caught.value.kind == 'config'
    assert 'client_cert=from the controller' in str(caught.value) and 'not a key' not in str(caught.value)


# ---------------------------------------------------------------------------------------------
# keep-alive: one connection per thread

def test_keep_alive_sends_every_request_over_one_connection():
    with LabAdminAPI(token=TOKEN) as server:
        client = client_for(server.url + '/', api_token=TOKEN, keep_alive=True)
        assert client.keep_alive is True
        body = {'email': EMAIL, 'password': PASSWORD, 'role': 'CompanionPC'}
        assert client.request('POST', '/users', body=body, expected=(201, 409)).status == 201
        assert client.request('POST', '/users', body=body, expected=(201, 409)).status == 409
        response = client.request('GET', '/users', query={'searchEmail': EMAIL}, want_json=True)
        assert response.data == [{'id': 1, 'email': EMAIL, 'role': 'CompanionPC'}]
        assert client.request('PATCH', '/users/password', body={'email': EMAIL, 'password': PASSWORD}).status == 200
        assert server.connection_count() == 1
        client.close()
    assert [call['status'] for call in client.requests] == [201, 409, 200, 200]


def test_keep_alive_reconnects_after_the_server_restarts(lab):
    client = client_for(lab.url, keep_alive=True)
    assert client.request('GET', '/users').status == 200
    lab.stop()  # closes the kept connection, as a real restart does
    lab.start()
    assert client.request('GET', '/users').status == 200
    # the dead connection fails one attempt, retried on a new one
    assert [call['status'] for call in client.requests] == [200, None, 200]
    assert lab.connection_count() == 2


def test_keep_alive_retries_a_dropped_reply_and_a_timeout_on_a_new_connection(lab):
    lab.set_faults([{'method': 'GET', 'drop': 'before', 'times': 1}])
    client = client_for(lab.url, keep_alive=True, timeout=0.2)
    assert client.request('GET', '/users').status == 200
    lab.set_faults([{'method': 'POST', 'latency': 0.5, 'times': 1}])
    # the late answer to the first attempt must not be read as the answer to the second
    response = client.request('POST', '/users', body={'email': EMAIL, 'password': PASSWORD, 'role': 30},
                              expected=(201, 409), want_json=True)
    assert response.status in (201, 409)
    assert [call['status'] for call in client.requests] == [None, 200, None, response.status]
    assert lab.connection_count() == 3


def test_keep_alive_errors_are_those_of_a_plain_client(lab):
    lab.set_faults([{'status': 301}])
    client = client_for(lab.url, keep_alive=True)
    with pytest.raises(AdminAPIError) as caught:
        client.request('POST', '/users', body={})
    assert caught.value.status == 301 and 'set api_url to the final URL' in str(caught.value)
    lab.set_faults([{'status': 500, 'body': 'password %s rejected' % PASSWORD}])
    client.add_secret(PASSWORD)
    with pytest.raises(AdminAPIError) as caught:
        client.request('GET', '/users')
    assert 'after 4 attempts' in str(caught.value) and PASSWORD not in str(caught.value)
    assert lab.connection_count() == 1  # error answers keep the connection


def test_keep_alive_is_shared_by_threads_with_one_connection_each(lab):
    client = client_for(lab.url, keep_alive=True)
    logs = [[] for dummy in range(4)]

    def work(log, number):
        for attempt in range(5):
            client.add_secret('%032x' % (number * 100 + attempt))  # while other threads scrub
            client.request('GET', '/users', calls=log)

    threads = [threading.Thread(target=work, args=(log, number)) for number, log in enumerate(logs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.close()
    assert [len(log) for log in logs] == [5, 5, 5, 5]
    assert len(client.requests) == 20 and all(call['status'] == 200 for call in client.requests)
    assert lab.connection_count() == 4


def test_keep_alive_tls_with_required_client_certificate(pki):
    with LabAdminAPI(tls_cert=pki['server.crt'], tls_key=pki['server.key'], client_ca=pki['ca.pem']) as server:
        client = client_for(server.url, ca_path=pki['ca.pem'], client_cert=pki['station.crt'],
                            client_key=pki['station.key'], keep_alive=True)
        for dummy in range(3):
            assert client.request('GET', '/users').status == 200
        assert server.connection_count() == 1
        untrusted = client_for(server.url, keep_alive=True)
        with pytest.raises(AdminAPIError) as caught:
            untrusted.request('GET', '/users')
    assert caught.value.kind == 'tls' and 'ca_path' in str(caught.value)
    assert len(untrusted.requests) == 1  # a verification failure is not retried


def test_keep_alive_is_left_to_urllib_through_a_proxy(monkeypatch):
    for name in ('no_proxy', 'NO_PROXY', 'http_proxy', 'HTTP_PROXY'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('https_proxy', 'http://proxy.example.com:3128')
    assert client_for('https://admin.example.com', keep_alive=True).keep_alive is False
    assert client_for('http://admin.example.com', keep_alive=True).keep_alive is True
    assert client_for('http://user:secret@admin.example.com', keep_alive=True).keep_alive is False
