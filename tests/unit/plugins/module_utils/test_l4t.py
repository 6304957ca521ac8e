# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The station-side L4T helpers, against the lab's fake USB sysfs and fake Linux_for_Tegra bundle."""

import errno
import hashlib
import json
import os
import stat
import subprocess
import threading
import time

import pytest

from lab import l4t_bundle
from lab.usb_sysfs import add_device, make_usb_sysfs

from ansible_collections.azaion.jetson.plugins.module_utils import _workspace
from ansible_collections.azaion.jetson.plugins.module_utils._device_state import DeviceState, DeviceStateError
from ansible_collections.azaion.jetson.plugins.module_utils._slots import FlashSlotTimeout, FlashSlots
from ansible_collections.azaion.jetson.plugins.module_utils._tool_runner import ToolRun, log_tail, run_tool
from ansible_collections.azaion.jetson.plugins.module_utils._usb import (
    BOARD_CONFIGS,
    NVIDIA_VENDOR,
    RECOVERY_PRODUCTS,
    recovery_devices,
)
from ansible_collections.azaion.jetson.plugins.module_utils._workspace import clone_tree, source_stamp

NANO = 'jetson-orin-nano-devkit'
PRIVATE = ['bootloader', 'tools/kernel_flash', 'rootfs/boot']
CONF = 'AZAION_DEVICE_EMAIL=azaion-jetson-0042@azaion.com\nAZAION_DEVICE_PASSWORD=0123456789abcdef0123456789abcdef\n'


def dead_pid():
    process = subprocess.Popen(['true'])
    process.wait()
    return process.pid


def alive(pid):
    """True while ``pid`` runs (a zombie waiting for its parent counts as gone)."""
    try:
        with open('/proc/%d/stat' % pid) as proc_stat:
            return proc_stat.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (IOError, OSError):
        return False


def processes_mentioning(text):
    """Pids of live processes whose command line contains ``text``."""
    found = []
    for name in os.listdir('/proc'):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open('/proc/%s/cmdline' % name, 'rb') as cmdline:
                if text.encode() in cmdline.read() and alive(int(name)):
                    found.append(int(name))
        except (IOError, OSError):
            continue
    return found


def checksums(tree):
    """relpath -> sha256 of every regular file under ``tree``."""
    sums = {}
    for directory, _dirs, files in os.walk(tree):
        for name in files:
            path = os.path.join(directory, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, 'rb') as handle:
                    sums[os.path.relpath(path, tree)] = hashlib.sha256(handle.read()).hexdigest()
    return sums


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        handle.write(text)
    os.chmod(path, mode)
    return path


@pytest.fixture
def lab(tmp_path):
    """A fake bundle whose tools look at a fake sysfs with an Orin Nano on 1-3."""
    class Lab:
        pass
    lab = Lab()
    lab.sysfs = make_usb_sysfs(str(tmp_path / 'sysfs'), {'1-3': '7523'})
    lab.state = str(tmp_path / 'lab-state')
    lab.tree = l4t_bundle.make_bundle(str(tmp_path / 'bundle'), lab.state, lab.sysfs)
    lab.work = str(tmp_path / 'work')
    return lab


# -- constants and the recovery-mode scan -----------------------------------------------------

def test_constants_are_the_published_api():
    assert NVIDIA_VENDOR == '0955'
    assert RECOVERY_PRODUCTS == {'7523': 'orin-nano-8gb', '7623': 'orin-nano-4gb', '7323': 'orin-nx-16gb',
                                 '7423': 'orin-nx-8gb', '7023': 'agx-orin-64gb', '7223': 'agx-orin-32gb'}
    assert set(BOARD_CONFIGS) == set(RECOVERY_PRODUCTS.values())
    assert BOARD_CONFIGS['orin-nx-16gb'] == NANO and BOARD_CONFIGS['agx-orin-32gb'] == 'jetson-agx-orin-devkit'
    # The lab's board configs support exactly these modules, as NVIDIA's do.
    for product, board in RECOVERY_PRODUCTS.items():
        assert product in l4t_bundle.BOARD_MODULES[BOARD_CONFIGS[board]]


