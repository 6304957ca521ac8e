# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Pure logic of device.conf: resolution inside a rootfs, owner lookup, merge, render, mask."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import stat

import pytest

from ansible_collections.azaion.jetson.plugins.module_utils import _device_conf as dc
from ansible_collections.azaion.jetson.plugins.module_utils._device_conf import (
    DeviceConfError,
    RootfsPathError,
    check_email,
    check_writable,
    describe_write_error,
    format_mode,
    is_valid_password,
    lookup_id,
    make_dirs,
    mask_device_conf,
    parse_id_database,
    parse_mode,
    plan_device_conf,
    read_credentials,
    read_existing,
    resolve_in_rootfs,
)

EMAIL = 'azaion-jetson-0042@azaion.com'
PW_OLD = '0123456789abcdef0123456789abcdef'
PW_NEW = 'fedcba9876543210fedcba9876543210'


def _gen():
    return PW_NEW


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


# --- passwords, email, mode -----------------------------------------------------------------

def test_generate_password_is_32_lowercase_hex_and_random():
    first, second = dc.generate_password(), dc.generate_password()
    assert is_valid_password(first) and is_valid_password(second)
    assert first != second


@pytest.mark.parametrize('value, valid', [
    (PW_OLD, True),
    (PW_OLD.upper(), False),
    (PW_OLD[:-1], False),
    (PW_OLD + '0', False),
    ('g' * 32, False),
    ('', False),
    (None, False),
])
def test_is_valid_password(value, valid):
    assert is_valid_password(value) is valid


def test_check_email_accepts_plain_address():
    check_email(EMAIL)


@pytest.mark.parametrize('email', ['', 'no-at-sign', 'a@b\nAZAION_DEVICE_PASSWORD=x', 'a b@c', 'a@b=c', '"a"@b'])
def test_check_email_refuses_what_cannot_be_one_line_value(email):
    with pytest.raises(DeviceConfError, match='device_email filter'):
        check_email(email)


@pytest.mark.parametrize('value, mode', [
    ('0600', 0o600), ('600', 0o600), ('0o640', 0o640), (384, 0o600), ('0755', 0o755), ('01600', 0o1600),
])
def test_parse_mode(value, mode):
    assert parse_mode(value) == mode


@pytest.mark.parametrize('value', ['u=rw', '0999', '', 'rw', True, 0o17777, -1, None, 6.0])
def test_parse_mode_refuses(value):
    with pytest.raises(DeviceConfError, match="octal string such as '0600'"):
        parse_mode(value)


def test_format_mode():
    assert format_mode(0o600) == '0600'
    assert format_mode(0o1755) == '1755'


# --- resolution inside the rootfs -------------------------------------------------------------

def test_resolve_missing_tree_lists_dirs_to_create(rootfs):
    got = resolve_in_rootfs(str(rootfs), 'etc/azaion/device.conf')
    assert got.path == str(rootfs / 'etc' / 'azaion' / 'device.conf')
    assert got.exists is False
    assert got.missing_dirs == [str(rootfs / 'etc'), str(rootfs / 'etc' / 'azaion')]


def test_resolve_existing_file(rootfs):
    (rootfs / 'etc' / 'azaion').mkdir(parents=True)
    (rootfs / 'etc' / 'azaion' / 'device.conf').write_text('')
    got = resolve_in_rootfs(str(rootfs), 'etc/azaion/device.conf')
    assert (got.path, got.exists, got.missing_dirs) == (str(rootfs / 'etc/azaion/device.conf'), True, [])


def test_resolve_follows_relative_link_inside_tree(rootfs):
    (rootfs / 'etc').mkdir()
    (rootfs / 'var').mkdir()
    os.symlink('../var/lib/azaion', str(rootfs / 'etc' / 'azaion'))
    got = resolve_in_rootfs(str(rootfs), 'etc/azaion/device.conf')
    assert got.path == str(rootfs / 'var' / 'lib' / 'azaion' / 'device.conf')
    assert got.missing_dirs == [str(rootfs / 'var' / 'lib'), str(rootfs / 'var' / 'lib' / 'azaion')]


def test_resolve_follows_chain_and_final_link(rootfs):
    (rootfs / 'data' / 'conf').mkdir(parents=True)
    os.symlink('data', str(rootfs / 'etc'))
    os.symlink('conf', str(rootfs / 'data' / 'azaion'))
    (rootfs / 'data' / 'conf' / 'real.conf').write_text('')
    os.symlink('./real.conf', str(rootfs / 'data' / 'conf' / 'device.conf'))
    got = resolve_in_rootfs(str(rootfs), 'etc/azaion/device.conf')
    assert got.path == str(rootfs / 'data' / 'conf' / 'real.conf')
    assert got.exists is True


