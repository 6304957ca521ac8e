"""The lab's L4T doubles are as unkind as NVIDIA's initrd flash about HOST-WIDE state.

Separate Linux_for_Tegra trees do not make concurrent initrd flashes independent: device
instances and USB gadget interfaces, NFS exports, udev rules and board probes are shared by
every run on a station (docs/l4t-parallel-flash.md). These tests run the doubles as real
processes on one lab station (a fake USB bus, a host root, several trees) and pin both sides:
the pattern of overlapping single-device runs goes wrong, and the pattern the flash module is
built on (per-tree exports in /etc/exports.d, a service shim, the udev rules installed once,
the board identity in the environment, one device instance per concurrent slot) holds.
"""

import os
import shlex
import signal
import subprocess
import tarfile
import time

import pytest

from . import l4t_bundle as l4t
from . import l4t_host, usb_sysfs

NANO = 'jetson-orin-nano-devkit'
OUTER = 'tools/kernel_flash/l4t_initrd_flash.sh'
INTERNAL = 'tools/kernel_flash/l4t_initrd_flash_internal.sh'
FLASH = 'flash.sh'
# NVIDIA's standard Orin Nano NVMe command for r36, minus board and rootdev.
NVME_ARGS = ['--external-device', 'nvme0n1p1', '-c', 'tools/kernel_flash/flash_l4t_t234_nvme.xml',
             '-p', '-c bootloader/generic/cfg/flash_t234_qspi.xml', '--showlogs', '--network', 'usb0']
IDENTITY_VARIABLES = ('BOARDID', 'FAB', 'BOARDSKU', 'BOARDREV', 'CHIP_SKU', 'FUSELEVEL')
SKU = {'7523': '0003', '7623': '0004', '7323': '0000', '7423': '0001'}
# The chip SKU of each Orin NX / Nano BOARDSKU (docs/l4t-board-identity.md).
CHIP_SKU = {'0000': '00:00:00:D3', '0001': '00:00:00:D4', '0003': '00:00:00:D5', '0004': '00:00:00:D6'}
PERMISSION = l4t_host.NFS_EXPORT_OPTIONS
# A tools/kernel_flash/bin/service that keeps the NFS server running under the flashes in flight.
SERVICE_SHIM = ('#!/bin/sh\n# Keep the NFS server up: a restart would drop the exports of the flashes in flight.\n'
                'if [ "$1" = nfs-kernel-server ]; then exit 0; fi\nexit 0\n')

STARTED = []  # process groups started in the background, killed after each test whatever happened


@pytest.fixture(autouse=True)
def no_tool_outlives_its_test():
    yield
    while STARTED:
        process = STARTED.pop()
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.communicate()


def bare_env(**identity):
    """The environment without any board identity, plus ``identity``."""
    env = {key: value for key, value in os.environ.items() if key not in IDENTITY_VARIABLES}
    env.update(identity)
    return env


def identity_env(sku):
    """The board identity of an Orin Nano/NX module (NVIDIA's table: no BOARDREV), with its chip
    SKU: no generation probes any device, and the images carry the module's BPMP firmware."""
    return bare_env(BOARDID='3767', FAB='300', BOARDSKU=sku, CHIP_SKU=CHIP_SKU[sku], FUSELEVEL='fuselevel_production')


def output(result):
    return (result.stdout or '') + (result.stderr or '')


def wait_for(condition, timeout=20):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, 'timed out waiting for the lab'
        time.sleep(0.01)


