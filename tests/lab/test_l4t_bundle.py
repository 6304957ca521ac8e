"""The fake Linux_for_Tegra bundle behaves like NVIDIA's tools, run as real processes.

The flash and fuse roles are only as well tested as this double is faithful: these tests pin
the behaviour the roles rely on or must guard against (argument checks, in-place rewrites,
collisions in one tree, planted floor failures, irreversible fuses, the licence dialog).
"""

import os
import re
import shutil
import signal
import subprocess
import tarfile
import time

import pytest

from . import keys
from . import l4t_bundle as l4t

NANO = 'jetson-orin-nano-devkit'
AGX = 'jetson-agx-orin-devkit'
FLASH = 'flash.sh'
INITRD = 'tools/kernel_flash/l4t_initrd_flash.sh'
ODMFUSE = 'odmfuse.sh'
ODMFUSEREAD = 'odmfuseread.sh'
APPLY = 'apply_binaries.sh'
CREATE_USER = 'tools/l4t_create_default_user.sh'
# NVIDIA's standard Orin Nano NVMe command for r36, minus board and rootdev.
NVME_ARGS = ['--external-device', 'nvme0n1p1', '-c', 'tools/kernel_flash/flash_l4t_t234_nvme.xml',
             '-p', '-c bootloader/generic/cfg/flash_t234_qspi.xml', '--showlogs', '--network', 'usb0']
DEVICE_CONF = 'LOADER_EMAIL=azaion-jetson-0042@azaion.com\nLOADER_PASSWORD=0123456789abcdef0123456789abcdef\n'


# The chip SKU of each Orin NX / Nano BOARDSKU (docs/l4t-board-identity.md).
CHIP_SKU = {'0000': '00:00:00:D3', '0001': '00:00:00:D4', '0003': '00:00:00:D5', '0004': '00:00:00:D6'}


def identity_env(sku):
    """The board identity in the environment, so that an image generation probes no device and
    its images carry the module's BPMP firmware."""
    return dict(os.environ, BOARDID='3767', FAB='300', BOARDSKU=sku, CHIP_SKU=CHIP_SKU[sku],
                FUSELEVEL='fuselevel_production')


STARTED = []  # tools started in the background, killed after each test whatever happened


@pytest.fixture(autouse=True)
def no_tool_outlives_its_test():
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:  # a failed test may leave a planted hang running
            process.kill()
        process.communicate()


class Lab:
    """A bundle, its lab state and a fake USB sysfs in one temporary directory."""

    def __init__(self, root, **bundle_options):
        self.root = str(root)
        self.state = os.path.join(self.root, 'lab-state')
        self.sysfs = os.path.join(self.root, 'sysfs')
        os.makedirs(self.sysfs)
        self.tree = l4t.make_bundle(os.path.join(self.root, 'bundle'), self.state, self.sysfs,
                                    **bundle_options)

    def plug(self, port, product='7523', vendor='0955'):
        """Put a Jetson in recovery mode on ``port``, as sysfs shows it."""
        busnum, devpath = port.split('-', 1)
        device = os.path.join(self.sysfs, port)
        os.makedirs(device)
        for name, value in (('idVendor', vendor), ('idProduct', product),
                            ('busnum', busnum), ('devpath', devpath)):
            with open(os.path.join(device, name), 'w') as sysfs_file:
                sysfs_file.write(value + '\n')

    def in_recovery(self, port):
        return os.path.isdir(os.path.join(self.sysfs, port))

    def command(self, tool, args, tree=None):
        return [os.path.join(tree or self.tree, tool)] + list(args)

    def run(self, tool, *args, tree=None, timeout=30, env=None):
        return subprocess.run(self.command(tool, args, tree), cwd=tree or self.tree, text=True,
                              capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout,
                              check=False, env=env)

    def start(self, tool, *args, tree=None, env=None):
        process = subprocess.Popen(self.command(tool, args, tree), cwd=tree or self.tree, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env)
        STARTED.append(process)
        return process

    def lock_dir(self, tree=None):
        return os.path.join(tree or self.tree, 'bootloader', '.lab-flash-lock')

    def storage(self, port):
        return l4t.device_storage(self.state, port)

    def extract_sample_rootfs(self):
        tarball = l4t.make_sample_rootfs_tarball(self.root)
        with tarfile.open(tarball) as archive:  # as root: owners kept, like tar xpf
            archive.extractall(os.path.join(self.tree, 'rootfs'), numeric_owner=True)
        return os.path.join(self.tree, 'rootfs')


def make_rootfs(path, conf=DEVICE_CONF):
    """A staging rootfs holding a device.conf as the identity role writes it: 0600, uid 1500."""
    os.makedirs(os.path.join(path, 'etc', 'azaion'))
    with open(os.path.join(path, 'etc', 'passwd'), 'w') as passwd:
        passwd.write('root:x:0:0:root:/root:/bin/bash\n')
    conf_path = os.path.join(path, 'etc', 'azaion', 'device.conf')
    with open(conf_path, 'w') as conf_file:
        conf_file.write(conf)
    os.chmod(conf_path, 0o600)
    os.chown(conf_path, 1500, 1500)
    os.symlink('/run/systemd/resolve/stub-resolv.conf', os.path.join(path, 'etc', 'resolv.conf'))
    return str(path)