def test_a_shared_recovery_scan_is_one_scan_for_concurrent_callers_and_never_older_than_the_call(tmp_path):
    root = make_usb_sysfs(str(tmp_path / 'devices'), dict(('1-%d' % port, '7523') for port in range(1, 41)))
    results = []
    callers = [threading.Thread(target=lambda: results.append(recovery_devices(root, shared=True))) for _caller in range(20)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(results) == 20 and all(result == recovery_devices(root) for result in results)
    # A device plugged after the last scan ended is seen by the next call.
    add_device(root, '2-1', '7323')
    assert recovery_devices(root, shared=True)['2-1'] == '7323'


def test_recovery_scan_follows_symlinks_and_reads_the_port_from_busnum_and_devpath(tmp_path):
    root = make_usb_sysfs(str(tmp_path / 'devices'), {'1-3': '7523', '1-8.4': '7323', '2-1': '7035',
                                                      '2-2': '7023'})
    add_device(root, '1-5', '7523', vendor='1234')  # a foreign device with a recovery product id
    assert os.path.islink(os.path.join(root, '1-8.4'))  # what the scan must follow
    assert os.path.lexists(os.path.join(root, '1-3:1.0'))  # an interface: no idVendor
    assert recovery_devices(root) == {'1-3': '7523', '1-8.4': '7323', '2-2': '7023'}
    assert list(recovery_devices(root)) == ['1-3', '1-8.4', '2-2']

    # The name of the entry does not matter, busnum and devpath do.
    odd = os.path.join(root, 'not-a-port')
    for name, value in (('idVendor', '0955'), ('idProduct', '7423'), ('busnum', '3'), ('devpath', '2.1')):
        write(os.path.join(odd, name), value + '\n')
    assert recovery_devices(root)['3-2.1'] == '7423'


def test_recovery_scan_of_a_missing_root_is_empty(tmp_path):
    assert recovery_devices(str(tmp_path / 'nothing')) == {}


# -- running tools ----------------------------------------------------------------------------

def test_run_tool_appends_output_to_a_private_log_and_reports_the_exit(tmp_path):
    log = str(tmp_path / 'logs' / 'deep' / 'tool.log')
    run = run_tool(['bash', '-c', 'echo to-stdout; echo to-stderr >&2; read -r line || echo "stdin: eof"; exit 3'],
                   cwd=str(tmp_path), log_path=log, timeout=30)
    assert isinstance(run, ToolRun)
    assert (run.rc, run.timed_out, run.log_path) == (3, False, log)
    assert 0 <= run.seconds < 10
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o640
    again = run_tool(['bash', '-c', 'pwd'], cwd=str(tmp_path), log_path=log, timeout=30)
    assert again.rc == 0
    with open(log) as handle:
        text = handle.read()
    for expected in ('to-stdout', 'to-stderr', 'stdin: eof', 'exit 3', str(tmp_path) + '\n'):
        assert expected in text
    assert text.index('to-stdout') < text.index(str(tmp_path) + '\n')  # appended, not replaced


def test_run_tool_reports_a_missing_program_without_raising(tmp_path):
    log = str(tmp_path / 'tool.log')
    run = run_tool([str(tmp_path / 'no-such-tool')], cwd=str(tmp_path), log_path=log, timeout=5)
    assert (run.rc, run.timed_out) == (127, False)
    assert 'cannot run' in log_tail(log)


def test_run_tool_timeout_kills_the_whole_process_group(tmp_path):
    """A tool that ignores SIGTERM and leaves a child behind: both are gone after the timeout."""
    pid_file = str(tmp_path / 'child.pid')
    script = 'trap "" TERM; sleep 300 & echo $! > %s; wait; wait' % pid_file
    started = time.monotonic()
    run = run_tool(['bash', '-c', script], cwd=str(tmp_path), log_path=str(tmp_path / 'tool.log'), timeout=1,
                   kill_grace=1)
    elapsed = time.monotonic() - started
    assert run.timed_out and run.rc == -9
    assert 1.9 <= elapsed < 6
    with open(pid_file) as handle:
        child = int(handle.read())
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)
    assert 'timed out after 1 s' in log_tail(run.log_path)


def test_run_tool_stops_a_hanging_flash(lab):
    l4t_bundle.plant_failure(lab.state, '1-3', kind='hang')
    log = os.path.join(lab.work, 'logs', 'AZJN-0042-flash.log')
    run = run_tool([os.path.join(lab.tree, 'flash.sh'), '--usb-instance', '1-3', NANO, 'internal'],
                   cwd=lab.tree, log_path=log, timeout=2)
    assert run.timed_out and run.rc == 143  # SIGTERM, and the tool's exit trap ran
    assert 2 <= run.seconds < 8
    assert processes_mentioning(lab.tree) == []
    assert l4t_bundle.tool_calls(lab.state)[-1]['exit'] == 143
    assert not os.path.exists(os.path.join(lab.tree, 'bootloader', '.lab-flash-lock'))
    assert 'Waiting for target to boot-up...' in log_tail(log)
    assert os.path.isdir(os.path.join(lab.sysfs, '1-3'))  # still in recovery, ready for a retry