def test_resolve_dotdot_back_into_missing_part(rootfs):
    (rootfs / 'etc').mkdir()
    os.symlink('nothere/../azaion.d', str(rootfs / 'etc' / 'azaion'))
    got = resolve_in_rootfs(str(rootfs), 'etc/azaion/device.conf')
    assert got.path == str(rootfs / 'etc' / 'azaion.d' / 'device.conf')
    assert got.missing_dirs == [str(rootfs / 'etc' / 'azaion.d')]


def test_resolve_refuses_absolute_link(rootfs, outside):
    (rootfs / 'etc').mkdir()
    os.symlink(str(outside), str(rootfs / 'etc' / 'azaion'))
    with pytest.raises(RootfsPathError) as info:
        resolve_in_rootfs(str(rootfs), 'etc/azaion/device.conf')
    msg = str(info.value)
    assert str(rootfs / 'etc' / 'azaion') in msg
    assert str(outside) in msg
    assert 'absolute' in msg and 'remove the link' in msg


def test_resolve_refuses_absolute_link_even_if_it_points_inside(rootfs):
    # On the device "/etc/real" means something else than rootfs/etc/real on the station.
    (rootfs / 'etc' / 'real').mkdir(parents=True)
    os.symlink('/etc/real', str(rootfs / 'etc' / 'azaion'))
    with pytest.raises(RootfsPathError, match='absolute path /etc/real'):
        resolve_in_rootfs(str(rootfs), 'etc/azaion/device.conf')


def test_resolve_refuses_relative_link_climbing_out(rootfs, outside):
    (rootfs / 'etc').mkdir()
    os.symlink('../../outside', str(rootfs / 'etc' / 'azaion'))
    with pytest.raises(RootfsPathError) as info:
        resolve_in_rootfs(str(rootfs), 'etc/azaion/device.conf')
    msg = str(info.value)
    assert str(rootfs / 'etc' / 'azaion') in msg and '../../outside' in msg
    assert 'climbs above the rootfs' in msg


def test_resolve_refuses_etc_link_to_station_etc(rootfs):
    os.symlink('/etc', str(rootfs / 'etc'))
    with pytest.raises(RootfsPathError, match=r'/etc is a symbolic link to the absolute path /etc'):
        resolve_in_rootfs(str(rootfs), 'etc/azaion/device.conf')


def test_resolve_refuses_final_absolute_link(rootfs, outside):
    (rootfs / 'etc' / 'azaion').mkdir(parents=True)
    os.symlink(str(outside / 'device.conf'), str(rootfs / 'etc' / 'azaion' / 'device.conf'))
    with pytest.raises(RootfsPathError, match='device.conf is a symbolic link to the absolute path'):
        resolve_in_rootfs(str(rootfs), 'etc/azaion/device.conf')


def test_resolve_refuses_loop(rootfs):
    (rootfs / 'etc').mkdir()
    os.symlink('b', str(rootfs / 'etc' / 'azaion'))
    os.symlink('azaion', str(rootfs / 'etc' / 'b'))
    with pytest.raises(RootfsPathError, match='too many levels of symbolic links'):
        resolve_in_rootfs(str(rootfs), 'etc/azaion/device.conf')


def test_resolve_refuses_file_where_directory_needed(rootfs):
    (rootfs / 'etc').write_text('')
    with pytest.raises(RootfsPathError, match='is not a directory'):
        resolve_in_rootfs(str(rootfs), 'etc/azaion/device.conf')


# --- owner / group from the rootfs ----------------------------------------------------------

PASSWD = 'root:x:0:0:root:/root:/bin/bash\n# comment\n+nis\nazloader:x:1234:1235::/opt/azaion:/bin/false\nbroken\n'
GROUP = 'root:x:0:\nazloader:x:1235:\n'


def _accounts(rootfs):
    (rootfs / 'etc').mkdir(exist_ok=True)
    (rootfs / 'etc' / 'passwd').write_text(PASSWD)
    (rootfs / 'etc' / 'group').write_text(GROUP)


def test_parse_id_database_skips_odd_lines():
    assert parse_id_database(PASSWD) == {'root': 0, 'azloader': 1234}


def test_lookup_names_in_rootfs(rootfs):
    _accounts(rootfs)
    assert lookup_id(str(rootfs), 'azloader', 'passwd') == 1234
    assert lookup_id(str(rootfs), 'azloader', 'group') == 1235
    assert lookup_id(str(rootfs), 'root', 'passwd') == 0


def test_lookup_numeric_needs_no_database(rootfs):
    assert lookup_id(str(rootfs), '4321', 'passwd') == 4321
    assert lookup_id(str(rootfs), '0', 'group') == 0


def test_lookup_root_without_passwd(rootfs):
    assert lookup_id(str(rootfs), 'root', 'passwd') == 0
    assert lookup_id(str(rootfs), 'root', 'group') == 0