def output(result):
    return (result.stdout or '') + (result.stderr or '')


def wait_for(condition, timeout=15):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, 'timed out waiting for the lab'
        time.sleep(0.02)


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path)
    lab.plug('1-3')
    return lab


def make_slow_lab(tmp_path, flash_seconds=1.0):
    """A lab whose flashes take long enough for two of them to overlap."""
    lab = Lab(tmp_path, flash_seconds=flash_seconds)
    lab.plug('1-3')
    lab.plug('1-8.4', product='7623')
    return lab


# -- the bundle ----------------------------------------------------------------------------------

def test_bundle_has_the_r36_layout_and_a_read_only_lab_config(lab):
    for place in ('flash.sh', 'odmfuse.sh', 'odmfuseread.sh', 'apply_binaries.sh',
                  'tools/l4t_create_default_user.sh', 'tools/kernel_flash/l4t_initrd_flash.sh',
                  'tools/kernel_flash/l4t_initrd_flash_internal.sh'):
        assert os.access(os.path.join(lab.tree, place), os.X_OK), place
    for place in ('tools/kernel_flash/flash_l4t_t234_nvme.xml', 'tools/kernel_flash/flash_l4t_external.xml',
                  'bootloader/generic/cfg/flash_t234_qspi.xml', 'bootloader/t186ref/cfg/flash_t234_qspi.xml',
                  NANO + '.conf', AGX + '.conf', 'bootloader/system.img', 'bootloader/flashcmd.txt',
                  'nv_tegra/nv_tegra_release', 'lab_common.sh', 'tools/kernel_flash/host_udev/99-l4t-host.rules',
                  'tools/kernel_flash/host_udev/10-l4t-usb-msd.rules'):
        assert os.path.isfile(os.path.join(lab.tree, place)), place
    assert os.listdir(os.path.join(lab.tree, 'rootfs')) == ['README.txt']
    with open(os.path.join(lab.tree, NANO + '.conf')) as board_conf:
        assert 'MAX_MASSFLASH=10\n' in board_conf.read()
    config = os.path.join(lab.tree, '.lab', 'config')
    assert os.stat(config).st_mode & 0o777 == 0o444
    with open(config) as config_file:
        text = config_file.read()
    # Without a host_root, the station's host root is made beside the lab state.
    assert 'LAB_STATE=%s\n' % lab.state in text and 'LAB_HOST_ROOT=%s-host\n' % lab.state in text
    assert 'LAB_BOOT_SECONDS=0.200000\n' in text and 'LAB_GENERATE_SECONDS=0.000000\n' in text
    assert os.access(os.path.join(lab.state + '-host', 'usr', 'sbin', 'exportfs'), os.X_OK)
    with pytest.raises(ValueError, match='outside the bundle'):
        l4t.make_bundle(os.path.join(lab.root, 'other'), os.path.join(lab.root, 'other',
                        'Linux_for_Tegra', 'state'), lab.sysfs)


def test_filler_files_are_spread_over_the_filler_dirs(tmp_path):
    tree = l4t.make_bundle(tmp_path / 'bundle', tmp_path / 'state', tmp_path / 'sysfs',
                           filler_files=600, filler_dirs=('kernel', 'bootloader/payloads'))
    counts = {}
    for directory in ('kernel', 'bootloader/payloads'):
        counts[directory] = sum(len(files) for _root, _dirs, files in os.walk(os.path.join(tree, directory)))
    assert counts == {'kernel': 300, 'bootloader/payloads': 300}


def test_sample_rootfs_tarball_is_owned_by_root_with_an_absolute_resolv_link(tmp_path):
    path = l4t.make_sample_rootfs_tarball(str(tmp_path))
    assert os.path.basename(path) == 'Tegra_Linux_Sample-Root-Filesystem_R36.4.0_aarch64.tbz2'
    with tarfile.open(path, 'r:bz2') as archive:
        members = {member.name: member for member in archive.getmembers()}
        passwd = archive.extractfile('etc/passwd').read().decode()
    assert {'etc/passwd', 'etc/group', 'etc/hostname', 'usr/bin/true'} <= set(members)
    assert all(member.uid == 0 and member.gid == 0 for member in members.values())
    assert members['etc/resolv.conf'].issym()
    assert members['etc/resolv.conf'].linkname == '/run/systemd/resolve/stub-resolv.conf'
    assert passwd.startswith('root:x:0:0:')


# -- argument checks ----------------------------------------------------------------------------

FUSES = 'lab-fuses.xml'
NOT_FUSES = 'lab-not-fuses.xml'


@pytest.fixture(scope='module')
def checking_lab(tmp_path_factory):
    """One lab for all argument checks: a rejected call changes nothing."""
    lab = Lab(tmp_path_factory.mktemp('checks'))
    lab.plug('1-3')
    l4t.write_fuse_config(os.path.join(lab.tree, FUSES))
    with open(os.path.join(lab.tree, NOT_FUSES), 'w') as not_fuses:
        not_fuses.write('<partition_layout version="01.00.0000"/>\n')
    return lab