class Station:
    """One lab station: a fake USB bus with Jetsons in recovery mode, the station's host root,
    a lab state, and as many Linux_for_Tegra trees as a test makes."""

    def __init__(self, root, ports):
        self.root = str(root)
        self.ports = dict(ports)
        self.state = os.path.join(self.root, 'lab-state')
        self.sysfs = usb_sysfs.make_usb_sysfs(os.path.join(self.root, 'sysfs'), self.ports)
        self.host = l4t_host.make_host_root(os.path.join(self.root, 'host'), self.state)

    def tree(self, name, conf=None, **bundle_options):
        """A tree of its own; ``conf`` is the device.conf its rootfs/ holds (a real directory)."""
        tree = l4t.make_bundle(os.path.join(self.root, name), self.state, self.sysfs, host_root=self.host,
                               **bundle_options)
        if conf is not None:
            directory = os.path.join(tree, 'rootfs', 'etc', 'azaion')
            os.makedirs(directory)
            with open(os.path.join(directory, 'device.conf'), 'w') as conf_file:
                conf_file.write(conf)
        return tree

    @staticmethod
    def command(tree, tool, args):
        return [os.path.join(tree, tool)] + [str(arg) for arg in args]

    def run(self, tree, tool, *args, env=None, timeout=60):
        return subprocess.run(self.command(tree, tool, args), cwd=tree, text=True, capture_output=True,
                              stdin=subprocess.DEVNULL, env=env or bare_env(), timeout=timeout, check=False)

    def start(self, tree, tool, *args, env=None):
        process = subprocess.Popen(self.command(tree, tool, args), cwd=tree, text=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env or bare_env(),
                                   start_new_session=True)
        STARTED.append(process)
        return process

    def host_run(self, program, *args):
        """Run one of the station's programs (usr/sbin/exportfs...) as a caller on the station would."""
        place = dict((os.path.basename(path), path) for path in l4t_host.HOST_PROGRAMS.values())[program]
        return subprocess.run([os.path.join(self.host, place)] + list(args), text=True, capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=30, check=False)

    def exported(self):
        return sorted((entry['dir'], entry['client']) for entry in l4t_host.exports(self.host))

    def in_recovery(self):
        return usb_sysfs.recovery_devices(self.sysfs)

    def device_conf(self, port):
        try:
            with open(os.path.join(l4t.device_storage(self.state, port), 'etc', 'azaion', 'device.conf')) as conf:
                return conf.read()
        except FileNotFoundError:
            return None

    def generate(self, tree, *options, env):
        """Generate a tree's flash images with the internal script; return its saved parameters."""
        result = self.run(tree, INTERNAL, '--no-flash', *options, *NVME_ARGS, NANO, 'internal', env=env)
        assert result.returncode == 0, output(result)
        with open(os.path.join(tree, 'tools', 'kernel_flash', 'initrdflashparam.txt')) as params:
            return shlex.split(params.read())  # the quotes go, as under the outer script's eval

    def install_rules_once(self):
        """NVIDIA's two host rules, installed once under the station's own names (copies)."""
        for name, text in l4t_host.NVIDIA_UDEV_RULES.items():
            with open(os.path.join(self.host, 'etc', 'udev', 'rules.d', 'azaion-' + name), 'w') as rule:
                rule.write(text)


def conf_of(name):
    return 'LOADER_EMAIL=%s@azaion.com\nLOADER_PASSWORD=secret-of-%s\n' % (name, name)


def write_service_shim(tree):
    path = os.path.join(tree, 'tools', 'kernel_flash', 'bin', 'service')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as shim:
        shim.write(SERVICE_SHIM)
    os.chmod(path, 0o755)


def write_exports_d(host, name, tree):
    """One persistent exports file per tree: what NVIDIA's runtime exports give, but in a file."""
    lines = ['%s %s(%s)\n' % (os.path.realpath(os.path.join(tree, sub)), l4t_host.FLASH_NETWORK, PERMISSION)
             for sub in ('rootfs', 'tools/kernel_flash')]
    with open(os.path.join(host, 'etc', 'exports.d', name + '.exports'), 'w') as exports_file:
        exports_file.write('# the flash of %s\n' % name + ''.join(lines))


# -- the station's host programs ----------------------------------------------------------------

