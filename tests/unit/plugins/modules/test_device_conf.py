# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""azaion.jetson.device_conf run end to end against a temporary rootfs tree."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import re
import stat

import pytest

from ansible_collections.azaion.jetson.plugins.module_utils import _device_conf as dc
from ansible_collections.azaion.jetson.plugins.modules.device_conf import main

EMAIL = 'azaion-jetson-0042@azaion.com'
OTHER_EMAIL = 'azaion-jetson-0043@azaion.com'
PW = '0123456789abcdef0123456789abcdef'
CONTENT_RE = re.compile(r'^AZAION_DEVICE_EMAIL=(?P<email>\S+)\nAZAION_DEVICE_PASSWORD=(?P<pw>[0-9a-f]{32})\n$')
RESULT_KEYS = {'changed', 'path', 'email', 'password_state', 'owner_uid', 'group_gid', 'mode', 'msg'}


@pytest.fixture
def rootfs(tmp_path):
    root = tmp_path / 'rootfs'
    root.mkdir()
    return root


@pytest.fixture
def outside(tmp_path):
    out = tmp_path / 'outside'
    out.mkdir()
    return out


def conf_path(rootfs):
    return rootfs / 'etc' / 'azaion' / 'device.conf'


def write_conf(rootfs, text, mode=0o600):
    path = conf_path(rootfs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(str(path), mode)
    return path


def password_in(path):
    for line in path.read_text().splitlines():
        if line.startswith('AZAION_DEVICE_PASSWORD='):
            return line.split('=', 1)[1]
    raise AssertionError('no password line in %s' % path)


def assert_secret_free(result, *passwords):
    dumped = json.dumps(result)
    for password in passwords:
        assert password and password not in dumped
    assert 'password' not in result


def snapshot(path):
    st = os.stat(str(path))
    return st.st_ino, st.st_mtime_ns, path.read_bytes()


def run(module_runner, rootfs, check_mode=False, diff=False, **args):
    params = dict(rootfs_dir=str(rootfs), email=EMAIL)
    params.update(args)
    return module_runner(main, params, check_mode=check_mode, diff=diff)


def listing(directory):
    return sorted(os.listdir(str(directory)))


# --- create, keep, change -------------------------------------------------------------------

def test_creates_file_and_directories(module_runner, rootfs):
    result = run(module_runner, rootfs)
    path = conf_path(rootfs)
    match = CONTENT_RE.match(path.read_text())
    assert match and match.group('email') == EMAIL
    assert result['changed'] is True
    assert result['password_state'] == 'generated'
    assert RESULT_KEYS <= set(result)
    assert result['path'] == str(path) and result['email'] == EMAIL
    assert (result['owner_uid'], result['group_gid'], result['mode']) == (0, 0, '0600')
    st = os.stat(str(path))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o600)
    for directory in (rootfs / 'etc', rootfs / 'etc' / 'azaion'):
        assert stat.S_IMODE(os.stat(str(directory)).st_mode) == 0o755
    assert listing(path.parent) == ['device.conf']  # no temporary file left behind
    assert_secret_free(result, match.group('pw'))


def test_second_run_changes_nothing(module_runner, rootfs):
    run(module_runner, rootfs)
    path = conf_path(rootfs)
    before = snapshot(path)
    result = run(module_runner, rootfs)
    assert result['changed'] is False
    assert result['password_state'] == 'kept'
    assert 'up to date' in result['msg']
    assert snapshot(path) == before
    assert_secret_free(result, password_in(path))


def test_a_temporary_file_left_by_a_killed_write_is_removed_even_when_the_file_is_right(module_runner, rootfs):
    run(module_runner, rootfs)
    path = conf_path(rootfs)
    before = snapshot(path)
    # What a write killed between its temporary file and its rename leaves (it may hold a
    # password, and the staging rootfs it sits in gets flashed).
    (path.parent / '.device.conf.k1ll3d.tmp').write_text('AZAION_DEVICE_PASSWORD=0123')
    result = run(module_runner, rootfs)
    assert result['changed'] is False and snapshot(path) == before
    assert listing(path.parent) == ['device.conf']
    # A rewrite removes them too, and leaves other files alone.
    (path.parent / '.device.conf.k1ll3d.tmp').write_text('partial')
    (path.parent / '.other.conf.x.tmp').write_text('not ours')
    run(module_runner, rootfs, rotate=True)
    assert listing(path.parent) == ['.other.conf.x.tmp', 'device.conf']