@pytest.mark.parametrize('tool, args, message', [
    (FLASH, ['--bogus', NANO, 'internal'], 'unknown option --bogus'),
    (FLASH, [NANO], 'expected <target_board> <rootdev>, got 1'),
    (FLASH, [NANO, 'internal', 'extra'], 'expected <target_board> <rootdev>, got 3'),
    (FLASH, [NANO, 'internal', '--usb-instance'], 'option --usb-instance requires an argument'),
    (FLASH, ['no-such-board', 'internal'], 'Invalid target board - no-such-board'),
    (FLASH, ['-c', 'bootloader/missing.xml', NANO, 'internal'], 'bootloader/missing.xml is not found'),
    (FLASH, ['-R', 'no-such-rootfs', NANO, 'internal'], 'rootfs directory no-such-rootfs does not exist'),
    (INITRD, ['--bogus', NANO, 'internal'], 'unknown option --bogus'),
    (INITRD, [NANO], 'expected <target_board> <rootdev>, got 1'),
    (INITRD, ['--external-device', 'nvme0n1p1', NANO, 'internal'], 'needs the external partition layout'),
    (INITRD, ['-c', 'tools/kernel_flash/missing.xml', NANO, 'internal'], 'missing.xml is not found'),
    (INITRD, ['-p', '--bogus', NANO, 'internal'], 'unknown option --bogus'),
    (INITRD, ['-p', '-c bootloader/missing.xml', NANO, 'internal'], 'bootloader/missing.xml is not found'),
    (INITRD, ['--no-flash', '--flash-only', NANO, 'internal'], 'exclude each other'),
    (INITRD, ['--massflash', 'all', NANO, 'internal'], '--massflash needs a number'),
    (ODMFUSE, ['-X', FUSES, '-i', '0x23', NANO, 'extra'], 'expected exactly one <TargetBoard>, got 2'),
    (ODMFUSE, ['-X', FUSES, NANO], '-i <TegraID> is required'),
    (ODMFUSE, ['-X', FUSES, '-i', '0x19', NANO], 'unsupported TegraID 0x19'),
    (ODMFUSE, ['-X', 'missing.xml', '-i', '0x23', NANO], 'missing.xml is not found'),
    (ODMFUSE, ['-X', NOT_FUSES, '-i', '0x23', NANO], 'is not a fuse configuration file'),
    (ODMFUSE, ['--KEK0', 'kek.key', '-X', FUSES, '-i', '0x23', NANO], 'Xavier (0x19) only'),
    (ODMFUSE, ['-X', FUSES, '-i', '0x23', 'no-such-board'], 'Invalid target board'),
    (ODMFUSEREAD, ['-i', '0x23'], 'expected exactly one <TargetBoard>, got 0'),
    (ODMFUSEREAD, ['-i', '0x33', NANO], 'unsupported TegraID 0x33'),
    (APPLY, ['--bogus'], 'unknown argument --bogus'),
    (APPLY, ['rootfs'], 'unknown argument rootfs'),
    (CREATE_USER, ['--accept-license', '-u'], 'option -u requires an argument'),
    (CREATE_USER, ['--accept-license', 'extra'], 'unknown argument extra'),
])
def test_rejects_what_the_real_tool_rejects(checking_lab, tool, args, message):
    lab = checking_lab
    result = lab.run(tool, *args)
    assert result.returncode == 1, output(result)
    assert message in output(result)
    call = l4t.tool_calls(lab.state)[-1]
    assert (call['tool'], call['argv'], call['exit']) == (os.path.basename(tool), args, 1)
    assert lab.in_recovery('1-3') and not os.path.exists(lab.storage('1-3'))
    assert l4t.flash_runs(lab.state) == [] and l4t.burned_fuses(lab.state, '1-3') == {}


def test_usage_errors_print_the_usage(checking_lab):
    result = checking_lab.run(FLASH, '--bogus')
    assert 'Usage: sudo ./flash.sh [options] <target_board> <rootdev>' in result.stderr
    assert checking_lab.run(FLASH, '--help').returncode == 0


# -- flashing -----------------------------------------------------------------------------------