def test_runtime_exports_vanish_on_restart_and_reexport_while_exports_d_stays(tmp_path):
    station = Station(tmp_path, {})
    keep, runtime = str(tmp_path / 'keep'), str(tmp_path / 'runtime')
    os.makedirs(keep)
    os.makedirs(runtime)
    with open(os.path.join(station.host, 'etc', 'exports.d', 'keep.exports'), 'w') as exports_file:
        exports_file.write('# kept\n\n%s fc00:1:1::/48(%s) 192.168.55.0/24(ro)\n' % (keep, PERMISSION))
    both = [(keep, '192.168.55.0/24'), (keep, 'fc00:1:1::/48')]

    assert station.host_run('exportfs', '-ra').returncode == 0
    assert station.exported() == both
    assert l4t_host.exports(station.host)[0]['options'] == PERMISSION
    added = station.host_run('exportfs', '-o', PERMISSION, '[fc00:1:1::/48]:' + runtime)
    assert added.returncode == 0, output(added)
    assert station.exported() == sorted(both + [(runtime, 'fc00:1:1::/48')])  # no brackets in the table
    listed = station.host_run('exportfs', '-v')
    assert runtime in listed.stdout and 'fc00:1:1::/48(%s)' % PERMISSION in listed.stdout

    assert station.host_run('service', 'nfs-kernel-server', 'restart').returncode == 0
    assert station.exported() == both
    station.host_run('exportfs', '-o', PERMISSION, '[fc00:1:1::/48]:' + runtime)
    assert station.host_run('exportfs', '-ra').returncode == 0
    assert station.exported() == both

    assert station.host_run('exportfs', '-u', '[fc00:1:1::/48]:' + keep).returncode == 0
    assert station.exported() == [(keep, '192.168.55.0/24')]
    assert station.host_run('exportfs', '-a').returncode == 0
    assert station.exported() == both
    assert station.host_run('exportfs', '-au').returncode == 0
    assert station.exported() == []

    assert station.host_run('service', 'nfs-kernel-server', 'stop').returncode == 0
    assert station.host_run('service', 'nfs-kernel-server', 'status').returncode == 3
    assert station.host_run('service', 'nfs-kernel-server', 'start').returncode == 0
    assert station.host_run('service', 'nfs-kernel-server', 'status').returncode == 0
    assert station.exported() == both
    assert station.host_run('service', 'network-manager', 'restart').returncode == 0

    missing = station.host_run('exportfs', '-o', PERMISSION, '[fc00:1:1::/48]:' + str(tmp_path / 'missing'))
    assert missing.returncode == 1 and 'Failed to stat' in missing.stderr
    assert station.host_run('udevadm', 'control', '--reload-rules').returncode == 0
    assert station.host_run('udevadm', 'trigger', '--action=add').returncode == 0
    assert station.host_run('udevadm', 'monitor').returncode != 0
    events = l4t_host.host_events(station.state)
    assert [event['program'] for event in events].count('service') == 6
    assert events[-1]['argv'] == ['monitor'] and events[-1]['program'] == 'udevadm'


def test_ip_shows_and_deletes_the_addresses_of_a_gadget_interface(tmp_path):
    station = Station(tmp_path, {})
    interface = os.path.join(station.host, 'sys', 'class', 'net', 'usb0')
    os.makedirs(interface)
    for name, value in (('operstate', 'up\n'), ('lab_addresses', 'fc00:1:1:0::1/64\nfe80::2\n')):
        with open(os.path.join(interface, name), 'w') as attribute:
            attribute.write(value)
    shown = station.host_run('ip', '-6', 'addr', 'show', 'dev', 'usb0')
    assert shown.returncode == 0 and 'inet6 fc00:1:1:0::1/64' in shown.stdout
    assert station.host_run('ip', '-6', 'addr', 'del', 'fc00:1:1:0::1/64', 'dev', 'usb0').returncode == 0
    with open(os.path.join(interface, 'lab_addresses')) as addresses:
        assert addresses.read() == 'fe80::2\n'
    again = station.host_run('ip', '-6', 'addr', 'del', 'fc00:1:1:0::1/64', 'dev', 'usb0')
    assert again.returncode == 2 and 'Cannot assign requested address' in again.stderr
    assert station.host_run('ip', '-6', 'addr', 'show', 'dev', 'usb9').returncode == 1
    assert [event['argv'][2] for event in l4t_host.host_events(station.state) if event['program'] == 'ip'] == [
        'show', 'del', 'del', 'show']