def test_keeps_existing_valid_password(module_runner, rootfs):
    path = write_conf(rootfs, '# identity\nAZAION_DEVICE_EMAIL=%s\nAZAION_DEVICE_PASSWORD=%s\n' % (EMAIL, PW))
    before = snapshot(path)
    result = run(module_runner, rootfs)
    assert result['changed'] is False and result['password_state'] == 'kept'
    assert snapshot(path) == before
    assert_secret_free(result, PW)


def test_email_change_generates_new_password(module_runner, rootfs):
    path = write_conf(rootfs, 'AZAION_DEVICE_EMAIL=%s\nAZAION_DEVICE_PASSWORD=%s\n' % (OTHER_EMAIL, PW))
    result = run(module_runner, rootfs)
    match = CONTENT_RE.match(path.read_text())
    assert match and match.group('email') == EMAIL
    assert match.group('pw') != PW
    assert result['changed'] is True and result['password_state'] == 'generated'
    assert OTHER_EMAIL in result['msg']
    assert_secret_free(result, PW, match.group('pw'))


def test_invalid_password_is_replaced(module_runner, rootfs):
    path = write_conf(rootfs, 'AZAION_DEVICE_EMAIL=%s\nAZAION_DEVICE_PASSWORD=changeme\n' % EMAIL)
    result = run(module_runner, rootfs)
    assert result['password_state'] == 'generated'
    assert CONTENT_RE.match(path.read_text())
    assert_secret_free(result, 'changeme', password_in(path))


def test_rotate_forces_new_password(module_runner, rootfs):
    run(module_runner, rootfs)
    path = conf_path(rootfs)
    old = password_in(path)
    result = run(module_runner, rootfs, rotate=True)
    new = password_in(path)
    assert result['changed'] is True and result['password_state'] == 'rotated'
    assert new != old and CONTENT_RE.match(path.read_text())
    assert_secret_free(result, old, new)


def test_other_lines_kept_in_order(module_runner, rootfs):
    path = write_conf(rootfs, (
        '# Azaion device identity\n'
        'LOADER_PORT=8080\n'
        '\n'
        'AZAION_DEVICE_EMAIL=%s\n'
        'AZAION_DEVICE_PASSWORD=%s\n'
        'LOG_LEVEL = debug\n') % (OTHER_EMAIL, PW))
    run(module_runner, rootfs)
    lines = path.read_text().splitlines()
    assert lines[:4] == ['# Azaion device identity', 'LOADER_PORT=8080', '', 'AZAION_DEVICE_EMAIL=%s' % EMAIL]
    assert re.match(r'^AZAION_DEVICE_PASSWORD=[0-9a-f]{32}$', lines[4]) and lines[4] != 'AZAION_DEVICE_PASSWORD=' + PW
    assert lines[5:] == ['LOG_LEVEL = debug']


def test_missing_keys_are_appended(module_runner, rootfs):
    path = write_conf(rootfs, '# keep me\nFOO=bar\n')
    result = run(module_runner, rootfs)
    lines = path.read_text().splitlines()
    assert lines[:3] == ['# keep me', 'FOO=bar', 'AZAION_DEVICE_EMAIL=%s' % EMAIL]
    assert lines[3].startswith('AZAION_DEVICE_PASSWORD=') and len(lines) == 4
    assert result['password_state'] == 'generated'


def test_written_file_is_what_read_credentials_reads(module_runner, rootfs):
    run(module_runner, rootfs)
    email, password = dc.read_credentials(str(conf_path(rootfs)))
    assert email == EMAIL and dc.is_valid_password(password)


# --- owner, group, mode ---------------------------------------------------------------------

