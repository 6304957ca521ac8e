# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""azaion.jetson.l4t_workspace, run as Ansible runs it, against the lab's fake Linux_for_Tegra bundle."""

import json
import os
import subprocess

import pytest

from lab import l4t_bundle
from lab.usb_sysfs import make_usb_sysfs

from ansible_collections.azaion.jetson.plugins.module_utils._workspace import clone_tree
from ansible_collections.azaion.jetson.plugins.modules.l4t_workspace import main

CONF = 'AZAION_DEVICE_EMAIL=azaion-jetson-0042@azaion.com\nAZAION_DEVICE_PASSWORD=0123456789abcdef0123456789abcdef\n'
RESULT_KEYS = {'changed', 'dest', 'rebuilt', 'stats', 'msg'}
STATS_KEYS = {'files_linked', 'files_copied', 'bytes_copied', 'symlinks', 'skipped', 'seconds'}


@pytest.fixture
def bundle(tmp_path):
    sysfs = make_usb_sysfs(str(tmp_path / 'sysfs'), {'1-3': '7523'})
    return l4t_bundle.make_bundle(str(tmp_path / 'bundle'), str(tmp_path / 'lab-state'), sysfs)


@pytest.fixture
def dest(tmp_path):
    return str(tmp_path / 'work' / 'ports' / '1-3' / 'Linux_for_Tegra')


def run(module_runner, src, dest, check_mode=False, **args):
    params = dict(src=src, dest=dest)
    params.update(args)
    result = module_runner(main, params, check_mode=check_mode)
    if not result.get('failed'):
        assert set(result) - {'invocation'} == RESULT_KEYS, result  # no stat of dest mixed in
        assert set(result['stats']) == STATS_KEYS
    return result


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        handle.write(text)
    os.chmod(path, mode)


def inode(path):
    return os.stat(path).st_ino


def test_builds_once_then_changes_nothing(module_runner, bundle, dest):
    first = run(module_runner, bundle, dest)
    assert first['changed'] and not first['rebuilt'] and first['dest'] == dest
    # What the default private paths hold in the lab bundle: bootloader/ and tools/kernel_flash/.
    private_files = sum(len(files) for private in ('bootloader', 'tools/kernel_flash')
                        for _root, _dirs, files in os.walk(os.path.join(bundle, private)))
    assert first['stats']['files_linked'] > 10 and first['stats']['files_copied'] == private_files >= 7
    assert inode(os.path.join(dest, 'flash.sh')) == inode(os.path.join(bundle, 'flash.sh'))
    image = os.path.join('bootloader', 'system.img')
    assert inode(os.path.join(dest, image)) != inode(os.path.join(bundle, image))
    marker_before = open(os.path.join(dest, '.azaion-workspace.json')).read()

    second = run(module_runner, bundle, dest)
    assert not second['changed'] and not second['rebuilt']
    assert second['stats']['files_linked'] == 0 and 'up to date' in second['msg']
    assert open(os.path.join(dest, '.azaion-workspace.json')).read() == marker_before


def test_check_mode_predicts_without_writing(module_runner, bundle, dest):
    predicted = run(module_runner, bundle, dest, check_mode=True)
    assert predicted['changed'] and 'would build' in predicted['msg']
    assert not os.path.exists(os.path.dirname(dest))
    run(module_runner, bundle, dest)
    write(os.path.join(bundle, '.azaion-staging.json'), '{"staged": 2}')
    predicted = run(module_runner, bundle, dest, check_mode=True)
    assert predicted['changed'] and predicted['rebuilt']
    with open(os.path.join(dest, '.azaion-workspace.json')) as handle:
        assert 'staged' not in json.load(handle)['source_stamp']