def test_the_outer_scripts_exit_trap_cleans_the_stations_exports_and_rules(tmp_path):
    station = Station(tmp_path, {'1-3': '7523'})
    tree = station.tree('a')
    nvidia, keep, other = str(tmp_path / 'nvidia'), str(tmp_path / 'keep'), str(tmp_path / 'other')
    for directory in (nvidia, keep, other):
        os.makedirs(directory)
    exports = os.path.join(station.host, 'etc', 'exports')
    with open(exports, 'a') as exports_file:
        exports_file.write('%s\n%s *(rw,sync)\n%s fc00::/16(ro)\n' % (l4t_host.NVIDIA_EXPORTS_MARK, nvidia, keep))
    with open(os.path.join(station.host, 'etc', 'exports.d', 'kept.exports'), 'w') as exports_file:
        exports_file.write('%s fc00:1:1::/48(%s)\n' % (other, PERMISSION))
    station.host_run('exportfs', '-ra')
    assert station.exported() == sorted([(nvidia, '*'), (keep, 'fc00::/16'), (other, 'fc00:1:1::/48')])
    station.install_rules_once()
    for name in l4t_host.NVIDIA_UDEV_RULES:  # as a run still flashing would have them
        os.symlink(os.path.join(tree, 'tools', 'kernel_flash', 'host_udev', name),
                   os.path.join(station.host, 'etc', 'udev', 'rules.d', name))

    # An image generation only; its own runtime exports and everyone's go when it exits.
    result = station.run(tree, OUTER, '--no-flash', *NVME_ARGS, NANO, 'internal', env=identity_env('0003'))
    assert result.returncode == 0, output(result)
    with open(exports) as exports_file:
        text = exports_file.read()
    assert text == l4t_host.EXPORTS_HEADER + '%s fc00::/16(ro)\n' % keep
    assert station.exported() == sorted([(keep, 'fc00::/16'), (other, 'fc00:1:1::/48')])
    assert l4t_host.udev_rules(station.host) == ['azaion-10-l4t-usb-msd.rules', 'azaion-99-l4t-host.rules']
    assert [event['argv'] for event in l4t_host.host_events(station.state)][-1] == ['-ra']


def test_a_station_without_nfs_kernel_server_cannot_initrd_flash(tmp_path):
    station = Station(tmp_path, {'1-3': '7523'})
    tree = station.tree('a')
    l4t_host.make_host_root(station.host, station.state, nfs_server=False)
    result = station.run(tree, INTERNAL, '--no-flash', *NVME_ARGS, NANO, 'internal', env=identity_env('0003'))
    assert result.returncode == 1
    assert 'ERROR nfs-kernel-server not found! To install - please run:  "sudo apt-get install nfs-kernel-server"' \
        in result.stdout
    assert not os.path.exists(os.path.join(tree, 'tools', 'kernel_flash', 'initrdflashparam.txt'))


# -- the internal script ------------------------------------------------------------------------

def test_generation_makes_a_boot_image_per_device_instance_and_packages_the_tree(tmp_path):
    station = Station(tmp_path, {'1-3': '7523'})
    tree = station.tree('a', conf=conf_of('a'))
    saved = station.generate(tree, '--massflash', '3', env=identity_env('0003'))
    assert saved == ['--external-device', 'nvme0n1p1', '-c', 'tools/kernel_flash/flash_l4t_t234_nvme.xml',
                     '--network', 'usb0', NANO, 'internal']
    kernel_flash = os.path.join(tree, 'tools', 'kernel_flash')
    with open(os.path.join(kernel_flash, 'initrdflashimgmap.txt')) as img_map:
        assert img_map.read() == 'flashimg0=boot0.img\nflashimg1=boot1.img\nflashimg2=boot2.img\n'
    assert all(os.path.isfile(os.path.join(tree, 'bootloader', 'boot%d.img' % index)) for index in range(3))
    # NVIDIA's package() copies the rootfs: the device.conf lies in the tree twice more.
    assert os.path.isfile(os.path.join(tree, 'mfi_' + NANO, 'rootfs', 'etc', 'azaion', 'device.conf'))
    with tarfile.open(os.path.join(tree, 'mfi_%s.tar.gz' % NANO)) as package:
        assert './mfi_%s/rootfs/etc/azaion/device.conf' % NANO in package.getnames()
    # Each generation runs the NFS prerequisites: a restart, then its own tree's exports.
    assert [event['argv'][:1] for event in l4t_host.host_events(station.state)] == [['nfs-kernel-server'], ['-o'], ['-o']]
    assert station.exported() == sorted([(os.path.join(tree, 'rootfs'), 'fc00:1:1::/48'),
                                         (kernel_flash, 'fc00:1:1::/48')])

    # Without --massflash: one device instance. (The map is rewritten; old boot images stay.)
    station.generate(tree, env=identity_env('0003'))
    with open(os.path.join(kernel_flash, 'initrdflashimgmap.txt')) as img_map:
        assert img_map.read() == 'flashimg0=boot0.img\n'