def _accounts(rootfs):
    (rootfs / 'etc').mkdir(exist_ok=True)
    (rootfs / 'etc' / 'passwd').write_text('root:x:0:0::/root:/bin/sh\nazloader:x:1234:1235::/opt:/bin/false\n')
    (rootfs / 'etc' / 'group').write_text('root:x:0:\nazloader:x:1235:\n')


def test_owner_and_group_from_rootfs_accounts(module_runner, rootfs):
    _accounts(rootfs)
    result = run(module_runner, rootfs, owner='azloader', group='azloader', mode='0640')
    st = os.stat(str(conf_path(rootfs)))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 1235, 0o640)
    assert (result['owner_uid'], result['group_gid'], result['mode']) == (1234, 1235, '0640')


def test_numeric_owner_without_passwd(module_runner, rootfs):
    result = run(module_runner, rootfs, owner='2001', group='2002')
    st = os.stat(str(conf_path(rootfs)))
    assert (st.st_uid, st.st_gid) == (2001, 2002)
    assert (result['owner_uid'], result['group_gid']) == (2001, 2002)


def test_only_ownership_and_mode_fixed_without_rewrite(module_runner, rootfs):
    _accounts(rootfs)
    run(module_runner, rootfs, owner='azloader', group='azloader')
    path = conf_path(rootfs)
    inode, dummy, content = snapshot(path)
    result = run(module_runner, rootfs, mode='0400')
    st = os.stat(str(path))
    assert result['changed'] is True and 'fixed' in result['msg']
    assert (st.st_ino, path.read_bytes()) == (inode, content)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o400)
    assert result['password_state'] == 'kept'


def test_unknown_owner_fails_before_writing(module_runner, rootfs):
    _accounts(rootfs)
    result = run(module_runner, rootfs, owner='ghost')
    assert result['failed'] is True
    assert 'ghost' in result['msg'] and str(rootfs / 'etc' / 'passwd') in result['msg']
    assert 'create the user in the image first or give a numeric uid' in result['msg']
    assert listing(rootfs / 'etc') == ['group', 'passwd']


def test_named_owner_without_rootfs_passwd_fails(module_runner, rootfs):
    result = run(module_runner, rootfs, group='azloader')
    assert result['failed'] is True
    assert 'azloader' in result['msg'] and 'etc/group' in result['msg'] and 'numeric gid' in result['msg']
    assert listing(rootfs) == []


@pytest.mark.parametrize('mode', ['u=rw', '0999', 'rw-------'])
def test_bad_mode_fails_before_writing(module_runner, rootfs, mode):
    result = run(module_runner, rootfs, mode=mode)
    assert result['failed'] is True
    assert repr(mode) in result['msg'] and "'0600'" in result['msg']
    assert listing(rootfs) == []


def test_bad_email_fails_before_writing(module_runner, rootfs):
    result = run(module_runner, rootfs, email='a@b\nAZAION_DEVICE_PASSWORD=x')
    assert result['failed'] is True and 'device_email filter' in result['msg']
    assert listing(rootfs) == []


# --- bad inputs and bad trees ---------------------------------------------------------------

def test_rootfs_dir_missing(module_runner, tmp_path):
    result = run(module_runner, tmp_path / 'nope')
    assert result['failed'] is True
    assert str(tmp_path / 'nope') in result['msg'] and 'does not exist' in result['msg']
    assert not (tmp_path / 'nope').exists()


def test_rootfs_dir_not_a_directory(module_runner, tmp_path):
    (tmp_path / 'file').write_text('')
    result = run(module_runner, tmp_path / 'file')
    assert result['failed'] is True and 'is not a directory' in result['msg']


def test_malformed_file_reports_line_and_stays_untouched(module_runner, rootfs):
    secret_line = 'oops %s' % PW
    path = write_conf(rootfs, 'AZAION_DEVICE_EMAIL=%s\nAZAION_DEVICE_PASSWORD=%s\n%s\n' % (EMAIL, PW, secret_line))
    before = snapshot(path)
    result = run(module_runner, rootfs)
    assert result['failed'] is True
    assert 'line 3' in result['msg'] and str(path) in result['msg']
    assert 'oops' not in result['msg']
    assert_secret_free(result, PW)
    assert snapshot(path) == before