def test_rebuilds_when_the_source_changes_and_keeps_the_device_conf(module_runner, bundle, dest):
    run(module_runner, bundle, dest)
    conf = os.path.join(dest, 'rootfs', 'etc', 'azaion', 'device.conf')
    write(conf, CONF, mode=0o600)
    write(os.path.join(bundle, 'rootfs', 'etc', 'hostname'), 'azj\n')
    write(os.path.join(bundle, '.azaion-staging.json'), '{"rootfs": "staged-at-2"}')

    rebuilt = run(module_runner, bundle, dest)
    assert rebuilt['changed'] and rebuilt['rebuilt'] and 'source changed' in rebuilt['msg']
    assert os.path.isfile(os.path.join(dest, 'rootfs', 'etc', 'hostname'))
    with open(conf) as handle:
        assert handle.read() == CONF
    with open(os.path.join(dest, '.azaion-workspace.json')) as handle:
        assert json.load(handle)['source_stamp'] == {'rootfs': 'staged-at-2'}
    assert not run(module_runner, bundle, dest)['changed']

    # The same staging marker, but other private paths: rebuilt too.
    other = run(module_runner, bundle, dest, private_paths=['bootloader', 'tools/kernel_flash', 'rootfs/boot',
                                                            'kernel'])
    assert other['changed'] and other['rebuilt'] and 'private paths' in other['msg']
    assert not run(module_runner, bundle, dest, private_paths=['bootloader', 'tools/kernel_flash/', './rootfs/boot',
                                                               'kernel'])['changed']
    forced = run(module_runner, bundle, dest, private_paths=['bootloader', 'tools/kernel_flash', 'rootfs/boot',
                                                             'kernel'], force=True)
    assert forced['changed'] and forced['rebuilt']
    with open(conf) as handle:
        assert handle.read() == CONF


def test_an_interrupted_clone_is_not_taken_as_complete(module_runner, bundle, dest):
    process = subprocess.Popen(['true'])
    process.wait()
    stale = '%s.tmp-%d' % (dest, process.pid)
    clone_tree(bundle, stale, ['bootloader', 'tools/kernel_flash', 'rootfs/boot'])  # complete, wrong name
    result = run(module_runner, bundle, dest)
    assert result['changed'] and result['stats']['files_linked'] > 0
    assert os.listdir(os.path.dirname(dest)) == ['Linux_for_Tegra']


def test_refuses_bad_sources_and_overlapping_trees(module_runner, bundle, dest, tmp_path):
    missing = run(module_runner, str(tmp_path / 'nowhere'), dest)
    assert missing['failed'] and 'does not exist' in missing['msg']
    not_l4t = tmp_path / 'not-l4t'
    not_l4t.mkdir()
    wrong = run(module_runner, str(not_l4t), dest)
    assert wrong['failed'] and 'no flash.sh' in wrong['msg']
    inside = run(module_runner, bundle, os.path.join(bundle, 'ports', '1-3'))
    assert inside['failed'] and 'must not contain each other' in inside['msg']
    around = run(module_runner, bundle, os.path.dirname(bundle))
    assert around['failed'] and 'must not contain each other' in around['msg']
    assert not os.path.exists(os.path.join(bundle, 'ports'))


def test_does_not_replace_a_directory_it_did_not_make(module_runner, bundle, dest):
    write(os.path.join(dest, 'precious.txt'), 'not a clone\n')
    refused = run(module_runner, bundle, dest)
    assert refused['failed'] and 'force=true' in refused['msg']
    assert os.path.isfile(os.path.join(dest, 'precious.txt'))
    assert run(module_runner, bundle, dest, state='absent')['failed']

    replaced = run(module_runner, bundle, dest, force=True)
    assert replaced['changed'] and replaced['rebuilt']
    assert not os.path.exists(os.path.join(dest, 'precious.txt'))


def test_state_absent_removes_the_tree(module_runner, bundle, dest):
    run(module_runner, bundle, dest)
    assert run(module_runner, bundle, dest, state='absent', check_mode=True)['changed']
    assert os.path.isdir(dest)
    removed = run(module_runner, bundle, dest, state='absent')
    assert removed['changed'] and not os.path.exists(dest)
    assert not run(module_runner, bundle, dest, state='absent')['changed']
    assert os.path.isfile(os.path.join(bundle, 'flash.sh'))
