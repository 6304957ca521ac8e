"""A provisioning batch over the lab, for the suites that run the provision playbook end to end
(tests/integration and tests/chaos): a lab station with devices on ports, an inventory over
it, a way to run the playbook, and what the suites check after a run. Also the lab admin API
fixtures both suites use (a conftest imports them)."""

import hashlib
import json
import os
import secrets
import subprocess
import sys

import pytest

from lab import keys, l4t_bundle, l4t_host, labkit
from lab.admin_api import LabAdminAPI


def fuse_variables(directory, fuses=None, sbk=False):
    """A device's inventory variables that ask for fusing, right for its keys: an ECDSA P-256 PKC
    key of its own in ``directory``, and a fuse XML burning that key's PublicKeyHash,
    BootSecurityInfo 0x202 and SecurityMode (or ``fuses``, {name: value}). With ``sbk``, an SBK
    key file too (not burned by the default fuses). Returns (variables, the configured fuses)."""
    pkc_key = keys.make_pkc_key(os.path.join(directory, 'pkc.pem'), 'ecp256')
    configured = fuses or {'PublicKeyHash': keys.pkc_key_hash(pkc_key), 'BootSecurityInfo': '0x202',
                           'SecurityMode': '0x1'}
    fuse_xml = l4t_bundle.write_fuse_config(os.path.join(directory, 'fuses.xml'), configured)
    variables = {'jetson_fuse_enabled': True, 'jetson_fuse_config': fuse_xml, 'jetson_pkc_key': pkc_key}
    if sbk:
        variables['jetson_sbk_key'] = os.path.join(directory, 'sbk.key')
        keys.make_sbk_key(variables['jetson_sbk_key'])
    return variables, configured


@pytest.fixture
def api_token():
    return secrets.token_hex(16)


@pytest.fixture
def admin_api(api_token):
    with LabAdminAPI(token=api_token) as api:
        yield api