def test_lookup_name_without_passwd_fails(rootfs):
    with pytest.raises(DeviceConfError) as info:
        lookup_id(str(rootfs), 'azloader', 'passwd')
    msg = str(info.value)
    assert 'azloader' in msg and 'etc/passwd' in msg and 'numeric uid' in msg


def test_lookup_unknown_name_fails_with_fix(rootfs):
    _accounts(rootfs)
    with pytest.raises(DeviceConfError) as info:
        lookup_id(str(rootfs), 'nobody-here', 'group')
    msg = str(info.value)
    assert 'nobody-here' in msg and str(rootfs / 'etc' / 'group') in msg
    assert 'create the group in the image first or give a numeric gid' in msg


def test_lookup_does_not_use_station_database(rootfs):
    # "daemon" exists on virtually every station, but not in this image.
    _accounts(rootfs)
    with pytest.raises(DeviceConfError, match='daemon'):
        lookup_id(str(rootfs), 'daemon', 'passwd')


def test_lookup_follows_relative_link_to_passwd(rootfs):
    (rootfs / 'usr' / 'share').mkdir(parents=True)
    (rootfs / 'usr' / 'share' / 'passwd').write_text(PASSWD)
    (rootfs / 'etc').mkdir()
    os.symlink('../usr/share/passwd', str(rootfs / 'etc' / 'passwd'))
    assert lookup_id(str(rootfs), 'azloader', 'passwd') == 1234


def test_lookup_refuses_absolute_link_to_passwd(rootfs):
    (rootfs / 'etc').mkdir()
    os.symlink('/etc/passwd', str(rootfs / 'etc' / 'passwd'))
    with pytest.raises(RootfsPathError, match='absolute path /etc/passwd'):
        lookup_id(str(rootfs), 'root', 'passwd')


# --- merge and render -----------------------------------------------------------------------

def _text(email=EMAIL, password=PW_OLD):
    return 'AZAION_DEVICE_EMAIL=%s\nAZAION_DEVICE_PASSWORD=%s\n' % (email, password)


def test_plan_new_file():
    plan = plan_device_conf(None, EMAIL, generate=_gen)
    assert plan['text'] == _text(password=PW_NEW)
    assert plan['password_state'] == 'generated'
    assert plan['password_changed'] is True
    assert plan['secrets'] == [PW_NEW]


def test_plan_keeps_valid_password_for_same_email():
    plan = plan_device_conf(_text(), EMAIL, generate=_gen)
    assert plan['text'] == _text()
    assert plan['password_state'] == 'kept'
    assert plan['password_changed'] is False
    assert plan['secrets'] == [PW_OLD]


def test_plan_email_change_generates():
    plan = plan_device_conf(_text(email='old@azaion.com'), EMAIL, generate=_gen)
    assert plan['text'] == _text(password=PW_NEW)
    assert plan['password_state'] == 'generated'
    assert 'old@azaion.com' in plan['reason']
    assert set(plan['secrets']) == {PW_OLD, PW_NEW}


@pytest.mark.parametrize('bad', ['', 'short', PW_OLD.upper(), 'changeme'])
def test_plan_invalid_password_generates(bad):
    plan = plan_device_conf(_text(password=bad), EMAIL, generate=_gen)
    assert plan['text'] == _text(password=PW_NEW)
    assert plan['password_state'] == 'generated'
    if bad:
        assert bad not in plan['reason']


def test_plan_rotate():
    plan = plan_device_conf(_text(), EMAIL, rotate=True, generate=_gen)
    assert plan['text'] == _text(password=PW_NEW)
    assert plan['password_state'] == 'rotated'


def test_plan_rotate_without_password_is_generated():
    plan = plan_device_conf('AZAION_DEVICE_EMAIL=%s\n' % EMAIL, EMAIL, rotate=True, generate=_gen)
    assert plan['password_state'] == 'generated'


def test_plan_keeps_other_lines_in_order_and_updates_in_place():
    text = ('# Azaion device identity\n'
            'AZAION_DEVICE_PASSWORD=%s\n'
            '\n'
            'LOADER_PORT = 8080\n'
            'AZAION_DEVICE_EMAIL=old@azaion.com\n'
            '  # trailing comment\n') % PW_OLD
    plan = plan_device_conf(text, EMAIL, generate=_gen)
    assert plan['text'] == ('# Azaion device identity\n'
                            'AZAION_DEVICE_PASSWORD=%s\n'
                            '\n'
                            'LOADER_PORT = 8080\n'
                            'AZAION_DEVICE_EMAIL=%s\n'
                            '  # trailing comment\n') % (PW_NEW, EMAIL)


