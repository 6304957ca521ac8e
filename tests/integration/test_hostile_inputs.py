"""Hostile inputs through the real azaion.jetson.provision: each is refused up front, naming the
device, the variable and the fix, showing no secret, with nothing written anywhere.

One lab per case (a station with Jetsons in recovery mode on ports 1-1 and 1-2, or on 1-1 alone
for the fuse cases: fusing with two Jetsons in recovery is refused for its own reason), one
bad input in it, one playbook run. The bad input is on AZJN-0002 when it belongs to a device
(AZJN-0001 is a good device that must not be written either), in the group's variables when it
belongs to the station or the batch, or in the controller's environment.

The contract for a refusal message: ``<device>: <variable> ... ; <fix>``, the fix an imperative
clause after "; " or ": " (see FIX_VERBS).
"""

import json
import os
import re
import secrets
import subprocess
import sys

import pytest

from lab import l4t_bundle, labkit
from lab.batch import ProvisionBatch, fuse_variables, tree_checksums

FIX_VERBS = ('set', 'use', 'give', 'remove', 'unset', 'export', 'make', 'move', 'choose', 'put', 'install', 'fix',
             'plug', 'rename', 'correct')
FIX = re.compile(r'(?:; |: )(?:%s)\b' % '|'.join(FIX_VERBS))
BAD = 'AZJN-0002'  # the device that carries a device's bad input
GOOD = 'AZJN-0001'
TWO_PORTS = {'1-1': '7523', '1-2': '7523'}  # Orin Nano 8GB on both; the lab's keyboard is on 1-3
ONE_PORT = {'1-1': '7523'}


class HostileBatch(ProvisionBatch):
    """A ProvisionBatch whose controller environment a case can change or empty, whose
    inventory a case can reshape, and whose playbook runs from ``cwd`` (relative paths land
    there, inside the test's directory, never in the checkout)."""

    def __init__(self, root, api, token, ports, **kwargs):
        self.env, self.unset_env, self.reshape = {}, set(), None
        self.cwd = str(root)
        super().__init__(os.path.join(str(root), 'lab'), api, token, ports, **kwargs)

    def write_inventory(self):
        super().write_inventory()
        if self.reshape:
            with open(self.inventory) as inventory_file:
                inventory = json.load(inventory_file)
            with open(self.inventory, 'w') as inventory_file:
                json.dump(self.reshape(inventory), inventory_file, indent=2)

    def run(self, *args, **env):
        args, environment = self.command(args, dict(self.env, **env))
        environment = labkit.ansible_env(environment)
        for name in self.unset_env:
            environment.pop(name, None)
        command = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', self.inventory,
                   os.path.join(labkit.PLAYBOOKS_DIR, 'provision.yml')] + list(args)
        return subprocess.run(command, env=environment, cwd=self.cwd, capture_output=True, text=True, timeout=600,
                              check=False)

    def device(self, name=BAD):
        return self.host_vars[name]


def random_part():
    return secrets.token_hex(6)


# -- the cases -----------------------------------------------------------------------------------
# Each setup gets the batch and the test's directory, makes the one bad input, and returns the
# secrets that must not show (or None).

def device_var(variable, value):
    def setup(batch, _tmp):
        batch.device()[variable] = value(batch) if callable(value) else value
    return setup


def group_var(variable, value):
    def setup(batch, _tmp):
        batch.group_vars[variable] = value(batch) if callable(value) else value
    return setup


def env_var(variable, value):
    def setup(batch, _tmp):
        batch.env[variable] = value(batch) if callable(value) else value
    return setup


def rename_device(new_name):
    def setup(batch, _tmp):
        batch.host_vars[new_name] = batch.host_vars.pop(BAD)
    return setup


def rootfs_alias_by_symlink(batch, tmp):
    real = labkit.make_rootfs(os.path.join(str(tmp), 'rootfs-a'))
    alias = os.path.join(str(tmp), 'rootfs-b')
    os.symlink(real, alias)
    batch.device(GOOD)['jetson_rootfs_dir'] = real
    batch.device(BAD)['jetson_rootfs_dir'] = alias