def test_flash_writes_the_rootfs_to_the_ports_storage_and_the_device_leaves_recovery(lab, tmp_path):
    lab.plug('1-8.4')
    rootfs = make_rootfs(tmp_path / 'staging')
    args = ['--usb-instance', '1-3', '-R', rootfs, NANO, 'internal']
    result = lab.run(FLASH, *args)
    assert result.returncode == 0, output(result)
    conf = os.path.join(lab.storage('1-3'), 'etc', 'azaion', 'device.conf')
    with open(conf) as conf_file:
        assert conf_file.read() == DEVICE_CONF
    conf_stat = os.stat(conf)
    assert (conf_stat.st_mode & 0o777, conf_stat.st_uid, conf_stat.st_gid) == (0o600, 1500, 1500)
    assert os.readlink(os.path.join(lab.storage('1-3'), 'etc', 'resolv.conf')) == \
        '/run/systemd/resolve/stub-resolv.conf'
    assert not lab.in_recovery('1-3') and lab.in_recovery('1-8.4')
    assert not os.path.exists(lab.storage('1-8.4'))
    meta = l4t.device_meta(lab.state, '1-3')
    assert (meta['board'], meta['tree'], meta['tool'], meta['image']) == (NANO, lab.tree, 'flash.sh', 'built')
    [run] = l4t.flash_runs(lab.state)
    assert (run['tool'], run['usb_instance'], run['tree'], run['exit']) == ('flash.sh', '1-3', lab.tree, 0)
    assert run['start'] <= run['end']
    assert l4t.tool_calls(lab.state)[-1]['argv'] == args

    # Flashing again replaces the device's content, it does not merge into it.
    lab.plug('1-3')
    os.remove(os.path.join(rootfs, 'etc', 'azaion', 'device.conf'))
    assert lab.run(FLASH, *args).returncode == 0
    assert not os.path.exists(conf)


def test_flash_needs_its_device_in_recovery_mode(lab):
    missing = lab.run(FLASH, '--usb-instance', '1-4', NANO, 'internal')
    assert missing.returncode == 1 and 'no Jetson in recovery mode at USB instance 1-4' in missing.stdout
    lab.plug('1-4', product='7035')  # the initrd flasher's id: not in recovery mode
    assert lab.run(FLASH, '--usb-instance', '1-4', NANO, 'internal').returncode == 1
    lab.plug('1-5')
    several = lab.run(FLASH, NANO, 'internal')
    assert several.returncode == 1 and 'more than one Jetson in recovery mode (1-3 1-5)' in several.stdout
    wrong_board = lab.run(FLASH, '--usb-instance', '1-3', AGX, 'internal')
    assert wrong_board.returncode == 1 and 'does not support the module' in wrong_board.stdout
    assert l4t.flash_runs(lab.state) == [] and lab.in_recovery('1-3') and lab.in_recovery('1-5')

    build_only = lab.run(FLASH, '--no-flash', NANO, 'internal')
    assert build_only.returncode == 0, output(build_only)
    assert l4t.flash_runs(lab.state) == [] and not os.path.exists(lab.storage('1-3'))


def test_system_img_is_rewritten_in_place_so_hard_linked_clones_write_through(lab, tmp_path):
    system_img = os.path.join(lab.tree, 'bootloader', 'system.img')
    flashcmd = os.path.join(lab.tree, 'bootloader', 'flashcmd.txt')
    inodes = (os.stat(system_img).st_ino, os.stat(flashcmd).st_ino)
    rootfs = make_rootfs(tmp_path / 'staging')
    assert lab.run(FLASH, '--no-flash', '-R', rootfs, NANO, 'internal').returncode == 0
    assert (os.stat(system_img).st_ino, os.stat(flashcmd).st_ino) == inodes
    with tarfile.open(system_img) as image:
        assert './etc/azaion/device.conf' in image.getnames()

    # A clone made of hard links shares system.img with the bundle: a flash in the clone
    # rewrites the bundle's image too. This is the corruption the flash role must avoid.
    clone = str(tmp_path / 'clone')
    subprocess.run(['cp', '-al', lab.tree, clone], check=True)
    other = make_rootfs(tmp_path / 'other', conf='LOADER_EMAIL=other@azaion.com\n')
    os.remove(os.path.join(other, 'etc', 'passwd'))
    assert lab.run(FLASH, '--no-flash', '-R', other, NANO, 'internal', tree=clone).returncode == 0
    with tarfile.open(system_img) as image:
        assert './etc/passwd' not in image.getnames()


def test_reuse_flashes_whatever_system_img_holds(lab):
    result = lab.run(FLASH, '-r', '--usb-instance', '1-3', NANO, 'internal')
    assert result.returncode == 0, output(result)
    assert os.path.isfile(os.path.join(lab.storage('1-3'), 'etc', 'lab-stale-image'))
    assert l4t.device_meta(lab.state, '1-3')['image'] == 'reused'


def test_two_flashes_in_one_tree_collide(tmp_path):
    lab = make_slow_lab(tmp_path, flash_seconds=2.0)  # a loaded station may start slowly
    rootfs = make_rootfs(tmp_path / 'staging')
    first = lab.start(FLASH, '--usb-instance', '1-3', '-R', rootfs, NANO, 'internal')
    wait_for(lambda: os.path.isdir(lab.lock_dir()))
    second = lab.start(INITRD, *NVME_ARGS, '--usb-instance', '1-8.4', NANO, 'internal')
    second_output = second.communicate(timeout=30)[0]
    first.communicate(timeout=30)
    assert (first.returncode, second.returncode) == (0, 1)
    assert 'another flash is running in this tree' in second_output
    [collision] = l4t.collisions(lab.state)
    assert (collision['tool'], collision['tree'], collision['usb_instance'], collision['holder_tool']) == \
        ('l4t_initrd_flash.sh', lab.tree, '1-8.4', 'flash.sh')
    assert collision['holder_pid'] == str(first.pid)
    assert not os.path.exists(lab.lock_dir())  # released by the run that held it
    assert lab.in_recovery('1-8.4') and not os.path.exists(lab.storage('1-8.4'))