def test_plan_appends_missing_keys_after_other_lines():
    plan = plan_device_conf('# hello\nFOO=bar\n', EMAIL, generate=_gen)
    assert plan['text'] == '# hello\nFOO=bar\n' + _text(password=PW_NEW)


def test_plan_drops_duplicate_keys_last_value_wins():
    text = _text(password='bad') + 'AZAION_DEVICE_PASSWORD=%s\nX=1\n' % PW_OLD
    plan = plan_device_conf(text, EMAIL, generate=_gen)
    assert plan['password_state'] == 'kept'
    assert plan['text'] == _text() + 'X=1\n'


def test_plan_malformed_names_line_not_content():
    text = 'AZAION_DEVICE_PASSWORD=%s\nthis line has the secret %s\n' % (PW_OLD, PW_OLD)
    with pytest.raises(DeviceConfError) as info:
        plan_device_conf(text, EMAIL, path='/x/device.conf', generate=_gen)
    msg = str(info.value)
    assert 'line 2' in msg and '/x/device.conf' in msg
    assert PW_OLD not in msg and 'secret' not in msg


def test_rendered_file_is_read_back_by_read_credentials(tmp_path):
    plan = plan_device_conf('# c\nFOO=bar\n', EMAIL, generate=_gen)
    path = tmp_path / 'device.conf'
    path.write_text(plan['text'])
    assert read_credentials(str(path)) == (EMAIL, PW_NEW)


def test_mask_hides_every_password():
    text = '# c\n' + _text() + ' AZAION_DEVICE_PASSWORD = %s\n' % PW_NEW
    masked = mask_device_conf(text)
    assert PW_OLD not in masked and PW_NEW not in masked
    assert masked == ('# c\nAZAION_DEVICE_EMAIL=%s\nAZAION_DEVICE_PASSWORD=********\n'
                      ' AZAION_DEVICE_PASSWORD =********\n' % EMAIL)


def test_mask_marks_new_password_and_handles_absent_file():
    assert mask_device_conf(_text(), new_password=True).endswith('AZAION_DEVICE_PASSWORD=******** (new)\n')
    assert mask_device_conf(None) == ''


# --- reading and writing --------------------------------------------------------------------

def test_read_existing_missing_is_none(tmp_path):
    assert read_existing(str(tmp_path / 'nope')) is None


def test_read_existing_text(tmp_path):
    (tmp_path / 'f').write_text('A=1\n')
    assert read_existing(str(tmp_path / 'f')) == 'A=1\n'


def test_read_existing_not_utf8(tmp_path):
    (tmp_path / 'f').write_bytes(b'AZAION_DEVICE_PASSWORD=\xff\xfe\n')
    with pytest.raises(DeviceConfError, match='is not UTF-8 text'):
        read_existing(str(tmp_path / 'f'))


def test_read_existing_not_regular(tmp_path):
    (tmp_path / 'd').mkdir()
    with pytest.raises(DeviceConfError, match='not a regular file'):
        read_existing(str(tmp_path / 'd'))


def test_read_existing_unreadable(tmp_path, monkeypatch):
    (tmp_path / 'f').write_text('A=1\n')

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, 'Permission denied')
    monkeypatch.setattr(dc.os, 'open', denied)
    with pytest.raises(DeviceConfError, match='cannot read the existing .*Permission denied; make it readable'):
        read_existing(str(tmp_path / 'f'))


def test_describe_write_error():
    assert 'read-only (EROFS)' in describe_write_error('/r/x', OSError(errno.EROFS, 'Read-only file system'))
    assert 'permission denied (EACCES)' in describe_write_error('/r/x', OSError(errno.EACCES, 'Permission denied'))
    assert 'No space' in describe_write_error('/r/x', OSError(errno.ENOSPC, 'No space left on device'))


def test_check_writable_detects_read_only_fs(tmp_path, monkeypatch):
    class ReadOnly(object):
        f_flag = os.ST_RDONLY
    monkeypatch.setattr(dc.os, 'statvfs', lambda path: ReadOnly())
    with pytest.raises(OSError) as info:
        check_writable(str(tmp_path / 'missing' / 'dirs' / 'file'))
    assert info.value.errno == errno.EROFS
    assert info.value.filename == str(tmp_path)


def test_make_dirs_mode_ignores_umask(tmp_path):
    old = os.umask(0o077)
    try:
        make_dirs([str(tmp_path / 'a'), str(tmp_path / 'a' / 'b')])
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(str(tmp_path / 'a' / 'b')).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(str(tmp_path / 'a')).st_mode) == 0o755


def test_make_dirs_refuses_link_appearing(tmp_path):
    os.symlink('elsewhere', str(tmp_path / 'a'))
    with pytest.raises(DeviceConfError, match='not a directory'):
        make_dirs([str(tmp_path / 'a')])