def rootfs_alias_by_spelling(batch, tmp):
    real = labkit.make_rootfs(os.path.join(str(tmp), 'rootfs-a'))
    batch.device(GOOD)['jetson_rootfs_dir'] = real
    batch.device(BAD)['jetson_rootfs_dir'] = os.path.join(str(tmp), 'rootfs-a', '.', '')


def rootfs_in_the_workdir(*parts):
    """A device's own rootfs set to a tree the station makes itself under its workdir: another
    port's tree (written by that port's device) or the staging shared by every port."""
    def setup(batch, _tmp):
        batch.device()['jetson_rootfs_dir'] = os.path.join(batch.lab.workdir, *parts)
    return setup


def relative_rootfs(batch, tmp):
    # It exists relative to the run's working directory: a relative path that "works" here.
    labkit.make_rootfs(os.path.join(str(tmp), 'rootfs', BAD))
    batch.device()['jetson_rootfs_dir'] = os.path.join('rootfs', BAD)


def rootfs_is_a_file(batch, tmp):
    path = os.path.join(str(tmp), 'rootfs-file')
    with open(path, 'w') as rootfs_file:
        rootfs_file.write('not a directory\n')
    batch.device()['jetson_rootfs_dir'] = path


def relative_l4t_dir(batch, _tmp):
    # The lab's bundle, relative to the run's working directory (it exists there).
    batch.group_vars['jetson_l4t_dir'] = os.path.relpath(batch.lab.bundle, batch.cwd)


def not_a_bundle(batch, tmp):
    empty = os.path.join(str(tmp), 'empty', 'Linux_for_Tegra')
    os.makedirs(empty)
    batch.group_vars['jetson_l4t_dir'] = empty


def password_url(variable, where, base):
    """``variable`` set to ``base`` with ``user:<password>@`` in front of its host."""
    def setup(batch, _tmp):
        password = 'pw' + secrets.token_hex(10)
        url = base(batch).replace('://', '://factory:%s@' % password, 1)
        if where == 'env':
            batch.env[variable] = url
        elif where == 'group':
            batch.group_vars[variable] = url
        else:
            batch.device()[variable] = url
        return [password]
    return setup


def api_url(batch):
    return batch.api.url


def api_port(batch):
    return batch.api.url.rsplit(':', 1)[1]


def loader_url(batch):
    return batch.lab.loaders.url('1-2')


def loader_port(batch):
    return loader_url(batch).rsplit(':', 1)[1]


def token_in_query(batch, _tmp):
    token = secrets.token_hex(16)
    batch.group_vars['azaion_admin_api_url'] = '%s/?access_token=%s' % (batch.api.url, token)
    return [token]


def unset_api_url(batch, _tmp):
    batch.unset_env.add('AZAION_ADMIN_API_URL')
    batch.group_vars.pop('azaion_admin_api_url', None)


def token_env(make):
    def setup(batch, _tmp):
        token = make()
        batch.env['AZAION_ADMIN_API_TOKEN'] = token
        return [token]
    return setup


def token_inventory(make):
    def setup(batch, _tmp):
        token = make()
        batch.group_vars['azaion_admin_api_token'] = token
        return [token['token'] if isinstance(token, dict) else token]
    return setup


def missing_token(batch, _tmp):
    batch.unset_env.add('AZAION_ADMIN_API_TOKEN')
    batch.group_vars.pop('azaion_admin_api_token', None)


def unset_loader_url(batch, _tmp):
    del batch.device()['jetson_loader_url']


def fuse_ready(tmp, **fuse_vars):
    """A device's fuse variables that are right: a fuse XML and a PKC key, enabled."""
    ready, _configured = fuse_variables(str(tmp))
    ready.update(fuse_vars)
    return ready


def fuse_case(**bad):
    """The only device (on 1-1) to be fused, with everything right but ``bad``; a value may be a
    function of the test's directory (a file made there)."""
    def setup(batch, tmp):
        values = dict((name, value(str(tmp)) if callable(value) else value) for name, value in bad.items())
        batch.device(GOOD).update(fuse_ready(tmp, **values))
    return setup