class ProvisionBatch:
    """A lab station with devices on ports, an inventory over it, and a way to run the playbook."""

    def __init__(self, root, api, token, ports, flash_seconds=0.0, serials=None, extra_vars=None, host_vars=None,
                 boot_seconds=0.2, apply_seconds=0.0):
        self.api = api
        self.token = token
        self.lab = labkit.FactoryLab(root, ports, flash_seconds=flash_seconds, boot_seconds=boot_seconds,
                                     apply_seconds=apply_seconds)
        self.lab.start_loaders(api.url)
        self.serials = serials or dict((port, 'AZJN-%04d' % (index + 1)) for index, port in enumerate(ports))
        self.default_user_password = secrets.token_hex(12)
        self.secrets_file = str(root) + '-secrets.json'  # beside the lab: the sweep searches the lab
        with open(self.secrets_file, 'w') as secrets_vars:
            json.dump({'jetson_default_user_password': self.default_user_password}, secrets_vars)
        self.inventory = os.path.join(str(root), 'hosts.yml')
        self.group_vars = dict(self.lab.group_vars(), identity_api_retry_backoff=0.05, verify_health_timeout=30)
        self.group_vars.update(extra_vars or {})
        self.station_vars = None  # the station's own host variables (localhost)
        self.host_vars = dict((serial, self.lab.host_vars(port)) for port, serial in self.serials.items())
        for serial, extra in (host_vars or {}).items():
            self.host_vars[serial].update(extra)
        self.write_inventory()

    def write_inventory(self):
        labkit.write_inventory(self.inventory, self.host_vars, self.group_vars, station_vars=self.station_vars)

    def command(self, args, env):
        environment = {'AZAION_ADMIN_API_URL': self.api.url, 'AZAION_ADMIN_API_TOKEN': self.token,
                       'ANSIBLE_FORKS': '12'}
        environment.update(env)
        # A secret given on the command line would be in the process arguments: a vars file.
        return list(args) + ['-e', '@' + self.secrets_file], environment

    def run(self, *args, **env):
        args, environment = self.command(args, env)
        result = labkit.run_playbook(self.inventory, args=args, env=environment)
        result.recap = labkit.play_recap(result.stdout)
        return result

    def start(self, *args, **env):
        """The playbook in the background, in a process group of its own (to be killed whole)."""
        args, environment = self.command(args, env)
        command = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', self.inventory,
                   os.path.join(labkit.PLAYBOOKS_DIR, 'provision.yml')] + args
        return subprocess.Popen(command, env=labkit.ansible_env(environment), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def flash_state(self, serial):
        with open(os.path.join(self.lab.workdir, 'devices', serial, 'state.json')) as state:
            return json.load(state)['phases']['flash']

    def flash_runs(self, port=None):
        return [run for run in l4t_bundle.flash_runs(self.lab.lab_state) if port in (None, run['usb_instance'])]

    def holds_its_own_identity(self):
        """Every device's storage holds its own device.conf, and its account has that password."""
        users = self.api.users()
        for port, serial in self.serials.items():
            conf = labkit.read_device_conf(self.lab.storage(port))
            email = 'azaion-jetson-%s@azaion.com' % serial.rsplit('-', 1)[1]
            assert conf['AZAION_DEVICE_EMAIL'] == email, port
            assert users[email]['password'] == conf['AZAION_DEVICE_PASSWORD'], port
        return True

    def passwords_at_rest(self):
        """serial -> every file of the lab (station, host root, devices' storage) that holds the
        device's password, as paths relative to the lab. Links are not followed."""
        users = self.api.users()
        passwords = dict((serial, users['azaion-jetson-%s@azaion.com' % serial.rsplit('-', 1)[1]]['password'].encode())
                         for serial in self.serials.values())
        found = dict((serial, []) for serial in passwords)
        for root, _dirs, files in os.walk(self.lab.root):
            for name in files:
                path = os.path.join(root, name)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                with open(path, 'rb') as content:
                    data = content.read()
                for serial, password in passwords.items():
                    if password in data:
                        found[serial].append(os.path.relpath(path, self.lab.root))
        return found

    def passwords_only_where_they_belong(self):
        """Each device's password is in its port tree's device.conf and on its storage (both slots
        of an A/B rootfs), and in no other file of the lab."""
        found = self.passwords_at_rest()
        for port, serial in self.serials.items():
            belong = {
                os.path.relpath(os.path.join(self.lab.workdir, 'ports', port, 'Linux_for_Tegra', 'rootfs', 'etc', 'azaion',
                                             'device.conf'), self.lab.root),
                os.path.relpath(os.path.join(self.lab.storage(port), 'etc', 'azaion', 'device.conf'), self.lab.root),
                # An A/B rootfs's second slot on the device.
                os.path.relpath(os.path.join(self.lab.storage(port) + '.b', 'etc', 'azaion', 'device.conf'), self.lab.root),
            }
            assert set(found[serial]) <= belong, (serial, sorted(set(found[serial]) - belong))
        return True

    def generations(self):
        """The image generations the lab's tools ran."""
        return [call for call in self.tool_calls('l4t_initrd_flash_internal.sh') if '--no-flash' in call['argv']]

    def station_is_clean(self):
        """Nothing of a flash is left on the station (see l4t_host.station_is_clean)."""
        return l4t_host.station_is_clean(self.lab.host_root, self.lab.workdir)

    def report(self):
        with open(os.path.join(self.lab.workdir, 'reports', 'batch.json')) as report:
            return dict((row['serial'], row) for row in json.load(report)['devices'])

    def tool_calls(self, tool):
        return [call for call in l4t_bundle.tool_calls(self.lab.lab_state) if call['tool'] == tool]


def tree_checksums(top):
    """relpath -> sha256 of every regular file under ``top`` (not links, FIFOs or devices)."""
    sums = {}
    for root, _dirs, files in os.walk(top):
        for name in files:
            path = os.path.join(root, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, 'rb') as content:
                    sums[os.path.relpath(path, top)] = hashlib.sha256(content.read()).hexdigest()
    return sums