def test_flashes_in_separate_trees_run_at_the_same_time(tmp_path):
    # Long enough that the initrd flash (image generation, NFS set-up, RCM boot first) starts
    # flashing before flash.sh ends, even on a loaded station.
    lab = make_slow_lab(tmp_path, flash_seconds=3.0)
    clone = str(tmp_path / 'port-1-8.4' / 'Linux_for_Tegra')
    os.makedirs(os.path.dirname(clone))
    subprocess.run(['cp', '-a', lab.tree, clone], check=True)
    # The board identity in the environment: without it the initrd flash's image generation
    # would probe the first device in recovery mode (1-3, an Orin Nano 8GB) and build for its
    # module, which the Nano 4GB on 1-8.4 refuses (see test_l4t_host.py).
    processes = [lab.start(FLASH, '--usb-instance', '1-3', NANO, 'internal'),
                 lab.start(INITRD, *NVME_ARGS, '--usb-instance', '1-8.4', NANO, 'internal', tree=clone,
                           env=identity_env('0004'))]
    results = [(process.communicate(timeout=30)[0], process.returncode) for process in processes]
    assert [code for _name, code in results] == [0, 0], results
    assert l4t.collisions(lab.state) == []
    runs = {run['usb_instance']: run for run in l4t.flash_runs(lab.state)}
    assert (runs['1-3']['tree'], runs['1-8.4']['tree']) == (lab.tree, clone)
    assert max(run['start'] for run in runs.values()) < min(run['end'] for run in runs.values())
    assert l4t.device_meta(lab.state, '1-8.4')['tree'] == clone


@pytest.mark.parametrize('tool, args, kind, message', [
    (FLASH, [], 'usb-timeout', 'ERROR: might be timeout in USB write.'),
    (INITRD, NVME_ARGS, 'boot-timeout', 'Waiting for target to boot-up... Timeout'),
])
def test_planted_failure_fails_once_then_succeeds(lab, tool, args, kind, message):
    l4t.plant_failure(lab.state, '1-3', kind=kind)
    command = list(args) + ['--usb-instance', '1-3', NANO, 'internal']
    log_dir = os.path.join(lab.tree, 'initrdlog')
    failed = lab.run(tool, *command)
    assert failed.returncode == 1 and message in failed.stdout
    assert lab.in_recovery('1-3') and not os.path.exists(lab.storage('1-3'))
    if tool == INITRD:
        assert message in initrd_logs(log_dir)
    retried = lab.run(tool, *command)
    assert retried.returncode == 0, output(retried)
    assert [run['exit'] for run in l4t.flash_runs(lab.state)] == [1, 0]
    assert not lab.in_recovery('1-3') and os.path.isdir(lab.storage('1-3'))
    if tool == INITRD:
        # One log per run, or one for both runs within a second: the second tee rewrites it.
        assert 'Flash is successful' in initrd_logs(log_dir)


def initrd_logs(log_dir):
    """The text of every initrd flash log of port 1-3, instance 0 (the name NVIDIA gives them)."""
    logs = os.listdir(log_dir)
    assert logs and all(re.match(r'flash_1-3_0_\d{8}-\d{6}\.log$', log) for log in logs), logs
    text = ''
    for log in logs:
        with open(os.path.join(log_dir, log)) as log_file:
            text += log_file.read()
    return text


def read_until(process, line):
    """Read the tool's output up to ``line``; a blocking read, as the line is sure to come."""
    seen = []
    while not seen or seen[-1] != line:
        seen.append(process.stdout.readline().rstrip('\n'))
        assert seen[-1] or process.poll() is None, seen
    return seen


def test_a_hang_must_be_killed_by_the_caller(lab):
    command = ('--usb-instance', '1-3', NANO, 'internal')

    l4t.plant_failure(lab.state, '1-3', kind='hang')
    terminated = lab.start(FLASH, *command)
    read_until(terminated, 'Waiting for target to boot-up...')  # it hangs from here on
    terminated.send_signal(signal.SIGTERM)
    assert terminated.communicate(timeout=10)[0] == ''
    assert terminated.returncode == 128 + signal.SIGTERM
    assert not os.path.exists(lab.lock_dir())  # the exit trap ran
    assert l4t.tool_calls(lab.state)[-1]['exit'] == 143

    l4t.plant_failure(lab.state, '1-3', kind='hang')
    killed = lab.start(FLASH, *command)
    read_until(killed, 'Waiting for target to boot-up...')
    killed.kill()
    killed.communicate(timeout=10)  # no orphan holds its output open
    assert os.path.isdir(lab.lock_dir())  # SIGKILL leaves a stale lock behind...
    assert l4t.flash_runs(lab.state)[-1]['exit'] is None

    retried = lab.run(FLASH, *command)  # ...which is no collision: its owner is dead
    assert retried.returncode == 0, output(retried)
    assert l4t.collisions(lab.state) == []
    assert [run['exit'] for run in l4t.flash_runs(lab.state)] == [143, None, 0]