def missing_file(name):
    return lambda tmp: os.path.join(tmp, name)


def text_file(name, text):
    def make(tmp):
        path = os.path.join(tmp, name)
        with open(path, 'w') as handle:
            handle.write(text)
        return path
    return make


def fuse_xml_with_magic(tmp):
    path = l4t_bundle.write_fuse_config(os.path.join(tmp, 'wrong-magic.xml'))
    with open(path) as config:
        text = config.read().replace(l4t_bundle.FUSE_MAGIC, '0x12345678')
    with open(path, 'w') as config:
        config.write(text)
    return path


def fuse_xml_with_unknown_fuse(tmp):
    return l4t_bundle.write_fuse_config(os.path.join(tmp, 'unknown-fuse.xml'),
                                        {'PublicKeyHash': '0x' + '5a' * 64, 'NoSuchFuse': '0x1'})


def empty_jetsons_group(inventory):
    inventory['jetsons']['hosts'] = {}
    return inventory


def no_jetsons_group(inventory):
    inventory['factory'] = inventory.pop('jetsons')
    return inventory


def reshape(change):
    def setup(batch, _tmp):
        batch.reshape = change
    return setup


def workdir_in_bundle(batch, _tmp):
    batch.group_vars['jetson_workdir'] = os.path.join(batch.lab.bundle, 'azaion-work')


class Case:
    def __init__(self, case_id, setup, variables, device=BAD, ports=None):
        self.id = case_id
        self.setup = setup
        # Any one of these names is the variable (an inventory variable or its environment twin).
        self.variables = (variables,) if isinstance(variables, str) else tuple(variables)
        # The device the message must name: one name, a pair (a clash of two devices), or None
        # for the station's or the batch's settings and the controller's environment.
        self.device = device
        self.ports = ports or TWO_PORTS


SERIAL, HOST_NAME = 'jetson_serial', ('jetson_serial', 'inventory_hostname', 'host name')
PORT, BOARD, ROOTFS = 'jetson_usb_instance', 'jetson_board', 'jetson_rootfs_dir'
API_URL, API_URL_ENV = 'azaion_admin_api_url', 'AZAION_ADMIN_API_URL'
TOKEN, TOKEN_ENV = 'azaion_admin_api_token', 'AZAION_ADMIN_API_TOKEN'
LOADER, CONCURRENCY, BATCH_NAME = 'jetson_loader_url', 'jetson_flash_concurrency', 'jetson_batch_name'
FUSE_ENABLED, FUSE_CONFIG = 'jetson_fuse_enabled', 'jetson_fuse_config'

