"""The secret sweep over the identity role, and the admin API over HTTPS and mTLS."""

import os
import threading

import trustme

from conftest import assert_ok
from lab.admin_api import LabAdminAPI

CALLBACK_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'callback_plugins')


class ProcessArgumentWatcher:
    """Reads every process's command line while a run goes on (secrets must not be there)."""

    def __init__(self):
        self.seen = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self):
        while not self._stop.wait(0.02):
            for pid in os.listdir('/proc'):
                if pid.isdigit():
                    try:
                        with open('/proc/%s/cmdline' % pid, 'rb') as cmdline:
                            self.seen.add(cmdline.read().replace(b'\0', b' '))
                    except OSError:
                        pass

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()


def everything_written_under(directory, skip_name='device.conf'):
    """The bytes of every file under ``directory``, device.conf aside (it holds the secret)."""
    for root, _dirs, files in os.walk(directory):
        for name in files:
            if name != skip_name:
                with open(os.path.join(root, name), 'rb') as written:
                    yield os.path.join(root, name), written.read()


def test_no_password_or_token_in_anything_a_run_prints_or_writes(make_batch, tmp_path):
    batch = make_batch(4, extra_vars={'identity_api_retries': 6})
    log_file = tmp_path / 'ansible.log'
    events_file = tmp_path / 'events.jsonl'
    tree_dir = tmp_path / 'tree'
    sweep_env = {
        'ANSIBLE_LOG_PATH': str(log_file),
        'ANSIBLE_CALLBACK_PLUGINS': CALLBACK_DIR,
        'ANSIBLE_CALLBACKS_ENABLED': 'ansible.builtin.tree,record_events',
        'ANSIBLE_CALLBACK_TREE_DIR': str(tree_dir),
        'ANSIBLE_LOAD_CALLBACK_PLUGINS': '1',
        'RECORD_EVENTS_PATH': str(events_file),
    }
    outputs = []
    passwords = set()
    with ProcessArgumentWatcher() as watcher:
        # 1. create, through retries; 2. one device.conf lost: regenerate and PATCH;
        # 3. a rotation with --diff in check mode and for real; 4. the API down: errors.
        batch.api.set_faults([{'method': 'POST', 'status': 503, 'times': 2}, {'method': 'POST', 'drop': 'after', 'times': 1}])
        outputs.append(batch.run('-vvvv', '--diff', **sweep_env))
        passwords.update(batch.conf(device)['AZAION_DEVICE_PASSWORD'] for device in batch.devices)
        os.unlink(batch.conf_path('AZJN-0001'))
        outputs.append(batch.run('-vvvv', '--diff', **sweep_env))
        passwords.update(batch.conf(device)['AZAION_DEVICE_PASSWORD'] for device in batch.devices)
        outputs.append(batch.run('-vvvv', '--diff', '--check', '-e', 'identity_rotate=true', **sweep_env))
        outputs.append(batch.run('-vvvv', '--diff', '-e', 'identity_rotate=true', **sweep_env))
        passwords.update(batch.conf(device)['AZAION_DEVICE_PASSWORD'] for device in batch.devices)
        batch.api.stop()
        outputs.append(batch.run('-vvvv', '--diff', '-e', 'identity_rotate=true', '-e', 'identity_api_retries=0', **sweep_env))
        passwords.update(batch.conf(device)['AZAION_DEVICE_PASSWORD'] for device in batch.devices)

    for result in outputs[:4]:
        assert_ok(result)
    assert outputs[4].returncode != 0
    assert len(passwords) == 4 * 3 + 1  # created 4, regenerated 1, rotated 4, rotated 4 again
    # The sweep must see what it searches: a diff, the module results, the events, the tree.
    haystacks = [('stdout', result.stdout.encode()) for result in outputs]
    haystacks += [('stderr', result.stderr.encode()) for result in outputs]
    haystacks += [('ansible.log', log_file.read_bytes()), ('events', events_file.read_bytes())]
    haystacks += list(everything_written_under(str(tree_dir)))
    haystacks += list(everything_written_under(batch.workdir))
    haystacks += [('process arguments', b'\n'.join(watcher.seen))]
    joined = b'\n'.join(text for _name, text in haystacks)
    assert b'AZAION_DEVICE_PASSWORD=********' in joined  # the diff was there, masked
    assert b'password_updated' in joined and b'"action": "created"' in joined
    assert len(list(everything_written_under(str(tree_dir)))) == 4
    assert len(watcher.seen) > 10
    for secret in sorted(passwords) + [batch.token]:
        leaks = [name for name, text in haystacks if secret.encode() in text]
        assert leaks == [], 'a secret leaked into %s' % leaks


def test_https_with_a_test_ca_and_a_required_client_certificate(make_batch, tmp_path):
    authority = trustme.CA()
    server_cert = authority.issue_cert('localhost', '127.0.0.1')
    client_cert = authority.issue_cert('flash-station-01.factory.example.com')
    paths = {}
    for name, blob in (('ca.pem', authority.cert_pem), ('server.pem', server_cert.private_key_and_cert_chain_pem),
                       ('client.pem', client_cert.cert_chain_pems[0]), ('client.key', client_cert.private_key_pem)):
        paths[name] = str(tmp_path / name)
        blob.write_to_path(paths[name])
    batch = make_batch(2)
    with LabAdminAPI(token=batch.token, tls_cert=paths['server.pem'], tls_key=paths['server.pem'],
                     client_ca=paths['ca.pem']) as tls_api:
        batch.api = tls_api
        assert tls_api.url.startswith('https://')
        batch.group_vars.update(identity_ca_path=paths['ca.pem'])
        batch.write_inventory()
        without_client_cert = batch.run()
        assert without_client_cert.returncode != 0
        assert tls_api.users() == {}

        batch.group_vars.update(identity_client_cert=paths['client.pem'], identity_client_key=paths['client.key'])
        batch.write_inventory()
        assert_ok(batch.run())
        assert sorted(tls_api.users()) == ['azaion-jetson-0001@azaion.com', 'azaion-jetson-0002@azaion.com']


def test_https_with_an_unknown_ca_is_a_clear_error(make_batch, tmp_path):
    authority = trustme.CA()
    server_cert = authority.issue_cert('localhost')
    server_pem = str(tmp_path / 'server.pem')
    server_cert.private_key_and_cert_chain_pem.write_to_path(server_pem)
    batch = make_batch(1)
    with LabAdminAPI(token=batch.token, tls_cert=server_pem, tls_key=server_pem) as tls_api:
        batch.api = tls_api
        result = batch.run()
    assert result.returncode != 0
    assert 'ca_path' in result.stdout, result.stdout[-3000:]