def test_non_utf8_file_fails_untouched(module_runner, rootfs):
    path = conf_path(rootfs)
    path.parent.mkdir(parents=True)
    path.write_bytes(b'AZAION_DEVICE_PASSWORD=\xff\xfe\n')
    before = snapshot(path)
    result = run(module_runner, rootfs)
    assert result['failed'] is True and 'not UTF-8' in result['msg']
    assert snapshot(path) == before


def test_read_only_tree_fails_before_writing(module_runner, rootfs, monkeypatch):
    class ReadOnly(object):
        f_flag = os.ST_RDONLY
    monkeypatch.setattr(dc.os, 'statvfs', lambda path: ReadOnly())
    result = run(module_runner, rootfs)
    assert result['failed'] is True
    assert 'read-only' in result['msg'] and 'EROFS' in result['msg']
    assert listing(rootfs) == []


def test_permission_denied_on_write_is_explained(module_runner, rootfs, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, 'Permission denied')
    monkeypatch.setattr(dc, 'write_file_atomic', denied)
    result = run(module_runner, rootfs)
    assert result['failed'] is True
    assert 'permission denied (EACCES)' in result['msg'] and 'read-only for this user' in result['msg']
    assert not conf_path(rootfs).exists()


# --- symbolic links: never outside the rootfs ----------------------------------------------

def test_absolute_link_refused_and_nothing_written_outside(module_runner, rootfs, outside):
    (rootfs / 'etc').mkdir()
    os.symlink(str(outside), str(rootfs / 'etc' / 'azaion'))
    result = run(module_runner, rootfs)
    assert result['failed'] is True
    assert str(rootfs / 'etc' / 'azaion') in result['msg'] and str(outside) in result['msg']
    assert 'remove the link' in result['msg']
    assert listing(outside) == []


def test_relative_link_climbing_out_refused(module_runner, rootfs, outside):
    (rootfs / 'etc').mkdir()
    os.symlink('../../../outside', str(rootfs / 'etc' / 'azaion'))
    result = run(module_runner, rootfs)
    assert result['failed'] is True
    assert '../../../outside' in result['msg'] and 'climbs above the rootfs' in result['msg']
    assert listing(outside) == []


def test_absolute_etc_link_refused(module_runner, rootfs, outside):
    os.symlink(str(outside), str(rootfs / 'etc'))
    result = run(module_runner, rootfs)
    assert result['failed'] is True and 'absolute path' in result['msg']
    assert listing(outside) == []


def test_absolute_final_link_refused(module_runner, rootfs, outside):
    (rootfs / 'etc' / 'azaion').mkdir(parents=True)
    os.symlink(str(outside / 'device.conf'), str(conf_path(rootfs)))
    result = run(module_runner, rootfs)
    assert result['failed'] is True and 'absolute path' in result['msg']
    assert listing(outside) == []
    assert os.path.islink(str(conf_path(rootfs)))


def test_link_loop_refused(module_runner, rootfs):
    (rootfs / 'etc').mkdir()
    os.symlink('loop', str(rootfs / 'etc' / 'azaion'))
    os.symlink('azaion', str(rootfs / 'etc' / 'loop'))
    result = run(module_runner, rootfs)
    assert result['failed'] is True and 'too many levels of symbolic links' in result['msg']


def test_relative_links_inside_are_followed(module_runner, rootfs):
    (rootfs / 'etc').mkdir()
    (rootfs / 'var' / 'lib' / 'azaion').mkdir(parents=True)
    os.symlink('../var/lib/azaion', str(rootfs / 'etc' / 'azaion'))
    os.symlink('identity.conf', str(rootfs / 'var' / 'lib' / 'azaion' / 'device.conf'))
    result = run(module_runner, rootfs)
    real = rootfs / 'var' / 'lib' / 'azaion' / 'identity.conf'
    assert result['changed'] is True and result['path'] == str(real)
    assert CONTENT_RE.match(real.read_text())
    assert os.path.islink(str(rootfs / 'var' / 'lib' / 'azaion' / 'device.conf'))
    assert run(module_runner, rootfs)['changed'] is False