CASES = [
    # serials
    Case('serial-leading-space', device_var(SERIAL, ' AZJN-0002'), SERIAL),
    Case('serial-trailing-space', device_var(SERIAL, 'AZJN-0002 '), SERIAL),
    Case('serial-trailing-tab', device_var(SERIAL, 'AZJN-0002\t'), SERIAL),
    Case('serial-newline', device_var(SERIAL, 'AZJN-0002\nAZJN-0003'), SERIAL),
    Case('serial-non-ascii-letter', device_var(SERIAL, 'AZJ\u00d1-0002'), SERIAL),
    Case('serial-non-ascii-digits', device_var(SERIAL, 'AZJN-\u0660\u0660\u0660\u0662'), SERIAL),
    Case('serial-slash', device_var(SERIAL, 'AZJN/X-0002'), SERIAL),
    Case('serial-dotdot', device_var(SERIAL, '..'), SERIAL),
    Case('serial-empty', device_var(SERIAL, ''), SERIAL),
    Case('serial-blank', device_var(SERIAL, '   '), SERIAL),
    Case('serial-too-long', device_var(SERIAL, 'AZJN-' + '7' * 300), SERIAL),
    Case('serial-semicolon', device_var(SERIAL, 'AZJN-0002;reboot'), SERIAL),
    Case('serial-command-substitution', device_var(SERIAL, '$(reboot)-0002'), SERIAL),
    Case('serial-backticks', device_var(SERIAL, '`reboot`-0002'), SERIAL),
    Case('serial-another-device-in-lower-case', device_var(SERIAL, 'azjn-0001'), SERIAL, device=(GOOD, BAD)),
    Case('serial-int', device_var(SERIAL, 2), SERIAL),
    Case('serial-dict', device_var(SERIAL, {'serial': 'AZJN-0002'}), SERIAL),
    Case('serial-list', device_var(SERIAL, ['AZJN-0002']), SERIAL),
    Case('host-name-non-ascii', rename_device('AZJ\u00d1-0002'), HOST_NAME, device='AZJ\u00d1-0002'),
    Case('host-name-shell-metacharacters', rename_device('AZJN;reboot-0002'), HOST_NAME, device='AZJN;reboot-0002'),
    # USB ports
    Case('port-leading-space', device_var(PORT, ' 1-2'), PORT),
    Case('port-inner-space', device_var(PORT, '1 -2'), PORT),
    Case('port-semicolon', device_var(PORT, '1-2;reboot'), PORT),
    Case('port-trailing-dash', device_var(PORT, '1-'), PORT),
    Case('port-letters', device_var(PORT, 'abc'), PORT),
    Case('port-bus-zero', device_var(PORT, '0-1'), PORT),
    Case('port-devpath-zero', device_var(PORT, '1-2.0'), PORT),
    Case('port-climbs', device_var(PORT, '../1-2'), PORT),
    Case('port-int', device_var(PORT, 2), PORT),
    Case('port-list', device_var(PORT, ['1-2']), PORT),
    Case('port-nothing-plugged', device_var(PORT, '1-7'), PORT),
    Case('port-keyboard-not-a-jetson', device_var(PORT, '1-3'), PORT),
    # boards
    Case('board-unknown', device_var(BOARD, 'orin-nano-16gb'), BOARD),
    Case('board-not-the-module-on-its-port', device_var(BOARD, 'agx-orin-64gb'), (BOARD, PORT)),
    Case('board-dict', device_var(BOARD, {'name': 'orin-nano-8gb'}), BOARD),
    # paths
    Case('rootfs-relative', relative_rootfs, ROOTFS),
    Case('rootfs-station-root', device_var(ROOTFS, '/'), ROOTFS),
    Case('rootfs-inside-the-bundle', device_var(ROOTFS, lambda batch: os.path.join(batch.lab.bundle, 'rootfs')), ROOTFS),
    Case('rootfs-missing', device_var(ROOTFS, lambda batch: os.path.join(batch.cwd, 'no-such-rootfs')), ROOTFS),
    Case('rootfs-a-file', rootfs_is_a_file, ROOTFS),
    Case('rootfs-dict', device_var(ROOTFS, lambda batch: {'path': batch.cwd}), ROOTFS),
    Case('rootfs-aliases-through-a-symlink', rootfs_alias_by_symlink, ROOTFS, device=(GOOD, BAD)),
    Case('rootfs-aliases-by-spelling', rootfs_alias_by_spelling, ROOTFS, device=(GOOD, BAD)),
    Case('rootfs-is-another-ports-tree', rootfs_in_the_workdir('ports', '1-1', 'Linux_for_Tegra', 'rootfs'), ROOTFS,
         device=(GOOD, BAD)),
    Case('rootfs-is-the-shared-staging', rootfs_in_the_workdir('staging', 'Linux_for_Tegra', 'rootfs'), ROOTFS),
    Case('workdir-inside-the-bundle', workdir_in_bundle, 'jetson_workdir', device=None),
    Case('workdir-relative', group_var('jetson_workdir', 'station'), 'jetson_workdir', device=None),
    Case('workdir-list', group_var('jetson_workdir', lambda batch: [batch.lab.workdir]), 'jetson_workdir', device=None),
    Case('l4t-dir-missing', group_var('jetson_l4t_dir', lambda batch: batch.lab.bundle + '-missing'), 'jetson_l4t_dir',
         device=None),
    Case('l4t-dir-relative', relative_l4t_dir, 'jetson_l4t_dir', device=None),
    Case('l4t-dir-not-a-bundle', not_a_bundle, 'jetson_l4t_dir', device=None),
    Case('usb-sysfs-root-missing', group_var('jetson_usb_sysfs_root', lambda batch: os.path.join(batch.cwd, 'no-sysfs')),
         'jetson_usb_sysfs_root', device=None),
    # the admin API's URL
    Case('api-url-ftp', group_var(API_URL, lambda batch: 'ftp://127.0.0.1:' + api_port(batch)), API_URL, device=None),
    Case('api-url-no-scheme', group_var(API_URL, lambda batch: '127.0.0.1:' + api_port(batch)), API_URL, device=None),
    Case('api-url-no-host', group_var(API_URL, 'http://'), API_URL, device=None),
    Case('api-url-space', group_var(API_URL, lambda batch: 'http://127.0.0.1 :' + api_port(batch)), API_URL, device=None),
    Case('api-url-password', password_url(API_URL, 'group', api_url), API_URL, device=None),
    Case('api-url-token-in-query', token_in_query, API_URL, device=None),
    Case('api-url-dict', group_var(API_URL, lambda batch: {'url': batch.api.url}), API_URL, device=None),
    Case('api-url-env-ftp', env_var(API_URL_ENV, lambda batch: 'ftp://127.0.0.1:' + api_port(batch)), API_URL_ENV,
         device=None),
    Case('api-url-env-password', password_url(API_URL_ENV, 'env', api_url), API_URL_ENV, device=None),
    Case('api-url-unset', unset_api_url, (API_URL, API_URL_ENV), device=None),
    # the Loaders' URLs
    Case('loader-url-ftp', device_var(LOADER, lambda batch: 'ftp://127.0.0.1:' + loader_port(batch)), LOADER),
    Case('loader-url-no-scheme', device_var(LOADER, lambda batch: '127.0.0.1:' + loader_port(batch)), LOADER),
    Case('loader-url-no-host', device_var(LOADER, 'http://'), LOADER),
    Case('loader-url-space', device_var(LOADER, lambda batch: 'http://127.0.0.1 :' + loader_port(batch)), LOADER),
    Case('loader-url-password', password_url(LOADER, 'device', loader_url), LOADER),
    Case('loader-url-list', device_var(LOADER, lambda batch: [loader_url(batch)]), LOADER),
    Case('loader-url-unset', unset_loader_url, LOADER),
    # the admin API's token
    Case('token-env-empty', env_var(TOKEN_ENV, ''), TOKEN_ENV, device=None),
    Case('token-env-newline', token_env(lambda: random_part() + '\n' + random_part()), TOKEN_ENV, device=None),
    Case('token-env-spaces', token_env(lambda: random_part() + ' ' + random_part()), TOKEN_ENV, device=None),
    Case('token-env-non-ascii', token_env(lambda: random_part() + '\u00e9\u00df' + random_part()), TOKEN_ENV,
         device=None),
    Case('token-missing', missing_token, (TOKEN, TOKEN_ENV), device=None),
    Case('token-inventory-newline', token_inventory(lambda: random_part() + '\n' + random_part()), TOKEN, device=None),
    Case('token-inventory-non-ascii', token_inventory(lambda: random_part() + '\u00e9\u00df' + random_part()), TOKEN,
         device=None),
    Case('token-inventory-dict', token_inventory(lambda: {'token': secrets.token_hex(16)}), TOKEN, device=None),
    # numbers
    Case('concurrency-zero', group_var(CONCURRENCY, 0), CONCURRENCY, device=None),
    Case('concurrency-negative', group_var(CONCURRENCY, -1), CONCURRENCY, device=None),
    Case('concurrency-letters', group_var(CONCURRENCY, 'abc'), CONCURRENCY, device=None),
    Case('concurrency-above-massflash-limit', group_var(CONCURRENCY, 11), CONCURRENCY, device=None),
    Case('concurrency-fraction', group_var(CONCURRENCY, 1.5), CONCURRENCY, device=None),
    Case('concurrency-bool', group_var(CONCURRENCY, True), CONCURRENCY, device=None),
    # fuse settings and keys (one device: fusing with two in recovery is refused for its own reason)
    Case('fuse-enabled-treu', device_var(FUSE_ENABLED, 'treu'), FUSE_ENABLED),
    Case('fuse-enabled-maybe', device_var(FUSE_ENABLED, 'maybe'), FUSE_ENABLED),
    Case('fuse-enabled-two', device_var(FUSE_ENABLED, 2), FUSE_ENABLED),
    Case('fuse-config-unset', fuse_case(jetson_fuse_config=''), FUSE_CONFIG, device=GOOD, ports=ONE_PORT),
    Case('fuse-config-missing', fuse_case(jetson_fuse_config=missing_file('no-fuses.xml')), FUSE_CONFIG, device=GOOD,
         ports=ONE_PORT),
    Case('fuse-config-not-xml', fuse_case(jetson_fuse_config=text_file('fuses.txt', 'PublicKeyHash=0x5a\n')),
         FUSE_CONFIG, device=GOOD, ports=ONE_PORT),
    Case('fuse-config-wrong-magic', fuse_case(jetson_fuse_config=fuse_xml_with_magic), FUSE_CONFIG, device=GOOD,
         ports=ONE_PORT),
    Case('fuse-config-unknown-fuse', fuse_case(jetson_fuse_config=fuse_xml_with_unknown_fuse), FUSE_CONFIG,
         device=GOOD, ports=ONE_PORT),
    Case('pkc-key-a-directory', fuse_case(jetson_pkc_key=lambda tmp: tmp), 'jetson_pkc_key', device=GOOD,
         ports=ONE_PORT),
    Case('pkc-key-missing', fuse_case(jetson_pkc_key=missing_file('no-pkc.pem')), 'jetson_pkc_key', device=GOOD,
         ports=ONE_PORT),
    Case('sbk-key-missing', fuse_case(jetson_sbk_key=missing_file('no-sbk.key')), 'jetson_sbk_key', device=GOOD,
         ports=ONE_PORT),
    # inventory shapes
    Case('jetsons-group-empty', reshape(empty_jetsons_group), 'jetsons', device=None),
    Case('jetsons-group-missing', reshape(no_jetsons_group), 'jetsons', device=None),
    Case('device-is-also-a-station', device_var('jetson_station', GOOD), 'jetson_station'),
    Case('batch-name-slash', group_var(BATCH_NAME, 'week/48'), BATCH_NAME, device=None),
    Case('batch-name-dotdot', group_var(BATCH_NAME, '..'), BATCH_NAME, device=None),
    Case('batch-name-spaces', group_var(BATCH_NAME, 'week 48'), BATCH_NAME, device=None),
    Case('batch-name-empty', group_var(BATCH_NAME, ''), BATCH_NAME, device=None),
]