def test_initrd_no_flash_then_flash_only(lab, tmp_path):
    # r36.2: the NVMe image is made from the tree's own rootfs/ (a symlink is followed); a -R
    # inside -p reaches the internal image only.
    staging = make_rootfs(tmp_path / 'staging')
    elsewhere = make_rootfs(tmp_path / 'elsewhere', conf='LOADER_EMAIL=elsewhere@azaion.com\n')
    shutil.rmtree(os.path.join(lab.tree, 'rootfs'))
    os.symlink(staging, os.path.join(lab.tree, 'rootfs'))
    build = lab.run(INITRD, *NVME_ARGS[:4], '-p', '-c bootloader/generic/cfg/flash_t234_qspi.xml -R ' + elsewhere,
                    '--no-flash', NANO, 'internal')
    assert build.returncode == 0, output(build)
    image = os.path.join(lab.tree, 'tools', 'kernel_flash', 'images', 'external', 'system.img')
    assert os.path.isfile(image) and lab.in_recovery('1-3') and l4t.flash_runs(lab.state) == []
    with tarfile.open(image) as archive:
        assert archive.extractfile('./etc/azaion/device.conf').read().decode() == DEVICE_CONF
    with open(os.path.join(lab.tree, 'tools', 'kernel_flash', 'initrdflashparam.txt')) as params:
        assert params.read() == ('--external-device nvme0n1p1 -c "tools/kernel_flash/flash_l4t_t234_nvme.xml" '
                                 '--network usb0 %s internal\n' % NANO)

    flash = lab.run(INITRD, '--flash-only', '--external-device', 'nvme0n1p1', '-c',
                    'tools/kernel_flash/flash_l4t_t234_nvme.xml', '--usb-instance', '1-3')
    assert flash.returncode == 0, output(flash)
    with open(os.path.join(lab.storage('1-3'), 'etc', 'azaion', 'device.conf')) as conf:
        assert conf.read() == DEVICE_CONF
    assert 'Flash is successful' in flash.stdout


def test_massflash_writes_one_image_to_every_device_and_reports_a_failed_one(lab):
    lab.plug('1-4')
    lab.plug('1-5')
    # NVIDIA's massflash takes two steps: in one command, several devices are too many.
    too_many = lab.run(INITRD, *NVME_ARGS, '--massflash', '3', NANO, 'internal')
    assert too_many.returncode == 1 and 'Error, too many devices in RCM mode' in too_many.stdout
    build = lab.run(INITRD, *NVME_ARGS, '--no-flash', '--massflash', '3', NANO, 'internal')
    assert build.returncode == 0, output(build)
    l4t.plant_failure(lab.state, '1-4')
    result = lab.run(INITRD, *NVME_ARGS, '--flash-only', '--massflash', '3', NANO, 'internal')
    assert result.returncode == 1 and 'Flash complete (WITH FAILURES)' in result.stdout
    assert {run['usb_instance']: (run['exit'], run['instance'], run['device']) for run in l4t.flash_runs(lab.state)} \
        == {'1-3': (0, 0, '1-3'), '1-4': (1, 1, None), '1-5': (0, 2, '1-5')}
    assert [lab.in_recovery(port) for port in ('1-3', '1-4', '1-5')] == [False, True, False]
    assert [call['exit'] for call in l4t.tool_calls(lab.state) if call['tool'] == 'l4t_initrd_flash.sh'] == [1, 0, 1]


# -- fusing -------------------------------------------------------------------------------------

@pytest.fixture(scope='session')
def pkc_key(tmp_path_factory):
    """One RSA 3K key for the fuse tests (making one takes a while) and its lab PublicKeyHash."""
    path = keys.make_pkc_key(str(tmp_path_factory.mktemp('keys') / 'pkc.pem'), 'rsa-3k')
    return path, keys.pkc_key_hash(path)


@pytest.fixture
def fuse_lab(lab, pkc_key):
    lab.pkc, lab.pkc_hash = pkc_key
    lab.fuses = l4t.write_fuse_config(os.path.join(lab.root, 'fuses.xml'),
                                      {'PublicKeyHash': lab.pkc_hash, 'SecurityMode': '0x1'})
    return lab


def fuse_info(lab):
    with open(os.path.join(lab.tree, 'bootloader', 'fuse_info.txt')) as info:
        return dict(line.split(': ', 1) for line in info.read().splitlines())


def digits(value):
    """A value as odmfuseread.sh prints it, without its 0x."""
    return value[2:]


def test_odmfuse_test_run_burns_nothing(fuse_lab):
    lab = fuse_lab
    result = lab.run(ODMFUSE, '-X', lab.fuses, '-i', '0x23', '--test', NANO)
    assert result.returncode == 0, output(result)
    assert 'fuse PublicKeyHash would be burned with ' + lab.pkc_hash in result.stdout
    assert l4t.burned_fuses(lab.state, '1-3') == {}
    assert [(event['event'], event['usb_instance']) for event in l4t.fuse_events(lab.state)] == [('test', '1-3')]


