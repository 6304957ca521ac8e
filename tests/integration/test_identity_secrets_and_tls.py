"""The secret sweep over the identity role, and the admin API over HTTPS and mTLS."""

import os
import secrets

import trustme

from conftest import assert_ok
from lab import labkit
from lab.admin_api import LabAdminAPI
from sweep import ProcessArgumentWatcher, everything_written_under, sweep_env


def test_no_password_or_token_in_anything_a_run_prints_or_writes(make_batch, tmp_path):
    batch = make_batch(4, extra_vars={'identity_api_retries': 6})
    log_file, events_file, tree_dir = tmp_path / 'ansible.log', tmp_path / 'events.jsonl', tmp_path / 'tree'
    sweep_vars = sweep_env(log_file, events_file, tree_dir)
    outputs = []
    passwords = set()
    with ProcessArgumentWatcher() as watcher:
        # 1. create, through retries; 2. one device.conf lost: regenerate and PATCH;
        # 3. a rotation with --diff in check mode and for real; 4. the API down: errors.
        batch.api.set_faults([{'method': 'POST', 'status': 503, 'times': 2}, {'method': 'POST', 'drop': 'after', 'times': 1}])
        outputs.append(batch.run('-vvvv', '--diff', **sweep_vars))
        passwords.update(batch.conf(device)['AZAION_DEVICE_PASSWORD'] for device in batch.devices)
        os.unlink(batch.conf_path('AZJN-0001'))
        outputs.append(batch.run('-vvvv', '--diff', **sweep_vars))
        passwords.update(batch.conf(device)['AZAION_DEVICE_PASSWORD'] for device in batch.devices)
        outputs.append(batch.run('-vvvv', '--diff', '--check', '-e', 'identity_rotate=true', **sweep_vars))
        outputs.append(batch.run('-vvvv', '--diff', '-e', 'identity_rotate=true', **sweep_vars))
        passwords.update(batch.conf(device)['AZAION_DEVICE_PASSWORD'] for device in batch.devices)
        batch.api.stop()
        outputs.append(batch.run('-vvvv', '--diff', '-e', 'identity_rotate=true', '-e', 'identity_api_retries=0', **sweep_vars))
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


def test_the_token_and_the_tls_files_as_files_on_the_controller_never_reach_an_argument_an_event_or_a_disk(
        make_batch, tmp_path):
    """As an AWX credential gives them: each secret in a file on the controller, named by a
    *_FILE variable, and none of them in the run's environment."""
    authority = trustme.CA()
    server_cert = authority.issue_cert('localhost', '127.0.0.1')
    client_cert = authority.issue_cert('flash-station-01.factory.example.com')
    controller = tmp_path / 'controller-credentials'
    controller.mkdir()
    server_pem = str(tmp_path / 'server.pem')
    server_cert.private_key_and_cert_chain_pem.write_to_path(server_pem)
    files = {}
    for variable, blob in (('AZAION_ADMIN_API_CA_FILE', authority.cert_pem),
                           ('AZAION_ADMIN_API_CLIENT_CERT_FILE', client_cert.cert_chain_pems[0]),
                           ('AZAION_ADMIN_API_CLIENT_KEY_FILE', client_cert.private_key_pem)):
        files[variable] = str(controller / variable.lower())
        blob.write_to_path(files[variable])
    batch = make_batch(2)
    files['AZAION_ADMIN_API_TOKEN_FILE'] = str(controller / 'token')
    with open(files['AZAION_ADMIN_API_TOKEN_FILE'], 'w') as token_file:
        token_file.write(batch.token + '\n')  # as an editor leaves it
    token, batch.token = batch.token, None  # not in the environment
    key = client_cert.private_key_pem.bytes().decode().strip().splitlines()[1]  # a line of the key itself
    log_file, events_file, tree_dir = tmp_path / 'ansible.log', tmp_path / 'events.jsonl', tmp_path / 'tree'
    with LabAdminAPI(token=token, tls_cert=server_pem, tls_key=server_pem, client_ca=files['AZAION_ADMIN_API_CA_FILE']) as tls_api:
        batch.api = tls_api
        with ProcessArgumentWatcher() as watcher:
            result = batch.run('-vvvv', **dict(sweep_env(log_file, events_file, tree_dir), **files))
        assert_ok(result)
        users = tls_api.users()
    assert sorted(users) == ['azaion-jetson-0001@azaion.com', 'azaion-jetson-0002@azaion.com']
    haystacks = [('stdout', result.stdout.encode()), ('stderr', result.stderr.encode()),
                 ('ansible.log', log_file.read_bytes()), ('events', events_file.read_bytes()),
                 ('process arguments', b'\n'.join(watcher.seen))]
    haystacks += list(everything_written_under(str(tree_dir))) + list(everything_written_under(batch.workdir))
    haystacks += list(everything_written_under(os.path.join(batch.root, 'rootfs')))
    # The sweep sees what it searches: the key's option in the module's arguments, masked.
    assert b'"client_key_content": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"' in b''.join(text for _name, text in haystacks)
    for secret in [token, key] + [user['password'] for user in users.values()]:
        leaks = [name for name, text in haystacks if secret.encode() in text]
        assert leaks == [], 'a secret leaked into %s' % leaks


def test_an_unreadable_token_file_is_refused_before_anything_is_written_naming_the_variable(make_batch, tmp_path):
    batch = make_batch(1)
    batch.token = None
    missing = str(tmp_path / 'no-such-token')
    result = batch.run(AZAION_ADMIN_API_TOKEN_FILE=missing)
    assert result.returncode != 0
    assert 'AZAION_ADMIN_API_TOKEN_FILE names the file %s, which cannot be read on the controller' % missing in result.stdout
    assert batch.api.request_log() == [] and not os.path.exists(batch.conf_path('AZJN-0001'))


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


def test_a_module_given_a_url_with_a_password_is_refused_on_the_controller(admin_api, api_token, tmp_path):
    """The second line behind the batch check: a task that passes such a URL itself never
    reaches the module (whose arguments travel to the station)."""
    password = 'url-' + secrets.token_hex(8)
    rootfs = tmp_path / 'rootfs'
    labkit.make_rootfs(str(rootfs))
    playbook = tmp_path / 'direct.yml'
    playbook.write_text('''
- hosts: localhost
  gather_facts: false
  tasks:
    - azaion.jetson.companion_user:
        device_conf: "%s/etc/azaion/device.conf"
        api_url: "%s"
''' % (rootfs, admin_api.url.replace('://', '://ops:%s@' % password)))
    result = labkit.run_playbook('localhost,', playbook=str(playbook), env={'AZAION_ADMIN_API_TOKEN': api_token})
    assert result.returncode != 0
    assert 'api_url has user info before its host (%s with "user:password@" left out)' % admin_api.url in result.stdout
    assert password not in result.stdout + result.stderr
    assert admin_api.request_log() == []