# -- what a refusal must be ----------------------------------------------------------------------

def spellings(name):
    """A name as printed, and as printed inside JSON (escaped)."""
    return name, json.dumps(name)[1:-1]


def message_problems(output, device, variables, names):
    """Why ``output`` holds no refusal ``<device>: <variable> ... ; <fix>`` (an empty list
    when it does). ``names``: every device of the inventory, which end one device's message
    where the messages of several devices are joined on one line."""
    lines = output.splitlines()
    if device is None:
        messages = lines
    elif isinstance(device, tuple):  # a clash of two devices: one message naming both
        messages = [line for line in lines if all(any(spelled in line for spelled in spellings(name)) for name in device)]
    else:
        others = [spelled + ': ' for name in names if name != device for spelled in spellings(name)]
        messages = []
        for line in lines:
            for spelled in spellings(device):
                for start in [match.start() for match in re.finditer(re.escape(spelled + ': '), line)]:
                    message = line[start:]
                    ends = [message.find(other, 1) for other in others if message.find(other, 1) > 0]
                    messages.append(message[:min(ends)] if ends else message)
    if not messages:
        return ['the output does not name the device %s' % (device,)]
    naming = [message for message in messages if any(variable in message for variable in variables)]
    if not naming:
        return ['no message of %s names %s' % (device or 'the batch', ' or '.join(variables))]
    if not [message for message in naming if FIX.search(message)]:
        return ['its message names %s but gives no fix ("; <%s> ...")' % (' or '.join(variables), '|'.join(FIX_VERBS[:4]))]
    return []


