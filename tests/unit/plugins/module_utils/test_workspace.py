# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Working trees of the L4T bundle (module_utils/_workspace.py): cloned from a source tree with
shared files hard-linked and the tools' private paths copied, against the lab's fake bundle."""

import errno
import json
import os
import stat
import subprocess

import pytest

from lab import l4t_bundle, labkit
from lab.bundle_lab import bundle_lab  # noqa: F401 pylint: disable=unused-import
from lab.batch import tree_checksums as checksums

from ansible_collections.azaion.jetson.plugins.module_utils import _workspace
from ansible_collections.azaion.jetson.plugins.module_utils._tool_runner import log_tail, run_tool
from ansible_collections.azaion.jetson.plugins.module_utils._usb import BOARD_CONFIGS
from ansible_collections.azaion.jetson.plugins.module_utils._workspace import clone_tree, source_stamp

NANO = BOARD_CONFIGS['orin-nano-8gb']
PRIVATE = ['bootloader', 'tools/kernel_flash', 'rootfs/boot']
CONF = 'AZAION_DEVICE_EMAIL=azaion-jetson-0042@azaion.com\nAZAION_DEVICE_PASSWORD=0123456789abcdef0123456789abcdef\n'


def dead_pid():
    """The pid of a process that has ended (a writer that is gone)."""
    process = subprocess.Popen(['true'])
    process.wait()
    return process.pid


def test_source_stamp_prefers_the_staging_marker(lab):
    stamp = source_stamp(lab.tree)
    assert stamp['path'] == lab.tree and stamp['mtime'] == os.stat(lab.tree).st_mtime
    assert stamp['nv_tegra_release'] == l4t_bundle.NV_TEGRA_RELEASE
    labkit.write_file(os.path.join(lab.tree, '.azaion-staging.json'), '{"rootfs": "sha-1", "staged": 1}')
    assert source_stamp(lab.tree) == {'rootfs': 'sha-1', 'staged': 1}


def test_clone_links_shared_files_and_copies_private_ones(lab):
    os.symlink('/run/systemd/resolve/stub-resolv.conf', os.path.join(lab.tree, 'rootfs', 'resolv-link'))
    os.symlink('README.txt', os.path.join(lab.tree, 'rootfs', 'readme-link'))
    os.makedirs(os.path.join(lab.tree, 'rootfs', 'boot', 'extlinux'))
    labkit.write_file(os.path.join(lab.tree, 'rootfs', 'boot', 'extlinux', 'extlinux.conf'), 'LABEL primary\n')
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
    labkit.write_file(os.path.join(dest, 'rootfs', 'etc', 'azaion', 'device.conf'), CONF, mode=0o600)
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
    conf = labkit.write_file(os.path.join(dest, 'rootfs', 'etc', 'azaion', 'device.conf'), CONF, mode=0o600)
    labkit.write_file(os.path.join(lab.tree, 'rootfs', 'etc', 'hostname'), 'azj\n')  # the staging changed
    labkit.write_file(os.path.join(lab.tree, 'rootfs', 'etc', 'azaion', 'from-bundle'), 'bundle\n')

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
    labkit.write_file(os.path.join(dest, 'rootfs', 'etc', 'azaion', 'device.conf'), CONF, mode=0o600)
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
