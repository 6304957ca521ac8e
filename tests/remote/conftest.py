"""Remote stations over real SSH: three stations in network namespaces, each with its own sshd.

The set-up (``remote_factory``, once for the module) builds, on this machine:

* a bridge with a private /24 that nothing here uses yet (10.231.x.0/24), the controller at .1;
* per station a network namespace joined to the bridge by a veth pair, and an sshd (Debian's
  openssh-server) listening on the station's address only, in a MOUNT namespace of its own
  where the station's directory is bind-mounted at ``/srv/azaion-station``, the same path on
  every station and absent on the controller; the SSH user's home, root's ``~/.ansible`` and
  ``/tmp`` are the station's own too. A task that ran in the wrong place (on the controller,
  or on another station) would not find the station's bundle, devices or state;
* a non-root SSH user with passwordless sudo and a key made here; Ansible connects as that
  user and becomes root with ``--become``, with pipelining on, host keys checked;
* per station the lab (labkit.FactoryLab: fake L4T bundle, USB tree, host root, Loaders), built
  and served INSIDE the station's namespaces by ``station.py``, so its paths are the station's
  and its Loaders listen on the station's loopback (where the devices' USB network would be);
* the lab admin API on the controller, on the bridge address that every station reaches.

Everything is taken down at the end, also when a test fails; leftovers of a killed earlier run
(namespaces and links named ``azrt-*``, their processes) are removed first. The SSH user and
its sudoers entry stay (made once, reused). Needs root and network namespaces, else the suite
is skipped; openssh-server and sudo are installed with apt-get when missing. Run it in one
process (no pytest-xdist): the namespaces and links have fixed names.
"""

import contextlib
import ipaddress
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from lab import labkit
from lab.admin_api import LabAdminAPI
from lab.figures import figures_fixture, show_figures
from lab.processes import command_line

PREFIX = 'azrt'                      # names of the namespaces and links this suite makes
BRIDGE = PREFIX + '-br'
SSH_USER = 'azaion-test-ops'         # the non-root user Ansible connects as
SUDOERS_FILE = '/etc/sudoers.d/azaion-test-ops'
STATION_MOUNT = '/srv/azaion-station'  # the station's directory, as every station sees it
STATION_NAMES = ('station-a', 'station-b', 'station-c')
PORTS = {'1-1': '7523', '1-2': '7623'}  # the same USB ports on every station, as on a real floor
FLASH_SECONDS = 1.0
FLASH_CONCURRENCY = 2
# The stations' SSH keep-alive, as the collection's inventories/stations documents it.
SSH_KEEPALIVE = '-o ServerAliveInterval=15 -o ServerAliveCountMax=4'
SSHD = '/usr/sbin/sshd'
STATION_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'station.py')

# Run by `ip netns exec <ns> unshare --mount ... sh -ec SCRIPT sh <station dir>`: the station's
# private mounts, then its sshd, which every SSH session (and so every task) inherits them from.
# /tmp goes last: the station directory itself may lie under the controller's /tmp, and so may
# the checkout (with the venv that runs the station's lab), which stays visible at {checkout}.
SSHD_NAMESPACE_SCRIPT = '''
mount --make-rprivate /
mount -t tmpfs -o mode=0755 azaion-station-srv /srv
mkdir {mount} {checkout}
mount --bind "$1/srv" {mount}
mount --bind "$2" {checkout}
mount --bind "$1/home" {home}
mkdir -p /root/.ansible
mount --bind "$1/root-ansible" /root/.ansible
mount --bind "$1/tmp" /tmp
exec {sshd} -D -e -f {mount}/sshd/sshd_config
'''
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECKOUT_MOUNT = '/srv/azaion-test-checkout'


def in_station(path):
    """Where a path of the checkout is inside a station's namespaces."""
    if os.path.commonpath([REPO_ROOT, path]) == REPO_ROOT:
        return CHECKOUT_MOUNT + path[len(REPO_ROOT):]
    return path