def shown_secrets(output, secret_values):
    """The secrets that show in ``output``, whole or in part: any 8 characters in a row of one,
    as printed or JSON-escaped."""
    shown = []
    for secret in secret_values:
        for spelled in (secret, json.dumps(secret)[1:-1]):
            windows = [spelled[start:start + 8] for start in range(max(1, len(spelled) - 7))] if spelled else []
            if any(window and window in output for window in windows):
                shown.append(secret)
                break
    return shown


def first_error(output):
    """The first error of the run (Ansible's one-line "[ERROR]: ..." or a task's failure), for
    the failure's message."""
    lines = output.splitlines()
    errors = [line for line in lines if line.startswith('[ERROR]')]
    errors += [line for line in lines if 'FAILED!' in line or 'UNREACHABLE!' in line]
    return errors[0].strip()[:500] if errors else '(no error line)'


def everything_named(top, name):
    found = []
    for root, dirs, files in os.walk(top):
        found += [os.path.join(root, entry) for entry in files + dirs if entry == name]
    return found


STATION_OWN_DEVICE_CONF = '/etc/azaion/device.conf'  # where a rootfs of "/" would put one


def written(batch, tmp, bundle_before, station_conf_before):
    """What the run wrote that a refused batch must not have: device.conf files, state files,
    reports, admin API writes, tool calls, changes to the bundle."""
    found = []
    confs = everything_named(str(tmp), 'device.conf')
    if os.path.exists(STATION_OWN_DEVICE_CONF) and not station_conf_before:
        confs.append(STATION_OWN_DEVICE_CONF)
    found += ['device.conf at %s' % os.path.relpath(path, str(tmp)) for path in confs]
    for state in everything_named(str(tmp), 'state.json'):
        if os.path.basename(os.path.dirname(os.path.dirname(state))) == 'devices':
            found.append('state file %s' % os.path.relpath(state, str(tmp)))
    for reports in everything_named(str(tmp), 'reports'):
        if os.path.isdir(reports) and os.listdir(reports):
            found.append('report(s) %s' % sorted(os.listdir(reports)))
    api_calls = [(request['method'], request['path'], request['status']) for request in batch.api.request_log()
                 if (request['method'], request['status']) != ('GET', 401)]
    if api_calls:
        found.append('admin API requests %s' % api_calls[:4])
    tools = [call['tool'] for call in l4t_bundle.tool_calls(batch.lab.lab_state)]
    if tools:
        found.append('tool calls %s' % sorted(set(tools)))
    changed = set(tree_checksums(batch.lab.bundle).items()) ^ set(bundle_before.items())
    if changed:
        found.append('bundle files %s' % sorted(set(path for path, _sum in changed))[:4])
    return found