def test_flashing_a_device_instance_the_tree_was_not_generated_for_fails(tmp_path):
    station = Station(tmp_path, {'1-3': '7523'})
    tree = station.tree('a', conf=conf_of('a'))
    saved = station.generate(tree, env=identity_env('0003'))
    station.install_rules_once()
    result = station.run(tree, INTERNAL, '--usb-instance', '1-3', '--device-instance', '1', '--flash-only', *saved)
    assert result.returncode == 1
    assert 'bootloader/boot1.img is not found' in result.stdout and '--massflash' in result.stdout
    assert station.in_recovery() == {'1-3': '7523'} and l4t.flash_runs(station.state) == []


def test_options_after_the_first_positional_are_never_read(tmp_path):
    station = Station(tmp_path, {'1-3': '7523'})
    tree = station.tree('a', conf=conf_of('a'))
    saved = station.generate(tree, env=identity_env('0003'))
    station.install_rules_once()

    # --usb-instance after the saved parameters is never seen: nothing is booted, and the run
    # waits for any device that brings up instance 0's gadget. There is none.
    late = station.run(tree, INTERNAL, '--flash-only', *saved, '--usb-instance', '1-3')
    assert late.returncode == 1 and 'Timeout' in late.stdout
    assert station.in_recovery() == {'1-3': '7523'} and station.device_conf('1-3') is None

    # --device-instance 1 after the first positional is never seen: instance 0 is flashed (this
    # tree has no boot1.img, so reading it would have failed).
    ignored = station.run(tree, INTERNAL, '--usb-instance', '1-3', '--flash-only', *saved,
                          '--device-instance', '1', NANO, 'internal')
    assert ignored.returncode == 0, output(ignored)
    [run] = l4t.flash_runs(station.state)
    assert (run['usb_instance'], run['instance'], run['device'], run['exit']) == ('1-3', 0, '1-3', 0)
    assert station.device_conf('1-3') == conf_of('a')
    meta = l4t.device_meta(station.state, '1-3')
    assert (meta['instance'], meta['usb_instance'], meta['tree'], meta['tool']) == \
        ('0', '1-3', tree, 'l4t_initrd_flash_internal.sh')


def test_a_service_program_in_the_tree_stops_the_nfs_restart(tmp_path):
    station = Station(tmp_path, {'1-3': '7523'})
    tree_a, tree_b = station.tree('a'), station.tree('b')
    a_rootfs = (os.path.join(tree_a, 'rootfs'), 'fc00:1:1::/48')

    station.host_run('exportfs', '-o', PERMISSION, '[fc00:1:1::/48]:' + a_rootfs[0])
    station.generate(tree_b, env=identity_env('0003'))
    assert a_rootfs not in station.exported()  # b's restart dropped a's runtime export

    write_service_shim(tree_b)
    station.host_run('exportfs', '-o', PERMISSION, '[fc00:1:1::/48]:' + a_rootfs[0])
    restarts = [event['program'] for event in l4t_host.host_events(station.state)].count('service')
    station.generate(tree_b, env=identity_env('0003'))
    assert a_rootfs in station.exported()
    assert (os.path.join(tree_b, 'rootfs'), 'fc00:1:1::/48') in station.exported()
    assert [event['program'] for event in l4t_host.host_events(station.state)].count('service') == restarts


# -- board probes -------------------------------------------------------------------------------

def test_generation_probes_the_first_device_in_recovery_and_builds_for_its_module(tmp_path):
    station = Station(tmp_path, {'1-3': '7623', '1-4': '7523'})  # a Nano 4GB before the Nano 8GB
    tree = station.tree('a', conf=conf_of('a'))
    saved = station.generate(tree, '--usb-instance', '1-4', env=bare_env())
    probes = l4t_host.probes(station.state)
    # Three flash.sh runs (internal images, external images, RCM boot command), two probes each,
    # all of the FIRST device in recovery mode, not of the one the run was given.
    assert [(probe['kind'], probe['usb_instance'], probe['disrupted']) for probe in probes] == \
        [('fuselevel', '1-3', False), ('eeprom', '1-3', False)] * 3
    assert all(probe['tree'] == tree and probe['tool'] == 'l4t_initrd_flash_internal.sh' for probe in probes)

    station.install_rules_once()
    wrong = station.run(tree, INTERNAL, '--usb-instance', '1-4', '--device-instance', '0', '--flash-only', *saved)
    assert wrong.returncode == 1
    assert 'board mismatch: the flash images were generated for BOARDSKU 0004' in wrong.stdout
    assert station.in_recovery() == {'1-3': '7623', '1-4': '7523'}

    saved = station.generate(tree, env=identity_env('0003'))
    assert len(l4t_host.probes(station.state)) == 6  # no probe with the identity given
    right = station.run(tree, INTERNAL, '--usb-instance', '1-4', '--device-instance', '0', '--flash-only', *saved)
    assert right.returncode == 0, output(right)
    assert station.device_conf('1-4') == conf_of('a')