def test_log_tail(tmp_path):
    assert log_tail(str(tmp_path / 'missing.log')) == ''
    log = write(str(tmp_path / 'big.log'), ''.join('line %d %s\n' % (n, 'x' * 300) for n in range(1000)))
    tail = log_tail(log)
    assert tail.splitlines() == ['line %d %s' % (n, 'x' * 300) for n in range(975, 1000)]
    assert log_tail(log, lines=2).splitlines()[0].startswith('line 998 ')
    short = write(str(tmp_path / 'short.log'), 'only\n')
    assert log_tail(short) == 'only'


# -- the device state file ---------------------------------------------------------------------

def test_device_state_records_phases_atomically(tmp_path):
    path = str(tmp_path / 'devices' / 'AZJN-0042' / 'state.json')
    state = DeviceState(path, serial='AZJN-0042')
    assert state.load() == {} and state.phase('flash') == {}
    state.record('flash', status='running', started=100.0, error=None)
    state.record('identity', status='done', seconds=1.5)
    merged = state.record('flash', status='done', finished=160.0, seconds=60.0, fingerprint='abc')
    assert merged == {'status': 'done', 'started': 100.0, 'finished': 160.0, 'seconds': 60.0, 'error': None,
                      'fingerprint': 'abc'}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    with open(path) as handle:
        data = json.load(handle)
    assert data['serial'] == 'AZJN-0042'
    assert data['phases']['identity'] == {'status': 'done', 'seconds': 1.5}
    assert DeviceState(path).phase('flash')['fingerprint'] == 'abc'
    assert os.listdir(os.path.dirname(path)) == ['state.json']  # no temporary left
    with pytest.raises(ValueError):
        state.record('flash', status='finished')


def test_device_state_refuses_a_corrupt_file(tmp_path):
    path = write(str(tmp_path / 'state.json'), '{"phases": {"flash": ')
    with pytest.raises(DeviceStateError, match='not JSON'):
        DeviceState(path).load()


# -- flash slots -------------------------------------------------------------------------------