@pytest.mark.parametrize('case', CASES, ids=[case.id for case in CASES])
def test_a_hostile_input_is_refused_up_front_naming_the_device_the_variable_and_the_fix(
        case, tmp_path, admin_api, api_token):
    batch = HostileBatch(tmp_path, admin_api, api_token, case.ports,
                         extra_vars={'verify_health_timeout': 5, 'identity_api_retries': 1})
    try:
        hidden = case.setup(batch, tmp_path) or []
        batch.write_inventory()
        bundle_before = tree_checksums(batch.lab.bundle)
        station_conf_before = os.path.exists(STATION_OWN_DEVICE_CONF)
        result = batch.run()
    finally:
        batch.lab.stop_loaders()
    output = result.stdout + result.stderr

    problems = []
    if result.returncode == 0:
        problems.append('no refusal: the run succeeded')
    problems += message_problems(output, case.device, case.variables, list(batch.host_vars))
    shown = shown_secrets(output, hidden + [api_token, batch.default_user_password])
    if shown:
        problems.append('secret shown: %r' % shown)
    wrote = written(batch, tmp_path, bundle_before, station_conf_before)
    if wrote:
        problems.append('wrote ' + ', '.join(wrote))
    assert not problems, '%s | rc=%d | first error: %s' % ('; '.join(problems), result.returncode, first_error(output))