@pytest.mark.parametrize('identity, kinds', [
    ({}, ['fuselevel', 'eeprom']),
    ({'FUSELEVEL': 'fuselevel_production'}, ['eeprom']),
    ({'FAB': '300', 'BOARDSKU': '0003'}, ['fuselevel']),
    ({'BOARDID': '3767', 'BOARDSKU': '0003', 'BOARDREV': 'A.0'}, ['fuselevel', 'eeprom']),
    ({'FAB': '300', 'BOARDSKU': '0003', 'FUSELEVEL': 'fuselevel_production'}, []),
])
def test_fab_and_fuselevel_keep_a_generation_off_the_devices(tmp_path, identity, kinds):
    station = Station(tmp_path, {'1-3': '7523'})
    tree = station.tree('a')
    station.generate(tree, env=bare_env(**identity))
    assert [probe['kind'] for probe in l4t_host.probes(station.state)] == kinds * 3


def test_without_fab_a_generation_needs_a_device_to_probe(tmp_path):
    station = Station(tmp_path, {})
    tree = station.tree('a')
    result = station.run(tree, INTERNAL, '--no-flash', *NVME_ARGS, NANO, 'internal',
                         env=bare_env(FUSELEVEL='fuselevel_production'))
    assert result.returncode == 1 and 'probing the target board failed' in result.stdout
    assert station.run(tree, INTERNAL, '--no-flash', *NVME_ARGS, NANO, 'internal',
                       env=identity_env('0003')).returncode == 0


def test_a_wrong_boardsku_for_the_module_fails_the_flash(tmp_path):
    station = Station(tmp_path, {'1-3': '7523'})
    tree = station.tree('a', conf=conf_of('a'))
    saved = station.generate(tree, env=identity_env('0004'))  # the Nano 4GB's, on a Nano 8GB
    station.install_rules_once()
    result = station.run(tree, INTERNAL, '--usb-instance', '1-3', '--device-instance', '0', '--flash-only', *saved)
    assert result.returncode == 1 and 'board mismatch' in result.stdout and 'needs 0003 or 0005' in result.stdout
    assert station.in_recovery() == {'1-3': '7523'} and station.device_conf('1-3') is None


def test_an_eeprom_probe_during_another_runs_rcm_boot_breaks_that_boot(tmp_path):
    station = Station(tmp_path, {'1-3': '7523'})
    tree = station.tree('a', conf=conf_of('a'), boot_seconds=3.0)
    other = station.tree('b')
    saved = station.generate(tree, env=identity_env('0003'))
    station.install_rules_once()

    # flash.sh --no-flash probes only without --usb-instance and without FAB.
    assert station.run(other, FLASH, '--no-flash', '--usb-instance', '1-3', NANO, 'internal').returncode == 0
    assert station.run(other, FLASH, '--no-flash', NANO, 'internal', env=bare_env(FAB='300')).returncode == 0
    assert l4t_host.probes(station.state) == []

    flashing = station.start(tree, INTERNAL, '--usb-instance', '1-3', '--device-instance', '0', '--flash-only', *saved)
    wait_for(lambda: os.path.exists(os.path.join(station.state, 'busy', '1-3')))
    stray = station.run(other, FLASH, '--no-flash', NANO, 'internal')
    assert stray.returncode == 0, output(stray)
    text = flashing.communicate(timeout=30)[0]
    assert flashing.returncode == 1 and 'Boot Rom communication failed' in text
    assert [(probe['kind'], probe['usb_instance'], probe['disrupted'], probe['tool'])
            for probe in l4t_host.probes(station.state)] == \
        [('fuselevel', '1-3', False, 'flash.sh'), ('eeprom', '1-3', True, 'flash.sh')]
    assert station.in_recovery() == {'1-3': '7523'} and l4t_host.gadget_interfaces(station.host) == []
    assert station.device_conf('1-3') is None
    assert [(run['exit'], run['device']) for run in l4t.flash_runs(station.state)] == [(1, None)]