SSHD_CONFIG = '''# sshd of the lab station {name} (tests/remote/conftest.py)
ListenAddress {address}:22
HostKey {mount}/sshd/host_key
AuthorizedKeysFile {mount}/sshd/authorized_keys
PidFile none
AllowUsers {user}
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
# The key files are root's, under the test's directories: not the user's own ~/.ssh.
StrictModes no
# DEBUG: the secret sweep searches the most the server can log.
LogLevel DEBUG
'''


def _run(*command, check=True):
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError('%s failed (exit %d): %s' % (' '.join(command), result.returncode,
                                                        (result.stdout + result.stderr).strip()))
    return result


# -- prerequisites ---------------------------------------------------------------------------------

def _require_root_and_namespaces():
    if os.geteuid() != 0:
        pytest.skip('the remote-station suite needs root (network namespaces, mounts, sshd)')
    if not shutil.which('ip') or not shutil.which('unshare') or not shutil.which('nsenter'):
        pytest.skip('the remote-station suite needs ip (iproute2), unshare and nsenter')
    probe = PREFIX + '-probe'
    added = _run('ip', 'netns', 'add', probe, check=False)
    _run('ip', 'netns', 'del', probe, check=False)
    if added.returncode != 0:
        pytest.skip('no network namespace support here: ip netns add said %s' % added.stderr.strip())


def _install_sshd_and_sudo():
    """openssh-server and sudo from the OS packages, when missing (Debian/Ubuntu only)."""
    if os.path.exists(SSHD) and shutil.which('sudo'):
        return
    if not shutil.which('apt-get'):
        pytest.fail('install openssh-server and sudo: the remote-station suite needs sshd and sudo')
    environment = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    for command in (['apt-get', 'update', '-qq'], ['apt-get', 'install', '-y', '-qq', 'openssh-server', 'sudo']):
        installed = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
        assert installed.returncode == 0, installed.stdout + installed.stderr


def _ensure_ssh_user():
    """The non-root SSH user, with passwordless sudo; made once and left for later runs."""
    try:
        pwd.getpwnam(SSH_USER)
    except KeyError:
        _run('useradd', '--create-home', '--shell', '/bin/bash', SSH_USER)
    # '*': no password to log in with, but not a locked account, which sshd without PAM refuses.
    _run('usermod', '--password', '*', SSH_USER)
    if not os.path.exists(SUDOERS_FILE):
        with open(SUDOERS_FILE + '.new', 'w') as sudoers:
            sudoers.write('# The SSH user of the azaion.jetson remote-station tests: Ansible\'s --become.\n'
                          '%s ALL=(ALL:ALL) NOPASSWD: ALL\n' % SSH_USER)
        os.chmod(SUDOERS_FILE + '.new', 0o440)
        _run('visudo', '-c', '-f', SUDOERS_FILE + '.new')
        os.replace(SUDOERS_FILE + '.new', SUDOERS_FILE)
    return pwd.getpwnam(SSH_USER)


# -- the network -------------------------------------------------------------------------------

def remove_leftovers():
    """What a killed earlier run left: our namespaces (and the processes in them), our bridge."""
    for line in _run('ip', 'netns', 'list').stdout.splitlines():
        namespace = line.split()[0] if line.strip() else ''
        if namespace.startswith(PREFIX + '-'):
            _kill_namespace_processes(namespace)
            _run('ip', 'netns', 'del', namespace, check=False)
    # A namespace outlives its deletion while a closing TCP socket in it still waits for its
    # peer; deleting our host-side links frees their names anyway.
    for name in os.listdir('/sys/class/net'):
        if name.startswith(PREFIX + '-'):
            _run('ip', 'link', 'del', name, check=False)