def test_burn_is_recorded_read_back_and_never_repeated(fuse_lab):
    lab = fuse_lab
    burn = lab.run(ODMFUSE, '-X', lab.fuses, '-i', '0x23', NANO)
    assert burn.returncode == 0, output(burn)
    assert l4t.burned_fuses(lab.state, '1-3') == {'PublicKeyHash': lab.pkc_hash, 'SecurityMode': '0x1'}

    assert lab.run(ODMFUSEREAD, '-i', '0x23', NANO).returncode == 1  # PKC fused: needs -k
    read = lab.run(ODMFUSEREAD, '-i', '0x23', '-k', lab.pkc, NANO)
    assert read.returncode == 0, output(read)
    info = fuse_info(lab)
    assert (info['PublicKeyHash'], info['SecurityMode'], info['OdmLock']) == (digits(lab.pkc_hash), '00000001', '00000000')

    # SecurityMode is burned: the fuses are locked, a second burn fails and changes nothing.
    again = lab.run(ODMFUSE, '-X', lab.fuses, '-i', '0x23', '-k', lab.pkc, NANO)
    assert again.returncode == 1
    assert "SecurityMode is burned, you can't burn any manufacturing fuses now." in again.stdout
    assert 'Fuse failed.' in again.stdout
    assert l4t.burned_fuses(lab.state, '1-3') == {'PublicKeyHash': lab.pkc_hash, 'SecurityMode': '0x1'}
    assert [event['event'] for event in l4t.fuse_events(lab.state)] == ['burn', 'read', 'refused']

    # A PKC-fused device only takes flashes signed with its key.
    assert lab.run(FLASH, '--usb-instance', '1-3', NANO, 'internal').returncode == 1
    signed = lab.run(FLASH, '-u', lab.pkc, '--usb-instance', '1-3', NANO, 'internal')
    assert signed.returncode == 0, output(signed)


def test_a_second_burn_keeping_every_burned_bit_leaves_their_or_as_fuse_bits_only_go_from_0_to_1(fuse_lab):
    lab = fuse_lab
    first = l4t.write_fuse_config(os.path.join(lab.root, 'first.xml'), {'OdmId': '0x0000000f', 'ReservedOdm0': '0x1'})
    second = l4t.write_fuse_config(os.path.join(lab.root, 'second.xml'), {'OdmId': '0xff', 'OdmLock': '0x1'})
    assert lab.run(ODMFUSE, '-X', first, '-i', '0x23', NANO).returncode == 0
    again = lab.run(ODMFUSE, '-X', second, '-i', '0x23', NANO)
    assert again.returncode == 0 and 'burned successfully' in again.stdout  # no refusal: NVIDIA's does not check
    assert l4t.burned_fuses(lab.state, '1-3') == {'OdmId': '0xff', 'ReservedOdm0': '0x1', 'OdmLock': '0x1'}
    # The same value burned again changes nothing, in whatever spelling.
    same = l4t.write_fuse_config(os.path.join(lab.root, 'same.xml'), {'ReservedOdm0': '0x00000001'})
    assert lab.run(ODMFUSE, '-X', same, '-i', '0x23', NANO).returncode == 0
    assert l4t.burned_fuses(lab.state, '1-3')['ReservedOdm0'] == '0x1'
    assert 'I> Fuse is already burned with the same value' in l4t.uart_log(lab.state, '1-3')
    # A 64-byte key hash is compared and ORed digit by digit, too wide for shell arithmetic.
    keyed = l4t.write_fuse_config(os.path.join(lab.root, 'pkh.xml'), {'PublicKeyHash': '0x' + '5a' * 63 + '00'})
    wider = l4t.write_fuse_config(os.path.join(lab.root, 'wider.xml'), {'PublicKeyHash': '0x' + 'fe' * 64})
    assert lab.run(ODMFUSE, '-X', keyed, '-i', '0x23', NANO).returncode == 0
    # PKC fused now: odmfuse.sh wants the key, and the device only THE key of its PublicKeyHash.
    wrong_key = lab.run(ODMFUSE, '-X', wider, '-i', '0x23', '-k', lab.pkc, NANO)
    assert wrong_key.returncode == 1 and 'read fuse from board failed' in wrong_key.stdout
    assert l4t.burned_fuses(lab.state, '1-3')['PublicKeyHash'] == '0x' + '5a' * 63 + '00'


def test_a_prefused_device_is_read_as_it_arrived_and_only_nvidias_list_is_read(fuse_lab):
    lab = fuse_lab
    sbk = os.path.join(lab.root, 'sbk.key')
    sbk_value = keys.make_sbk_key(sbk)
    l4t.prefuse_device(lab.state, '1-3', {'PublicKeyHash': lab.pkc_hash, 'SecureBootKey': '0x' + sbk_value,
                                          'OptInEnable': '0x1', 'OdmId': '0x42'})
    assert l4t.fuse_events(lab.state) == [] and l4t.tool_calls(lab.state) == []  # fused elsewhere
    refused = lab.run(ODMFUSEREAD, '-i', '0x23', '-k', lab.pkc, NANO)
    assert refused.returncode == 1
    assert 'Error: Either PKC or SBK key is not provided for SBK+PKC protected target board.' in refused.stdout
    assert lab.run(ODMFUSEREAD, '-i', '0x23', '-k', lab.pkc, '-S', sbk, NANO).returncode == 0
    info = fuse_info(lab)
    assert (info['PublicKeyHash'], info['OdmId'], info['ReservedOdm7']) == (digits(lab.pkc_hash), '0' * 14 + '42', '0' * 8)
    assert 'SecureBootKey' not in info and 'OptInEnable' not in info  # not in odmfuseread.sh's list