# -- udev rules ---------------------------------------------------------------------------------

def test_two_outer_runs_at_once_lose_the_udev_rules(tmp_path):
    station = Station(tmp_path, {'1-3': '7523', '1-4': '7523'})
    # b's device takes long to RCM-boot: b is surely still running when a exits.
    trees = [station.tree('a', conf=conf_of('a'), flash_seconds=0.5),
             station.tree('b', conf=conf_of('b'), flash_seconds=0.5, boot_seconds=4.0)]
    runs = [station.start(tree, OUTER, '--usb-instance', port, *NVME_ARGS, NANO, 'internal',
                          env=identity_env('0003'))
            for tree, port in zip(trees, ('1-3', '1-4'))]
    wait_for(lambda: any(run.poll() is not None for run in runs), timeout=60)
    rules_after_first_exit = l4t_host.udev_rules(station.host)
    first = next(run for run in runs if run.poll() is not None)
    other = runs[1 - runs.index(first)]
    other_running = other.poll() is None
    first_text = first.communicate(timeout=30)[0]
    other_text = other.communicate(timeout=60)[0]

    if 'File exists' in first_text:
        assert first.returncode == 1  # ln -s without -f, under set -e: the run dies at once
    else:
        # The first run to exit took the rules the other still needed with it: NetworkManager
        # keeps the other's gadget, and it never reaches the device's ssh.
        assert first is runs[0] and other_running, (first_text, other_text)
        assert rules_after_first_exit == []
        assert other.returncode == 1 and 'Waiting for device to expose ssh ......Timeout' in other_text
    assert l4t_host.udev_rules(station.host) == []


# -- the old pattern fails, the new one holds ---------------------------------------------------

@pytest.mark.parametrize('ports', [('1-3', '1-4'), ('1-3', '1-4', '1-5')])
def test_overlapping_single_device_runs_of_the_outer_script_go_wrong(tmp_path, ports):
    station = Station(tmp_path, dict((port, '7523') for port in ports))
    trees = dict((port, station.tree('tree-' + port, conf=conf_of(port), flash_seconds=3.0)) for port in ports)
    runs = {}
    for port in ports:
        # Each run starts while the one before is mid-flash: that one's device runs the flashing
        # initrd (its gadget is up) and the run has gone on to the flash itself.
        runs[port] = station.start(trees[port], OUTER, '--usb-instance', port, *NVME_ARGS, NANO, 'internal')
        wait_for(lambda port=port: runs[port].poll() is not None or any(
            interface['port'] == port for interface in l4t_host.gadget_interfaces(station.host)), timeout=60)
        time.sleep(0.3)
    texts = dict((port, runs[port].communicate(timeout=60)[0]) for port in ports)
    codes = dict((port, runs[port].returncode) for port in ports)

    confs = dict((port, station.device_conf(port)) for port in ports)
    wrong = [port for port in ports if confs[port] not in (None, conf_of(port))]
    failed = [port for port in ports if codes[port] != 0]
    report = (codes, confs, l4t.flash_runs(station.state), texts)
    assert wrong or failed, report
    assert any(confs[port] != conf_of(port) for port in ports), report
    # Typically the second run writes ITS tree to the FIRST device: same instance 0, first gadget.
    assert any(run['device'] and run['device'] != run['usb_instance'] for run in l4t.flash_runs(station.state)) \
        or failed, report

    # The operator power-cycles every device back into recovery mode.
    for port in ports:
        l4t_host.power_cycle_into_recovery(station.state, station.host, station.sysfs, port)
    assert station.in_recovery() == dict((port, '7523') for port in ports)
    assert l4t_host.gadget_interfaces(station.host) == []


def prepare_right(station, trees, modules):
    """Everything but the device instances done right: a service shim and an exports.d file per
    tree, the udev rules installed once, each tree generated with its module's identity."""
    for port, tree in trees.items():
        write_service_shim(tree)
        write_exports_d(station.host, 'azaion-' + port, tree)
    assert station.host_run('exportfs', '-ra').returncode == 0
    station.install_rules_once()
    return dict((port, station.generate(tree, '--massflash', '3', env=identity_env(SKU[modules[port]])))
                for port, tree in trees.items())