def test_flash_slots_let_at_most_count_holders_in(tmp_path):
    slots_dir = str(tmp_path / 'slots')
    lock = threading.Lock()
    inside = []
    peak = []
    taken = []
    errors = []

    def holder(name):
        try:
            with FlashSlots(slots_dir, 2, label=name) as slot:
                with lock:
                    inside.append(name)
                    peak.append(len(inside))
                    taken.append((slot.slot, slot.wait_seconds))
                time.sleep(0.5)
                with lock:
                    inside.remove(name)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=holder, args=('device-%d' % n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert errors == []
    assert len(taken) == 3 and max(peak) == 2
    assert set(slot for slot, dummy in taken) == {0, 1}
    assert max(wait for dummy, wait in taken) >= 0.3  # the third one waited for a free slot
    assert sorted(os.listdir(slots_dir)) == ['slot-0.lock', 'slot-1.lock']


def test_flash_slots_waiting_threads_queue_instead_of_polling_the_lock_files(tmp_path):
    """A station module's hundred devices wait for a slot in one process: only as many of them
    as there are slots may poll the lock files, or the polls eat the CPU the flashes need."""
    slots_dir = str(tmp_path / 'slots')
    attempts = []

    class CountingSlots(FlashSlots):
        def _lock(self, number):
            attempts.append(number)
            return super(CountingSlots, self)._lock(number)

    def holder():
        with CountingSlots(slots_dir, 1, poll=0.02):
            time.sleep(0.2)

    threads = [threading.Thread(target=holder) for dummy in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    # One try each once let through; polling threads would have made about 4 * 10 per holder.
    assert len(attempts) == 5


def test_flash_slots_release_on_error_and_time_out_when_busy(tmp_path):
    slots_dir = str(tmp_path / 'slots')
    with pytest.raises(RuntimeError):
        with FlashSlots(slots_dir, 1):
            raise RuntimeError('the flash blew up')
    with FlashSlots(slots_dir, 1, wait_timeout=0) as first:  # released above, so free now
        assert (first.slot, first.path) == (0, os.path.join(slots_dir, 'slot-0.lock'))
        with pytest.raises(FlashSlotTimeout, match='holders: slot 0: %d' % os.getpid()):
            FlashSlots(slots_dir, 1, wait_timeout=0.3).acquire()
    with pytest.raises(ValueError):
        FlashSlots(slots_dir, 0)


# -- working trees ------------------------------------------------------------------------------

def test_source_stamp_prefers_the_staging_marker(lab):
    stamp = source_stamp(lab.tree)
    assert stamp['path'] == lab.tree and stamp['mtime'] == os.stat(lab.tree).st_mtime
    assert stamp['nv_tegra_release'] == l4t_bundle.NV_TEGRA_RELEASE
    write(os.path.join(lab.tree, '.azaion-staging.json'), '{"rootfs": "sha-1", "staged": 1}')
    assert source_stamp(lab.tree) == {'rootfs': 'sha-1', 'staged': 1}


def test_clone_links_shared_files_and_copies_private_ones(lab):
    os.symlink('/run/systemd/resolve/stub-resolv.conf', os.path.join(lab.tree, 'rootfs', 'resolv-link'))
    os.symlink('README.txt', os.path.join(lab.tree, 'rootfs', 'readme-link'))
    os.makedirs(os.path.join(lab.tree, 'rootfs', 'boot', 'extlinux'))
    write(os.path.join(lab.tree, 'rootfs', 'boot', 'extlinux', 'extlinux.conf'), 'LABEL primary\n')
    os.chmod(os.path.join(lab.tree, 'rootfs', 'boot'), 0o750)
    os.mkfifo(os.path.join(lab.tree, 'rootfs', 'a-fifo'))
    dest = os.path.join(lab.work, 'ports', '1-3', 'Linux_for_Tegra')

    stats = clone_tree(lab.tree, dest, PRIVATE)

    def same_inode(relpath):
        return os.stat(os.path.join(lab.tree, relpath)).st_ino == os.stat(os.path.join(dest, relpath)).st_ino

    for shared in ('flash.sh', 'nv_tegra/nv_tegra_release', '.lab/config', NANO + '.conf', 'rootfs/README.txt'):
        assert same_inode(shared), shared
    for private in ('bootloader/system.img', 'bootloader/flashcmd.txt', 'bootloader/generic/cfg/flash_t234_qspi.xml',
                    'tools/kernel_flash/l4t_initrd_flash.sh', 'rootfs/boot/extlinux/extlinux.conf'):
        assert not same_inode(private), private
        assert os.stat(os.path.join(dest, private)).st_mode == os.stat(os.path.join(lab.tree, private)).st_mode
    assert checksums(dest) == dict(checksums(lab.tree), **{'.azaion-workspace.json': checksums(dest)[
        '.azaion-workspace.json']})
    assert os.readlink(os.path.join(dest, 'rootfs', 'resolv-link')) == '/run/systemd/resolve/stub-resolv.conf'
    assert os.readlink(os.path.join(dest, 'rootfs', 'readme-link')) == 'README.txt'
    assert not os.path.lexists(os.path.join(dest, 'rootfs', 'a-fifo'))
    assert stat.S_IMODE(os.stat(os.path.join(dest, 'rootfs', 'boot')).st_mode) == 0o750
    # Every file under a private path is copied (the bundle's bootloader, kernel_flash tools and
    # rules, and rootfs/boot), every other one linked.
    private_files = [path for path in checksums(lab.tree)
                     if any(path == private or path.startswith(private + '/') for private in PRIVATE)]
    assert len(private_files) >= 8
    assert stats['files_copied'] == len(private_files) and stats['skipped'] == 1 and stats['symlinks'] == 2
    assert stats['files_linked'] == len(checksums(lab.tree)) - len(private_files)
    assert stats['bytes_copied'] > 0 and stats['seconds'] >= 0
    with open(os.path.join(dest, '.azaion-workspace.json')) as handle:
        marker = json.load(handle)
    assert marker['source'] == lab.tree and marker['private_paths'] == PRIVATE
    assert marker['source_stamp'] == source_stamp(lab.tree)
    assert os.listdir(os.path.dirname(dest)) == ['Linux_for_Tegra']  # no temporary tree left


def test_flash_in_a_clone_leaves_the_bundle_untouched(lab):
    before = checksums(lab.tree)
    dest = os.path.join(lab.work, 'ports', '1-3', 'Linux_for_Tegra')
    clone_tree(lab.tree, dest, PRIVATE)
    write(os.path.join(dest, 'rootfs', 'etc', 'azaion', 'device.conf'), CONF, mode=0o600)
    run = run_tool(['./flash.sh', '--usb-instance', '1-3', NANO, 'internal'], cwd=dest,
                   log_path=os.path.join(lab.work, 'flash.log'), timeout=60)
    assert run.rc == 0, log_tail(run.log_path)
    assert l4t_bundle.flash_runs(lab.state)[-1]['tree'] == os.path.realpath(dest)
    with open(os.path.join(l4t_bundle.device_storage(lab.state, '1-3'), 'etc', 'azaion', 'device.conf')) as conf:
        assert conf.read() == CONF
    assert checksums(dest)['bootloader/system.img'] != before['bootloader/system.img']
    assert checksums(lab.tree) == before


def test_without_private_paths_a_flash_writes_through_to_the_bundle(lab):
    """The hazard the private paths exist for: the fake rewrites system.img in place."""
    before = checksums(lab.tree)
    dest = os.path.join(lab.work, 'ports', '1-3', 'Linux_for_Tegra')
    clone_tree(lab.tree, dest, [])
    run = run_tool(['./flash.sh', '--usb-instance', '1-3', NANO, 'internal'], cwd=dest,
                   log_path=os.path.join(lab.work, 'flash.log'), timeout=60)
    assert run.rc == 0, log_tail(run.log_path)
    assert checksums(lab.tree)['bootloader/system.img'] != before['bootloader/system.img']


def test_rebuild_preserves_the_device_conf_and_picks_up_source_changes(lab):
    dest = os.path.join(lab.work, 'ports', '1-3', 'Linux_for_Tegra')
    clone_tree(lab.tree, dest, PRIVATE)
    conf = write(os.path.join(dest, 'rootfs', 'etc', 'azaion', 'device.conf'), CONF, mode=0o600)
    write(os.path.join(lab.tree, 'rootfs', 'etc', 'hostname'), 'azj\n')  # the staging changed
    write(os.path.join(lab.tree, 'rootfs', 'etc', 'azaion', 'from-bundle'), 'bundle\n')

    clone_tree(lab.tree, dest, PRIVATE, preserve=['rootfs/etc/azaion'])

    with open(conf) as handle:
        assert handle.read() == CONF
    assert stat.S_IMODE(os.stat(conf).st_mode) == 0o600
    assert os.path.isfile(os.path.join(dest, 'rootfs', 'etc', 'hostname'))
    # The preserved directory is the old tree's, not the bundle's.
    assert not os.path.exists(os.path.join(dest, 'rootfs', 'etc', 'azaion', 'from-bundle'))
    assert os.listdir(os.path.dirname(dest)) == ['Linux_for_Tegra']

    clone_tree(lab.tree, dest, PRIVATE)  # without preserve the old content is gone
    assert not os.path.exists(conf)


def test_clone_discards_interrupted_clones_and_restores_an_interrupted_swap(lab):
    dest = os.path.join(lab.work, 'ports', '1-3', 'Linux_for_Tegra')
    stale_tmp = '%s.tmp-%d' % (dest, dead_pid())
    clone_tree(lab.tree, stale_tmp, PRIVATE)  # complete, marker and all, but under the temporary name
    clone_tree(lab.tree, dest, PRIVATE)
    assert not os.path.exists(stale_tmp)

    # Killed after moving the old tree aside, before renaming the new one: the old one comes back.
    write(os.path.join(dest, 'rootfs', 'etc', 'azaion', 'device.conf'), CONF, mode=0o600)
    aside = '%s.old-%d' % (dest, dead_pid())
    os.rename(dest, aside)
    clone_tree(lab.tree, dest, PRIVATE, preserve=['rootfs/etc/azaion'])
    with open(os.path.join(dest, 'rootfs', 'etc', 'azaion', 'device.conf')) as handle:
        assert handle.read() == CONF
    assert os.listdir(os.path.dirname(dest)) == ['Linux_for_Tegra']


def test_clone_copies_when_hard_links_fail(lab, monkeypatch):
    def no_links(*_args, **_kwargs):
        raise OSError(errno.EXDEV, 'Invalid cross-device link')
    monkeypatch.setattr(_workspace.os, 'link', no_links)
    dest = os.path.join(lab.work, 'elsewhere', 'Linux_for_Tegra')
    stats = clone_tree(lab.tree, dest, PRIVATE)
    assert stats['files_linked'] == 0 and stats['files_copied'] == len(checksums(lab.tree))
    assert os.stat(os.path.join(dest, 'flash.sh')).st_ino != os.stat(os.path.join(lab.tree, 'flash.sh')).st_ino
    assert os.access(os.path.join(dest, 'flash.sh'), os.X_OK)


def test_clone_refuses_a_tree_inside_its_source(lab):
    with pytest.raises(ValueError, match='must not contain each other'):
        clone_tree(lab.tree, os.path.join(lab.tree, 'ports', '1-3'), PRIVATE)
    assert not os.path.exists(os.path.join(lab.tree, 'ports'))