def _kill_namespace_processes(namespace):
    """SIGKILL every process in ``namespace`` (our sshd, its sessions, the station's lab)."""
    for _attempt in range(10):
        pids = [int(pid) for pid in _run('ip', 'netns', 'pids', namespace, check=False).stdout.split()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _networks_in_use():
    """Every IPv4 network this machine has an address in or a route to."""
    networks = []
    for line in _run('ip', '-4', '-o', 'addr', 'show').stdout.splitlines():
        match = re.search(r'\binet (\S+)', line)
        if match:
            networks.append(ipaddress.ip_interface(match.group(1)).network)
    for line in _run('ip', '-4', 'route', 'show', 'table', 'all').stdout.splitlines():
        words = line.split()
        if words and words[0] in ('local', 'broadcast', 'unicast', 'blackhole', 'unreachable', 'prohibit', 'throw'):
            words = words[1:]
        if words and words[0] != 'default':
            with contextlib.suppress(ValueError):
                networks.append(ipaddress.ip_network(words[0], strict=False))
    return networks


def pick_unused_subnet():
    """A 10.231.x.0/24 that overlaps no address or route of this machine."""
    in_use = _networks_in_use()
    for third in range(256):
        subnet = ipaddress.ip_network('10.231.%d.0/24' % third)
        if not any(subnet.overlaps(network) for network in in_use):
            return subnet
    raise RuntimeError('every 10.231.x.0/24 is in use here')


class Station:  # pylint: disable=too-many-instance-attributes
    """One remote station: its namespace, address, sshd, lab, and its directory on the controller
    (``host_dir``), whose ``srv`` the station sees at STATION_MOUNT."""

    def __init__(self, name, index, address, base_dir):
        self.name = name
        self.letter = name[-1]
        self.namespace = '%s-%s' % (PREFIX, self.letter)
        self.address = str(address)
        self.host_dir = os.path.join(base_dir, name)
        self.sshd_log = os.path.join(self.host_dir, 'sshd.log')
        self.lab_log = os.path.join(self.host_dir, 'lab.log')
        self.serials = dict((port, 'AZJN-%02d%02d' % (index + 1, number + 1)) for number, port in enumerate(PORTS))
        self.sshd = None
        self.lab = None
        self.info = None
        self.host_key = None

    def host_path(self, station_path):
        """Where a path of the station (under STATION_MOUNT) is on the controller."""
        relative = os.path.relpath(station_path, STATION_MOUNT)
        assert not relative.startswith('..'), station_path
        return os.path.join(self.host_dir, 'srv', relative)

    @property
    def lab_state(self):
        return self.host_path(self.info['lab_state'])

    @property
    def workdir(self):
        return self.host_path(self.info['station_settings']['jetson_workdir'])

    def storage(self, port):
        return os.path.join(self.lab_state, 'storage', port)

    def nsenter(self, *command):
        """``command`` inside this station's namespaces (those of its sshd)."""
        return ['nsenter', '--target', str(self.sshd.pid), '--mount', '--net', '--'] + list(command)

    def cut_off(self):
        """Pull the station's cable: its link on the bridge goes down, and every packet between
        it and the controller is lost, without a word to either side."""
        _run('ip', 'link', 'set', self.namespace, 'down')

    def reconnect(self):
        _run('ip', 'link', 'set', self.namespace, 'up')

    def kill_sshd(self):
        """SIGKILL every sshd process of the station (the server and each session), as a host
        that goes down would: the connections close, and what ran in a session loses its output.
        The station's lab (its Loaders) goes on."""
        namespace = _net_namespace(self.sshd.pid)
        for entry in os.listdir('/proc'):
            if entry.isdigit() and _net_namespace(int(entry)) == namespace and _process_name(int(entry)).startswith('sshd'):
                with contextlib.suppress(OSError):
                    os.kill(int(entry), signal.SIGKILL)
        self.sshd.wait(10)

    def restart_sshd(self):
        _launch_sshd(self)
        _wait_for_sshd(self)

    def ansible_processes(self):
        """The processes that Ansible runs on this station over SSH (sudo, sh and the module's
        Python, whose command lines hold Ansible's become marker), as (pid, command line)."""
        namespace = _net_namespace(self.sshd.pid)
        found = []
        for entry in os.listdir('/proc'):
            if entry.isdigit() and _net_namespace(int(entry)) == namespace:
                command = command_line(int(entry))
                if 'BECOME-SUCCESS-' in command or command.startswith(('/usr/bin/python3', 'python3')):
                    found.append((int(entry), command))
        return found


def _process_name(pid):
    try:
        with open('/proc/%d/comm' % pid) as comm:
            return comm.read().strip()
    except OSError:
        return ''


def _net_namespace(pid):
    try:
        return os.readlink('/proc/%d/ns/net' % pid)
    except OSError:
        return None


def _make_station_dirs(station, user):
    for sub, mode in (('srv/sshd', 0o755), ('home', 0o755), ('root-ansible', 0o700), ('tmp', 0o1777)):
        os.makedirs(os.path.join(station.host_dir, sub), exist_ok=True)
        os.chmod(os.path.join(station.host_dir, sub), mode)
    os.chown(os.path.join(station.host_dir, 'home'), user.pw_uid, user.pw_gid)


def _start_sshd(station, client_public_key):
    sshd_dir = os.path.join(station.host_dir, 'srv', 'sshd')
    _run('ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', station.name, '-f', os.path.join(sshd_dir, 'host_key'))
    with open(os.path.join(sshd_dir, 'host_key.pub')) as public_key:
        station.host_key = ' '.join(public_key.read().split()[:2])
    shutil.copyfile(client_public_key, os.path.join(sshd_dir, 'authorized_keys'))
    with open(os.path.join(sshd_dir, 'sshd_config'), 'w') as config:
        config.write(SSHD_CONFIG.format(name=station.name, address=station.address, mount=STATION_MOUNT, user=SSH_USER))
    _launch_sshd(station)


def _launch_sshd(station):
    """The station's sshd, in a mount namespace of its own (see SSHD_NAMESPACE_SCRIPT) in the
    station's network namespace; its log appended to."""
    os.makedirs('/run/sshd', exist_ok=True)  # Debian's sshd wants its privilege separation directory
    script = SSHD_NAMESPACE_SCRIPT.format(mount=STATION_MOUNT, checkout=CHECKOUT_MOUNT, home=pwd.getpwnam(SSH_USER).pw_dir,
                                          sshd=SSHD)
    with open(station.sshd_log, 'a') as log:
        # Every step execs the next: the process we hold is sshd itself.
        station.sshd = subprocess.Popen(
            ['ip', 'netns', 'exec', station.namespace, 'unshare', '--mount', '--propagation', 'unchanged', '--',
             '/bin/sh', '-ec', script, 'sh', station.host_dir, REPO_ROOT], stdout=log, stderr=subprocess.STDOUT)


def _wait_for_sshd(station, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        if station.sshd.poll() is not None:
            with open(station.sshd_log) as log:
                raise RuntimeError('the sshd of %s exited: %s' % (station.name, log.read()[-2000:]))
        with contextlib.suppress(OSError), socket.create_connection((station.address, 22), timeout=1):
            return
        assert time.monotonic() < deadline, 'the sshd of %s does not answer' % station.name
        time.sleep(0.1)


def _start_lab(station, admin_api_url):
    ports = ','.join('%s=%s' % item for item in PORTS.items())
    with open(station.lab_log, 'w') as log:
        station.lab = subprocess.Popen(
            station.nsenter(in_station(sys.executable), in_station(STATION_SCRIPT), '--root', STATION_MOUNT + '/lab', '--ports', ports,
                            '--flash-seconds', str(FLASH_SECONDS), '--admin-api-url', admin_api_url,
                            '--info-file', STATION_MOUNT + '/station.json'),
            stdout=log, stderr=subprocess.STDOUT)


def _wait_for_lab(station, timeout=60):
    info_file = os.path.join(station.host_dir, 'srv', 'station.json')
    deadline = time.monotonic() + timeout
    while not os.path.exists(info_file):
        if station.lab.poll() is not None:
            with open(station.lab_log) as log:
                raise RuntimeError('the lab of %s exited: %s' % (station.name, log.read()[-3000:]))
        assert time.monotonic() < deadline, 'the lab of %s did not start' % station.name
        time.sleep(0.1)
    with open(info_file) as info:
        station.info = json.load(info)


def close_ssh_masters(control_dir):
    """Ask each SSH master connection that Ansible left (ControlPersist) to exit."""
    for socket_name in os.listdir(control_dir):
        # An explicit socket path: the host name given is not used.
        subprocess.run(['ssh', '-o', 'ControlPath=' + os.path.join(control_dir, socket_name), '-O', 'exit', 'station'],
                       capture_output=True, check=False, timeout=10)


def _stop_station(station):
    """Stop the station's lab, then end every process in its namespace (sshd and its sessions)."""
    if station.lab is not None and station.lab.poll() is None:
        station.lab.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            station.lab.wait(10)
    _kill_namespace_processes(station.namespace)
    for process in (station.lab, station.sshd):
        if process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)


class RemoteFactory:  # pylint: disable=too-many-instance-attributes
    """The three stations, the admin API, the SSH key and known hosts, and the inventory."""

    def __init__(self, base_dir, subnet, admin_api, token):
        self.base_dir = base_dir
        self.subnet = subnet
        self.bridge_address = str(subnet.network_address + 1)
        self.api = admin_api
        self.token = token
        self.stations = [Station(name, index, subnet.network_address + 11 + index, base_dir)
                         for index, name in enumerate(STATION_NAMES)]
        self.key_file = os.path.join(base_dir, 'id_ed25519')
        self.known_hosts = os.path.join(base_dir, 'known_hosts')
        # Short: the socket path (ControlPath dir + 40-character hash) must stay under ~108 bytes.
        self.control_dir = tempfile.mkdtemp(prefix=PREFIX + '-cp-')
        self.inventory = os.path.join(base_dir, 'hosts.yml')
        self.report_dir = os.path.join(base_dir, 'controller-reports')  # the batch report comes home here
        self.default_user_password = secrets.token_hex(12)
        # A secret on the command line would be in the process arguments: a vars file.
        self.secrets_file = os.path.join(base_dir, 'secrets.json')
        with open(self.secrets_file, 'w') as secrets_vars:
            json.dump({'jetson_default_user_password': self.default_user_password}, secrets_vars)
        # The token as the recommended way gives it: a file on the controller, not the environment.
        self.token_file = os.path.join(base_dir, 'admin-api-token')
        with open(os.open(self.token_file, os.O_WRONLY | os.O_CREAT, 0o600), 'w') as token_file:
            token_file.write(token + '\n')

    def devices(self):
        """(station, port, serial) of every device of the batch."""
        return [(station, port, serial) for station in self.stations for port, serial in station.serials.items()]

    def write_inventory(self):
        """The AWX-ready shape (see inventories/stations/hosts.yml): stations are hosts with their connection
        and station settings; devices are in ``jetsons`` and in one group per station."""
        stations = {}
        for station in self.stations:
            stations[station.name] = dict(
                station.info['station_settings'],
                ansible_host=station.address, ansible_user=SSH_USER,
                ansible_ssh_private_key_file=self.key_file, ansible_become=True,
                ansible_ssh_common_args=SSH_KEEPALIVE,
                jetson_flash_concurrency=FLASH_CONCURRENCY)
        device_groups = {}
        for station in self.stations:
            device_groups[station.name.replace('-', '_') + '_devices'] = {
                'hosts': dict((serial, {'jetson_usb_instance': port, 'jetson_loader_url': station.info['loader_urls'][port]})
                              for port, serial in station.serials.items()),
                'vars': {'jetson_station': station.name},
            }
        batch_settings = dict(self.stations[0].info['batch_settings'], identity_api_retry_backoff=0.05,
                              verify_health_timeout=30, jetson_report_dir=self.report_dir)
        inventory = {'stations': {'hosts': stations},
                     'jetsons': {'children': device_groups, 'vars': batch_settings}}
        with open(self.inventory, 'w') as inventory_file:
            json.dump(inventory, inventory_file, indent=2)  # JSON is YAML
        return self.inventory

    def env(self, extra=None):
        """The controller's environment for a run over the stations."""
        environment = {
            'AZAION_ADMIN_API_URL': self.api.url,
            'AZAION_ADMIN_API_TOKEN_FILE': self.token_file,
            'ANSIBLE_FORKS': '12',
            'ANSIBLE_PIPELINING': 'True',
            # Discovered on each station (labkit's default is the controller's own python).
            'ANSIBLE_PYTHON_INTERPRETER': 'auto',
            'ANSIBLE_HOST_KEY_CHECKING': 'True',
            'ANSIBLE_SSH_ARGS': '-C -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=%s' % self.known_hosts,
            'ANSIBLE_SSH_CONTROL_PATH_DIR': self.control_dir,
        }
        environment.update(extra or {})
        return environment

    def start(self, *args, env=None):
        """The same run in the background, in a process group of its own (as a terminal's)."""
        command = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', self.inventory,
                   os.path.join(labkit.PLAYBOOKS_DIR, 'provision.yml'), '--become', '-e', '@' + self.secrets_file]
        return subprocess.Popen(command + list(args), env=labkit.ansible_env(self.env(env)), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def run(self, *args, env=None):
        """``ansible-playbook -i <inventory> azaion.jetson.provision --become <args>``, timed."""
        started = time.monotonic()
        result = labkit.run_playbook(self.inventory, args=['--become', '-e', '@' + self.secrets_file] + list(args),
                                     env=self.env(env))
        result.seconds = time.monotonic() - started
        result.recap = labkit.play_recap(result.stdout)
        return result


@pytest.fixture(scope='module')
def remote_factory(tmp_path_factory):
    """Three remote stations with two devices each, reached over SSH as a sudoer; taken down at the end."""
    _require_root_and_namespaces()
    _install_sshd_and_sudo()
    user = _ensure_ssh_user()
    remove_leftovers()
    base_dir = str(tmp_path_factory.mktemp('remote'))
    os.chmod(base_dir, 0o755)
    token = secrets.token_hex(16)
    subnet = pick_unused_subnet()
    undo = []
    try:
        _run('ip', 'link', 'add', BRIDGE, 'type', 'bridge')
        undo.append(lambda: _run('ip', 'link', 'del', BRIDGE, check=False))
        # A fixed MAC: a bridge otherwise takes the lowest of its ports', which changes as the
        # stations leave at the end, and the stations' ARP entries for the controller go stale
        # while their SSH connections close.
        _run('ip', 'link', 'set', BRIDGE, 'address', '02:00:0a:e7:%02x:01' % subnet.network_address.packed[2])
        _run('ip', 'addr', 'add', '%s/%d' % (subnet.network_address + 1, subnet.prefixlen), 'dev', BRIDGE)
        _run('ip', 'link', 'set', BRIDGE, 'up')
        admin_api = LabAdminAPI(host=str(subnet.network_address + 1), token=token).start()
        undo.append(admin_api.stop)
        factory = RemoteFactory(base_dir, subnet, admin_api, token)
        undo.append(lambda: shutil.rmtree(factory.control_dir, ignore_errors=True))
        _run('ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'azaion-remote-tests', '-f', factory.key_file)

        for station in factory.stations:
            _make_station_dirs(station, user)
            _run('ip', 'netns', 'add', station.namespace)
            undo.append(lambda station=station: _run('ip', 'netns', 'del', station.namespace, check=False))
            _run('ip', 'link', 'add', station.namespace, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', station.namespace)
            _run('ip', 'link', 'set', station.namespace, 'master', BRIDGE, 'up')
            _run('ip', '-n', station.namespace, 'addr', 'add', '%s/%d' % (station.address, subnet.prefixlen), 'dev', 'eth0')
            _run('ip', '-n', station.namespace, 'link', 'set', 'eth0', 'up')
            _run('ip', '-n', station.namespace, 'link', 'set', 'lo', 'up')
            undo.append(lambda station=station: _stop_station(station))
            _start_sshd(station, factory.key_file + '.pub')
        with open(factory.known_hosts, 'w') as known_hosts:
            known_hosts.writelines('%s %s\n' % (station.address, station.host_key) for station in factory.stations)
        for station in factory.stations:
            _wait_for_sshd(station)
            _start_lab(station, admin_api.url)
        for station in factory.stations:
            _wait_for_lab(station)
        factory.write_inventory()
        undo.append(lambda: close_ssh_masters(factory.control_dir))  # first, while the stations still answer
        yield factory
    finally:
        for step in reversed(undo):
            step()


figures = figures_fixture('remote')


def pytest_terminal_summary(terminalreporter):
    show_figures(terminalreporter, 'remote')