def test_concurrent_runs_with_one_device_instance_flash_the_wrong_device(tmp_path):
    modules = {'1-3': '7523', '1-4': '7523'}
    station = Station(tmp_path, modules)
    trees = {'1-3': station.tree('tree-1-3', conf=conf_of('1-3'), flash_seconds=4.0),
             '1-4': station.tree('tree-1-4', conf=conf_of('1-4'), flash_seconds=0.5)}
    saved = prepare_right(station, trees, modules)
    first = station.start(trees['1-3'], INTERNAL, '--usb-instance', '1-3', '--device-instance', '0',
                          '--flash-only', *saved['1-3'])
    wait_for(lambda: any(interface['addresses'] for interface in l4t_host.gadget_interfaces(station.host)))
    second = station.run(trees['1-4'], INTERNAL, '--usb-instance', '1-4', '--device-instance', '0',
                         '--flash-only', *saved['1-4'])
    first_text = first.communicate(timeout=30)[0]

    # Both devices bring up RNDIS+L4T0; the second run takes the FIRST such interface, 1-3's,
    # writes ITS tree there and reports success. The first run loses its device when 1-3 reboots.
    assert second.returncode == 0, output(second)
    assert first.returncode == 1 and 'No route to host' in first_text
    assert station.device_conf('1-3') == conf_of('1-4') and station.device_conf('1-4') is None
    assert sorted((run['usb_instance'], run['device'], run['exit']) for run in l4t.flash_runs(station.state)) == \
        [('1-3', None, 1), ('1-4', '1-3', 0)]
    meta = l4t.device_meta(station.state, '1-3')
    assert (meta['tree'], meta['usb_instance'], meta['instance']) == (trees['1-4'], '1-4', '0')
    # 1-4 was never written: it still runs the flashing initrd, out of recovery mode.
    assert [(interface['port'], interface['configuration']) for interface in l4t_host.gadget_interfaces(station.host)] \
        == [('1-4', 'RNDIS+L4T0')]
    assert station.in_recovery() == {}


def test_per_tree_exports_a_service_shim_and_distinct_instances_flash_every_device_right(tmp_path):
    modules = {'1-3': '7523', '1-4': '7623', '1-5': '7323'}  # three different modules
    station = Station(tmp_path, modules)
    trees = dict((port, station.tree('tree-' + port, conf=conf_of(port), flash_seconds=2.0)) for port in modules)
    for port, tree in trees.items():
        write_service_shim(tree)
        write_exports_d(station.host, 'azaion-' + port, tree)
    assert station.host_run('exportfs', '-ra').returncode == 0
    station.install_rules_once()

    generations = dict((port, station.start(tree, INTERNAL, '--no-flash', '--massflash', '3', *NVME_ARGS, NANO,
                                            'internal', env=identity_env(SKU[modules[port]])))
                       for port, tree in trees.items())
    for port, generation in generations.items():
        assert generation.communicate(timeout=60)[0] is not None and generation.returncode == 0, port
    saved = {}
    for port, tree in trees.items():
        with open(os.path.join(tree, 'tools', 'kernel_flash', 'initrdflashparam.txt')) as params:
            saved[port] = shlex.split(params.read())

    flashes = dict((port, station.start(trees[port], INTERNAL, '--usb-instance', port, '--device-instance',
                                        str(slot), '--flash-only', *saved[port]))
                   for slot, port in enumerate(sorted(modules)))
    texts = dict((port, flash.communicate(timeout=60)[0]) for port, flash in flashes.items())
    assert all(flash.returncode == 0 for flash in flashes.values()), texts

    assert l4t_host.probes(station.state) == []
    assert dict((port, station.device_conf(port)) for port in modules) == \
        dict((port, conf_of(port)) for port in modules)
    runs = l4t.flash_runs(station.state)
    assert sorted((run['usb_instance'], run['instance'], run['device'], run['tree']) for run in runs) == \
        [(port, slot, port, trees[port]) for slot, port in enumerate(sorted(modules))]
    assert max(run['start'] for run in runs) < min(run['end'] for run in runs)  # they did overlap
    assert station.in_recovery() == {} and l4t_host.gadget_interfaces(station.host) == []
    # The exports are still there for the next batch; the service was never restarted.
    assert len(station.exported()) == 6
    assert 'service' not in [event['program'] for event in l4t_host.host_events(station.state)]