def test_silent_fuse_failure_reports_success_and_burns_nothing(fuse_lab):
    lab = fuse_lab
    l4t.plant_silent_fuse_failure(lab.state, '1-3')
    burn = lab.run(ODMFUSE, '-X', lab.fuses, '-i', '0x23', NANO)
    assert burn.returncode == 0 and 'burned successfully' in burn.stdout
    assert l4t.burned_fuses(lab.state, '1-3') == {}
    assert lab.run(ODMFUSEREAD, '-i', '0x23', NANO).returncode == 0
    assert fuse_info(lab)['PublicKeyHash'] == '0' * 128
    assert [event['event'] for event in l4t.fuse_events(lab.state)] == ['silent', 'read']


def test_fusing_with_several_devices_in_recovery_is_recorded(fuse_lab):
    lab = fuse_lab
    lab.plug('1-2')
    assert lab.run(ODMFUSE, '-X', lab.fuses, '-i', '0x23', NANO).returncode == 0
    multi, burn = l4t.fuse_events(lab.state)
    assert (multi['event'], multi['devices'], multi['usb_instance']) == ('multi-device', ['1-2', '1-3'], '1-2')
    assert (burn['event'], burn['usb_instance']) == ('burn', '1-2')
    assert l4t.burned_fuses(lab.state, '1-3') == {} and l4t.burned_fuses(lab.state, '1-2') != {}


def test_odmfuse_without_a_device_fails(tmp_path):
    lab = Lab(tmp_path)
    fuses = l4t.write_fuse_config(os.path.join(lab.root, 'fuses.xml'))
    result = lab.run(ODMFUSE, '-X', fuses, '-i', '0x23', NANO)
    assert result.returncode == 1 and 'no Jetson in recovery mode' in result.stdout


# -- rootfs staging -----------------------------------------------------------------------------

def test_apply_binaries_installs_into_a_root_owned_rootfs_only(lab):
    empty = lab.run(APPLY)
    assert empty.returncode == 1 and 'is not populated' in empty.stdout
    rootfs = lab.extract_sample_rootfs()
    installed = os.path.join(rootfs, 'usr', 'lib', 'aarch64-linux-gnu', 'nvidia', '.lab-installed')
    os.chown(os.path.join(rootfs, 'etc', 'passwd'), 1000, 1000)
    refused = lab.run(APPLY)
    assert refused.returncode == 1 and 'owned by uid 1000, not root' in refused.stdout
    assert not os.path.exists(installed)

    os.chown(os.path.join(rootfs, 'etc', 'passwd'), 0, 0)
    applied = lab.run(APPLY)
    assert applied.returncode == 0 and applied.stdout.rstrip().endswith('Success!')
    assert os.path.isfile(installed)
    with open(os.path.join(rootfs, 'etc', 'nv_tegra_release')) as release:
        assert release.read() == l4t.NV_TEGRA_RELEASE


def test_create_default_user_needs_the_licence_and_prints_the_password(lab):
    rootfs = lab.extract_sample_rootfs()
    passwd = os.path.join(rootfs, 'etc', 'passwd')
    with open(passwd) as before:
        original = before.read()
    no_licence = lab.run(CREATE_USER, '-u', 'azaion', '-p', 'S3cret-pass', '-n', 'azj-0042')
    assert no_licence.returncode == 1 and 'license was not accepted' in no_licence.stdout
    with open(passwd) as after:
        assert after.read() == original

    created = lab.run(CREATE_USER, '--username', 'azaion', '--password', 'S3cret-pass',
                      '--hostname', 'azj-0042', '--accept-license')
    assert created.returncode == 0, output(created)
    assert 'S3cret-pass' in created.stdout  # as the real one: the role must hide this output
    with open(passwd) as after:
        assert 'azaion:x:1000:1000:' in after.read()
    shadow = os.path.join(rootfs, 'etc', 'shadow')
    assert os.stat(shadow).st_mode & 0o777 == 0o640
    with open(shadow) as shadow_file:
        entry = [line for line in shadow_file if line.startswith('azaion:')][0]
    assert entry.split(':')[1].startswith('$6$') and 'S3cret-pass' not in entry
    with open(os.path.join(rootfs, 'etc', 'hostname')) as hostname:
        assert hostname.read() == 'azj-0042\n'
    with open(os.path.join(rootfs, 'etc', 'group')) as group:
        assert 'sudo:x:27:azaion\n' in group.read()

    again = lab.run(CREATE_USER, '-u', 'azaion', '-p', 'other', '--accept-license')
    assert again.returncode == 1 and 'user azaion already exists' in again.stdout