# --- check mode and diff --------------------------------------------------------------------

def test_check_mode_creates_nothing(module_runner, rootfs):
    result = run(module_runner, rootfs, check_mode=True)
    assert result['changed'] is True and result['password_state'] == 'generated'
    assert result['msg'].startswith('would write')
    assert listing(rootfs) == []


def test_check_mode_predicts_no_change(module_runner, rootfs):
    run(module_runner, rootfs)
    before = snapshot(conf_path(rootfs))
    result = run(module_runner, rootfs, check_mode=True)
    assert result['changed'] is False
    assert snapshot(conf_path(rootfs)) == before


@pytest.mark.parametrize('args', [dict(rotate=True), dict(email=OTHER_EMAIL), dict(mode='0644')])
def test_check_mode_predicts_change_without_writing(module_runner, rootfs, args):
    run(module_runner, rootfs)
    path = conf_path(rootfs)
    before = snapshot(path)
    before_mode = stat.S_IMODE(os.stat(str(path)).st_mode)
    result = run(module_runner, rootfs, check_mode=True, **args)
    assert result['changed'] is True
    assert snapshot(path) == before
    assert stat.S_IMODE(os.stat(str(path)).st_mode) == before_mode
    assert_secret_free(result, password_in(path))


def test_diff_masks_password_on_create(module_runner, rootfs):
    result = run(module_runner, rootfs, diff=True)
    password = password_in(conf_path(rootfs))
    diff = result['diff']
    assert diff['before'] == ''
    assert diff['after'] == 'AZAION_DEVICE_EMAIL=%s\nAZAION_DEVICE_PASSWORD=******** (new)\n' % EMAIL
    assert str(conf_path(rootfs)) in diff['after_header'] and str(conf_path(rootfs)) in diff['before_header']
    assert_secret_free(result, password)


def test_diff_masks_password_on_rotate(module_runner, rootfs):
    path = write_conf(rootfs, '# c\nAZAION_DEVICE_EMAIL=%s\nAZAION_DEVICE_PASSWORD=%s\n' % (EMAIL, PW))
    result = run(module_runner, rootfs, diff=True, rotate=True)
    diff = result['diff']
    assert diff['before'] == '# c\nAZAION_DEVICE_EMAIL=%s\nAZAION_DEVICE_PASSWORD=********\n' % EMAIL
    assert diff['after'] == '# c\nAZAION_DEVICE_EMAIL=%s\nAZAION_DEVICE_PASSWORD=******** (new)\n' % EMAIL
    assert_secret_free(result, PW, password_in(path))


def test_diff_when_kept_shows_no_new_marker(module_runner, rootfs):
    write_conf(rootfs, 'AZAION_DEVICE_EMAIL=%s\nAZAION_DEVICE_PASSWORD=%s\n' % (EMAIL, PW))
    result = run(module_runner, rootfs, diff=True, check_mode=True)
    assert result['diff']['before'] == result['diff']['after']
    assert '(new)' not in result['diff']['after']
    assert_secret_free(result, PW)


def test_passwords_are_registered_as_no_log_values(module_runner, rootfs, monkeypatch):
    """Defence in depth: even an unmasked diff would be scrubbed by Ansible's sanitiser."""
    write_conf(rootfs, 'AZAION_DEVICE_EMAIL=%s\nAZAION_DEVICE_PASSWORD=%s\n' % (EMAIL, PW))
    monkeypatch.setattr(dc, 'mask_device_conf', lambda text, new_password=False: text or '')
    result = run(module_runner, rootfs, diff=True, rotate=True)
    new = password_in(conf_path(rootfs))
    assert 'AZAION_DEVICE_PASSWORD=' in result['diff']['after']  # the unmasked text did reach the result
    assert_secret_free(result, PW, new)
