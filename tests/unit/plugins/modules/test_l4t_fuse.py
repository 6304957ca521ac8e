# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""azaion.jetson.l4t_fuse run end to end against the lab's fake L4T bundle and USB sysfs.

The bundle's odmfuse.sh / odmfuseread.sh are real programs with NVIDIA's argument syntax that
record every call and what they really burned (tests/lab/l4t_bundle.py), so every assertion
below is about what reached the (fake) device, not about mocks.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import subprocess

import pytest

from lab import l4t_bundle as l4t
from lab.usb_sysfs import add_device, make_usb_sysfs, remove_device

from ansible_collections.azaion.jetson.plugins.modules.l4t_fuse import main

NANO = 'jetson-orin-nano-devkit'
AGX = 'jetson-agx-orin-devkit'
SERIAL = 'AZJN-0042'
PORT = '1-3'
PKH = '0x' + '5a' * 32
FUSES = {'PublicKeyHash': PKH, 'SecurityMode': '0x1'}
SBK = '0x' + '0123456789abcdef' * 4
OTHER_PKH = '0x' + 'a5' * 32  # another product's key: PKH | OTHER_PKH would be 0xffff...
RESULT_KEYS = {'changed', 'fused', 'dry_run_ok', 'mismatches', 'log_path', 'msg', 'commands'}


class FuseLab(object):
    """A fake bundle, its lab state, a fake USB bus with one Orin Nano on 1-3, keys, a workdir."""

    def __init__(self, root, devices=None):
        self.root = str(root)
        self.sysfs = make_usb_sysfs(os.path.join(self.root, 'sysfs'),
                                    {PORT: '7523'} if devices is None else devices)
        self.state = os.path.join(self.root, 'lab-state')
        self.tree = l4t.make_bundle(os.path.join(self.root, 'bundle'), self.state, self.sysfs)
        self.keys = os.path.join(self.root, 'keys')
        os.makedirs(self.keys)
        self.pkc = self.write_key('pkc.pem', '-----BEGIN RSA PRIVATE KEY-----\nlab-pkc\n-----END RSA PRIVATE KEY-----\n')
        self.sbk = self.write_key('sbk.key', 'lab-sbk-secret-file-content\n')
        self.config = l4t.write_fuse_config(os.path.join(self.keys, 'fuse_config.xml'), FUSES)
        self.workdir = os.path.join(self.root, 'work')
        self.state_file = os.path.join(self.workdir, 'devices', SERIAL, 'state.json')
        self.log_dir = os.path.join(self.workdir, 'logs')

    def write_key(self, name, text):
        path = os.path.join(self.keys, name)
        with open(path, 'w') as key:
            key.write(text)
        return path

    def args(self, **overrides):
        args = dict(l4t_dir=self.tree, fuse_config=self.config, board_config=NANO, pkc_key=self.pkc,
                    usb_instance=PORT, usb_sysfs_root=self.sysfs, state_file=self.state_file,
                    serial=SERIAL, log_dir=self.log_dir, timeout=60)
        args.update(overrides)
        return dict((key, value) for key, value in args.items() if value is not None)

    def calls(self):
        return [(call['tool'], call['argv']) for call in l4t.tool_calls(self.state)]

    def odmfuse_calls(self):
        return [argv for tool, argv in self.calls() if tool == 'odmfuse.sh']

    def phase(self):
        with open(self.state_file) as state:
            return json.load(state)['phases']['fuse']

    def write_phase(self, **fields):
        os.makedirs(os.path.dirname(self.state_file))
        with open(self.state_file, 'w') as state:
            json.dump({'serial': SERIAL, 'phases': {'fuse': fields}}, state)

    def burn_by_hand(self, *args):
        """Run the fake odmfuse.sh directly, as a crashed earlier run or a person would have."""
        result = subprocess.run([os.path.join(self.tree, 'odmfuse.sh')] + list(args), cwd=self.tree,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
        assert result.returncode == 0, result.stdout
        return result


@pytest.fixture
def lab(tmp_path):
    return FuseLab(tmp_path)


def fuse(module_runner, lab, check_mode=False, **overrides):
    return module_runner(main, lab.args(**overrides), check_mode=check_mode)


def assert_nothing_ran(lab):
    assert lab.calls() == []
    assert l4t.fuse_events(lab.state) == []
    assert l4t.burned_fuses(lab.state, PORT) == {}


# -- the normal burn --------------------------------------------------------------------------

def test_dry_run_then_one_burn_then_read_back(module_runner, lab):
    result = fuse(module_runner, lab)
    assert not result.get('failed'), result['msg']
    assert RESULT_KEYS <= set(result)
    assert (result['changed'], result['fused'], result['dry_run_ok'], result['mismatches']) == (True, True, True, [])
    assert l4t.burned_fuses(lab.state, PORT) == FUSES

    common = ['-X', lab.config, '-i', '0x23', '-k', lab.pkc, NANO]
    # The fuses are read first (an unfused device answers without keys), then the dry run, the
    # burn and the read-back (with the key the device now needs).
    assert lab.calls() == [('odmfuseread.sh', ['-i', '0x23', NANO]),
                           ('odmfuse.sh', ['--test'] + common),
                           ('odmfuse.sh', common),
                           ('odmfuseread.sh', ['-i', '0x23', '-k', lab.pkc, NANO])]
    assert [argv[1:] for argv in result['commands']] == [['-i', '0x23', NANO], ['--test'] + common, common,
                                                         ['-i', '0x23', '-k', lab.pkc, NANO]]
    assert [event['event'] for event in l4t.fuse_events(lab.state)] == ['read', 'test', 'burn', 'read']
    assert all(event['usb_instance'] == PORT for event in l4t.fuse_events(lab.state))

    phase = lab.phase()
    assert (phase['status'], phase['fused'], phase['error'], phase['mismatches']) == ('done', True, None, [])
    assert phase['started'] <= phase['burn_started'] <= phase['finished']
    assert phase['seconds'] >= 0 and phase['log_path'] == result['log_path']

    log = result['log_path']
    assert os.path.dirname(log) == lab.log_dir
    assert re.match(r'^AZJN-0042-fuse-\d{8}T\d{6}Z\.log$', os.path.basename(log))
    with open(log) as log_file:
        text = log_file.read()
    assert 'nothing was burned' in text and 'burned successfully' in text and 'fuse_info.txt' in text
    assert 'lab-pkc' not in text and 'lab-pkc' not in json.dumps(result)  # key contents are never read
    assert 'verified 2 fuses' in result['msg']


def test_second_call_never_fuses_again_and_looks_at_nothing(module_runner, lab):
    first = fuse(module_runner, lab)
    assert first['fused'] is True
    calls = lab.calls()
    remove_device(lab.sysfs, PORT)  # even with no device (or another one) in recovery...
    add_device(lab.sysfs, '1-4', '7523')
    second = fuse(module_runner, lab)
    assert not second.get('failed'), second['msg']
    assert (second['changed'], second['fused'], second['commands'], second['log_path']) == (False, True, [], None)
    assert 'never fused twice' in second['msg']
    assert lab.calls() == calls  # no tool ran, not even the read-back
    assert l4t.fuse_events(lab.state)[-1]['event'] == 'read'


def test_board_config_auto_picks_the_config_of_the_module_in_recovery(module_runner, tmp_path):
    lab = FuseLab(tmp_path, {PORT: '7023'})  # an AGX Orin 64GB
    result = fuse(module_runner, lab, board_config='auto')
    assert result['fused'] is True, result['msg']
    assert {tuple(argv[-1:]) for _tool, argv in lab.calls()} == {(AGX,)}


# -- a device that arrives fused: read before the first burn -----------------------------------

def test_a_device_fused_by_another_station_is_recorded_fused_and_not_burned(module_runner, lab):
    l4t.prefuse_device(lab.state, PORT, FUSES)  # no state file here: fused by another station
    result = fuse(module_runner, lab)
    assert not result.get('failed'), result['msg']
    assert (result['changed'], result['fused'], result['dry_run_ok']) == (False, True, False)
    assert 'already holds the configured fuses (PublicKeyHash, SecurityMode read back' in result['msg']
    assert 'nothing was burned' in result['msg']
    # PKC fused: the read without keys is refused, the read with the configured key answers.
    assert lab.calls() == [('odmfuseread.sh', ['-i', '0x23', NANO]),
                           ('odmfuseread.sh', ['-i', '0x23', '-k', lab.pkc, NANO])]
    assert lab.odmfuse_calls() == []
    assert l4t.burned_fuses(lab.state, PORT) == FUSES
    phase = lab.phase()
    assert (phase['status'], phase['fused'], phase['burn_started'], phase['error']) == ('done', True, None, None)
    # From now on the state file says it: no tool runs again.
    again = fuse(module_runner, lab)
    assert 'never fused twice' in again['msg'] and len(lab.calls()) == 2


def test_a_device_fused_with_other_values_is_refused_naming_the_fuses(module_runner, lab):
    l4t.prefuse_device(lab.state, PORT, {'PublicKeyHash': OTHER_PKH})
    result = fuse(module_runner, lab)
    assert result['failed'] is True and result['fused'] is False and result['dry_run_ok'] is False
    assert 'refusing to fuse, the device holds fuses other than the configured ones' in result['msg']
    assert 'PublicKeyHash: expected %s, read back %s' % (PKH, OTHER_PKH) in result['msg']
    assert 'Nothing was burned' in result['msg'] and 'take it out of this batch' in result['msg']
    assert 'SecurityMode' not in result['msg'].split('Nothing was burned')[0]  # unburned, not a difference
    assert [m['name'] for m in result['mismatches']] == ['PublicKeyHash']
    assert lab.odmfuse_calls() == []
    # Without the read, odmfuse.sh would have burned over it: 0x5a.. | 0xa5.. = 0xff.. (see the lab's tests).
    assert l4t.burned_fuses(lab.state, PORT) == {'PublicKeyHash': OTHER_PKH}
    phase = lab.phase()
    assert (phase['status'], phase['fused'], phase['burn_started']) == ('failed', False, None)
    assert [m['name'] for m in phase['mismatches']] == ['PublicKeyHash'] and 'other than' in phase['error']
    # A re-run reads again and refuses again; it never burns.
    again = fuse(module_runner, lab)
    assert again['failed'] is True and lab.odmfuse_calls() == []


def test_a_half_burned_device_is_refused(module_runner, lab):
    l4t.prefuse_device(lab.state, PORT, {'SecurityMode': '0x1'})
    result = fuse(module_runner, lab)
    assert result['failed'] is True and result['fused'] is False
    assert 'holds part of the configured fuses: SecurityMode already burned as configured, PublicKeyHash ' \
        'still unburned' in result['msg']
    assert lab.odmfuse_calls() == [] and lab.phase()['status'] == 'failed'
    assert l4t.burned_fuses(lab.state, PORT) == {'SecurityMode': '0x1'}


def test_an_sbk_pkc_fused_device_is_read_with_its_keys_and_its_sbk_never_shown(module_runner, lab):
    fuses = {'PublicKeyHash': PKH, 'SecureBootKey': SBK, 'SecurityMode': '0x1'}
    config = l4t.write_fuse_config(os.path.join(lab.keys, 'sbk.xml'), fuses)
    l4t.prefuse_device(lab.state, PORT, fuses)
    result = fuse(module_runner, lab, fuse_config=config, sbk_key=lab.sbk)
    assert not result.get('failed'), result['msg']
    assert result['fused'] is True and lab.odmfuse_calls() == []
    assert lab.calls() == [('odmfuseread.sh', ['-i', '0x23', NANO]),
                           ('odmfuseread.sh', ['-i', '0x23', '-k', lab.pkc, '-S', lab.sbk, NANO])]
    assert 'SecureBootKey never read back and were not compared' in result['msg']
    with open(result['log_path']) as log_file:
        text = log_file.read()
    for where in (text, json.dumps(result), json.dumps(lab.phase())):
        assert SBK[2:] not in where and 'lab-sbk-secret' not in where


def test_a_keyed_device_and_no_keys_configured_is_refused_before_any_burn(module_runner, lab):
    # PKC fused by another station; this configuration burns no key, so no key is given.
    l4t.prefuse_device(lab.state, PORT, {'PublicKeyHash': PKH})
    config = l4t.write_fuse_config(os.path.join(lab.root, 'mode.xml'), {'SecurityMode': '0x1'})
    result = fuse(module_runner, lab, fuse_config=config, pkc_key=None)
    assert result['failed'] is True and result['fused'] is False
    assert 'reading its fuses before burning failed (odmfuseread.sh exited with 1)' in result['msg']
    assert 'whether it is fused already is unknown; nothing was burned' in result['msg']
    assert 'give pkc_key and sbk_key if it is' in result['msg']
    assert 'PKC fused: its key must be given with -k' in result['msg']  # the log tail
    assert lab.calls() == [('odmfuseread.sh', ['-i', '0x23', NANO])]
    phase = lab.phase()
    assert (phase['status'], phase['fused'], phase['burn_started']) == ('failed', False, None)


def test_check_mode_on_a_fused_device_runs_no_tool_and_says_what_a_run_would_do(module_runner, lab):
    l4t.prefuse_device(lab.state, PORT, {'PublicKeyHash': OTHER_PKH})
    result = fuse(module_runner, lab, check_mode=True)
    assert not result.get('failed'), result['msg']
    assert 'a real run first reads its fuses with odmfuseread.sh' in result['msg']
    assert 'holding other values or part of them: refused' in result['msg']
    assert lab.calls() == [] and l4t.fuse_events(lab.state) == []
    assert not os.path.exists(lab.state_file)


# -- refusals before any tool ---------------------------------------------------------------

def test_two_devices_in_recovery_are_refused_and_nothing_is_burned(module_runner, lab):
    add_device(lab.sysfs, '1-8.4', '7523')
    result = fuse(module_runner, lab)
    assert result['failed'] is True and result['fused'] is False
    assert 'odmfuse.sh cannot choose a USB port: disconnect or power off the others' in result['msg']
    assert '1-3, 1-8.4' in result['msg']
    assert_nothing_ran(lab)
    assert l4t.burned_fuses(lab.state, '1-8.4') == {}
    assert not os.path.exists(lab.state_file) and not os.path.exists(lab.log_dir)


def test_the_device_on_another_port_is_refused(module_runner, lab):
    result = fuse(module_runner, lab, usb_instance='1-4')
    assert result['failed'] is True
    assert 'on USB port 1-3, not on 1-4' in result['msg']
    assert 'odmfuse.sh cannot choose a USB port' in result['msg']
    assert_nothing_ran(lab)


def test_no_device_in_recovery_is_refused(module_runner, tmp_path):
    lab = FuseLab(tmp_path, {})
    result = fuse(module_runner, lab)
    assert result['failed'] is True and 'no Jetson is in recovery mode' in result['msg']
    assert_nothing_ran(lab)


def test_check_mode_runs_no_tool_and_writes_nothing(module_runner, lab):
    result = fuse(module_runner, lab, check_mode=True)
    assert not result.get('failed'), result['msg']
    assert (result['changed'], result['fused'], result['dry_run_ok'], result['commands']) == (True, False, False, [])
    assert 'would fuse' in result['msg'] and 'first reads its fuses with odmfuseread.sh' in result['msg']
    assert_nothing_ran(lab)
    assert not os.path.exists(lab.state_file) and not os.path.exists(lab.log_dir)


def test_check_mode_still_refuses_two_devices(module_runner, lab):
    add_device(lab.sysfs, '1-4', '7523')
    result = fuse(module_runner, lab, check_mode=True)
    assert result['failed'] is True and 'cannot choose a USB port' in result['msg']
    assert_nothing_ran(lab)


NOT_XML = 'this is not xml <'
PARTITIONS = '<partition_layout version="01.00.0000"/>\n'
WRONG_MAGIC = '<genericfuse MagicId="0x46555345" version="1.0.0"><fuse name="SecurityMode" size="4" value="0x1"/></genericfuse>\n'
EMPTY = '<genericfuse MagicId="0x45535546" version="1.0.0"></genericfuse>\n'
BAD_VALUE = '<genericfuse MagicId="0x45535546"><fuse name="SecurityMode" size="4" value="0xZZ"/></genericfuse>\n'
TOO_BIG = '<genericfuse MagicId="0x45535546"><fuse name="SecurityMode" size="1" value="0x123"/></genericfuse>\n'
SHORT_SBK = ('<genericfuse MagicId="0x45535546"><fuse name="SecureBootKey" size="32" value="0x1234"/>'
             '<fuse name="SecurityMode" size="4" value="0x1"/></genericfuse>\n')
ONLY_KEYS = ('<genericfuse MagicId="0x45535546"><fuse name="OemK1" size="32" value="0x%s"/></genericfuse>\n'
             % ('ab' * 32))


@pytest.mark.parametrize('text, message', [
    (NOT_XML, 'is not XML'),
    (PARTITIONS, 'not an NVIDIA fuse configuration'),
    (WRONG_MAGIC, 'not an NVIDIA fuse configuration'),
    (EMPTY, 'names no fuse'),
    (BAD_VALUE, 'is not hexadecimal'),
    (TOO_BIG, 'longer than its size'),
    (SHORT_SBK, 'SecureBootKey must be 32 bytes'),
    (ONLY_KEYS, 'could not be verified'),
])
def test_a_bad_fuse_config_is_refused_before_any_tool(module_runner, lab, text, message):
    with open(lab.config, 'w') as config:
        config.write(text)
    result = fuse(module_runner, lab)
    assert result['failed'] is True
    assert message in result['msg'] and lab.config in result['msg']
    assert_nothing_ran(lab)
    assert not os.path.exists(lab.state_file)


@pytest.mark.parametrize('overrides, message', [
    (dict(fuse_config='{keys}/missing.xml'), 'fuse configuration {keys}/missing.xml does not exist'),
    (dict(pkc_key='{keys}/no-such.pem'), 'pkc_key {keys}/no-such.pem does not exist'),
    (dict(sbk_key='{keys}/no-such.key'), 'sbk_key {keys}/no-such.key does not exist'),
    (dict(pkc_key='{keys}'), 'pkc_key {keys} does not exist or is not a file'),
    (dict(pkc_key=None), 'burns PublicKeyHash'),
    (dict(board_config='jetson-unknown-devkit'), 'has no jetson-unknown-devkit.conf'),
    (dict(board_config='../../etc/passwd'), 'is not a board configuration name'),
    (dict(chip_id='23'), 'is not a hexadecimal Tegra id'),
    (dict(serial='../AZJN'), 'names the log file'),
    (dict(usb_instance='usb1'), 'is not a USB port path'),
    (dict(timeout=0), 'timeout must be a positive number'),
])
def test_bad_inputs_are_refused_before_any_tool(module_runner, lab, overrides, message):
    overrides = dict((key, value.format(keys=lab.keys) if isinstance(value, str) else value)
                     for key, value in overrides.items())
    result = fuse(module_runner, lab, **overrides)
    assert result['failed'] is True
    assert message.format(keys=lab.keys) in result['msg']
    assert_nothing_ran(lab)


def test_a_tree_without_the_fuse_tools_is_refused(module_runner, lab):
    os.unlink(os.path.join(lab.tree, 'odmfuseread.sh'))
    result = fuse(module_runner, lab)
    assert result['failed'] is True and 'no executable odmfuseread.sh' in result['msg']
    assert_nothing_ran(lab)


# -- failures of the tools -------------------------------------------------------------------

def test_a_failed_dry_run_burns_nothing(module_runner, lab):
    # An odmfuse.sh whose pre-burn processing fails (as NVIDIA's does when tegraparser rejects
    # the configuration or the board cannot be probed).
    odmfuse = os.path.join(lab.tree, 'odmfuse.sh')
    with open(odmfuse, 'w') as script:
        script.write('#!/bin/sh\necho "Error: probing the target board failed."\nexit 1\n')
    result = fuse(module_runner, lab)
    assert result['failed'] is True and result['dry_run_ok'] is False and result['fused'] is False
    assert 'the dry run failed (odmfuse.sh --test exited with 1); nothing was burned' in result['msg']
    assert 'probing the target board failed' in result['msg']  # the log tail
    common = ['-X', lab.config, '-i', '0x23', '-k', lab.pkc, NANO]
    assert [argv[1:] for argv in result['commands']] == [['-i', '0x23', NANO], ['--test'] + common]
    assert l4t.burned_fuses(lab.state, PORT) == {}
    phase = lab.phase()
    assert (phase['status'], phase['fused'], phase['burn_started']) == ('failed', False, None)

    # A failed dry run burned nothing, so the next run reads and starts with a dry run again (it
    # is not one of the runs after which a burn may have happened).
    again = fuse(module_runner, lab)
    assert [os.path.basename(argv[0]) for argv in again['commands']] == ['odmfuseread.sh', 'odmfuse.sh']
    assert again['commands'][1][1] == '--test'


def test_a_silent_burn_failure_is_caught_by_the_read_back(module_runner, lab):
    l4t.plant_silent_fuse_failure(lab.state, PORT)
    result = fuse(module_runner, lab)
    assert result['failed'] is True and result['fused'] is False and result['dry_run_ok'] is True
    assert l4t.burned_fuses(lab.state, PORT) == {}
    assert [event['event'] for event in l4t.fuse_events(lab.state)] == ['read', 'test', 'silent', 'read']
    assert 'odmfuse.sh reported success but the read-back differs' in result['msg']
    assert 'PublicKeyHash: expected %s, read back 0x0' % PKH in result['msg']
    assert 'do not retry blindly' in result['msg']
    assert 'burned successfully' in result['msg']  # the log tail shows what the tool claimed
    assert [m['name'] for m in result['mismatches']] == ['PublicKeyHash', 'SecurityMode']
    phase = lab.phase()
    assert (phase['status'], phase['fused']) == ('failed', False)
    assert phase['burn_started'] and [m['name'] for m in phase['mismatches']] == ['PublicKeyHash', 'SecurityMode']
    assert 'read-back differs' in phase['error']

    # A re-run never burns again: it reads back, still differs, and asks for a person.
    burns = len(lab.odmfuse_calls())
    again = fuse(module_runner, lab)
    assert again['failed'] is True and len(lab.odmfuse_calls()) == burns
    assert lab.calls()[-1][0] == 'odmfuseread.sh'
    assert 'never burns a device twice' in again['msg']
    assert l4t.burned_fuses(lab.state, PORT) == {}


def test_a_burn_that_may_have_happened_is_read_back_not_repeated(module_runner, lab):
    # An earlier run recorded the start of the burn, burned, and died before the read-back.
    lab.write_phase(status='running', started=1764316800.0, burn_started=1764316801.0, fused=False)
    lab.burn_by_hand('-X', lab.config, '-i', '0x23', NANO)
    result = fuse(module_runner, lab)
    assert not result.get('failed'), result['msg']
    assert (result['changed'], result['fused']) == (False, True)
    assert 'an earlier run started burning at 2025-11-28 08:00:01 UTC' in result['msg']
    assert [tool for tool, _argv in lab.calls()] == ['odmfuse.sh', 'odmfuseread.sh']  # by hand, then the read
    assert [argv[0] for argv in result['commands']] == [os.path.join(lab.tree, 'odmfuseread.sh')]
    phase = lab.phase()
    assert (phase['status'], phase['fused'], phase['burn_started']) == ('done', True, 1764316801.0)
    # And from now on it is simply fused.
    assert 'never fused twice' in fuse(module_runner, lab)['msg']


def test_a_running_record_with_nothing_burned_asks_a_person(module_runner, lab):
    lab.write_phase(status='running', started=1764316800.0, burn_started=1764316801.0, fused=False)
    result = fuse(module_runner, lab)
    assert result['failed'] is True and result['fused'] is False
    assert lab.odmfuse_calls() == []  # no dry run, no burn
    assert [event['event'] for event in l4t.fuse_events(lab.state)] == ['read']
    assert 'read-back differs' in result['msg'] and 'a person must check it' in result['msg']
    assert l4t.burned_fuses(lab.state, PORT) == {}
    assert lab.phase()['status'] == 'failed'


def test_check_mode_after_an_interrupted_burn_runs_nothing(module_runner, lab):
    lab.write_phase(status='running', started=1764316800.0, burn_started=1764316801.0, fused=False)
    result = fuse(module_runner, lab, check_mode=True)
    assert (result['changed'], result['fused']) == (False, False)
    assert 'only read the fuses back' in result['msg']
    assert_nothing_ran(lab)


def test_secret_key_fuse_values_never_reach_the_log_or_the_result(module_runner, lab):
    config = l4t.write_fuse_config(os.path.join(lab.keys, 'sbk.xml'),
                                   {'PublicKeyHash': PKH, 'SecureBootKey': SBK, 'SecurityMode': '0x1'})
    result = fuse(module_runner, lab, fuse_config=config, sbk_key=lab.sbk)
    assert result['fused'] is True, result['msg']
    assert lab.calls()[-1] == ('odmfuseread.sh', ['-i', '0x23', '-k', lab.pkc, '-S', lab.sbk, NANO])
    assert 'SecureBootKey never read back' in result['msg']
    with open(result['log_path']) as log_file:
        text = log_file.read()
    assert 'fuse SecureBootKey would be burned with ********' in text  # the fake prints it, masked
    digits = SBK[2:]
    for where in (text, json.dumps(result), json.dumps(lab.phase())):
        assert digits not in where and digits.upper() not in where
        assert 'lab-sbk-secret' not in where


def test_an_sbk_config_needs_the_sbk_for_the_read_back(module_runner, lab):
    config = l4t.write_fuse_config(os.path.join(lab.keys, 'sbk.xml'), {'SecureBootKey': SBK, 'SecurityMode': '0x1'})
    result = fuse(module_runner, lab, fuse_config=config)
    assert result['failed'] is True and 'give sbk_key' in result['msg']
    assert SBK[2:] not in json.dumps(result)
    assert_nothing_ran(lab)


STALE = 'PublicKeyHash: %s\nSecurityMode: 0x1\n' % PKH


def test_a_stale_fuse_info_never_passes_for_a_read(module_runner, lab):
    # A read tool that claims success without writing fuse_info.txt, in a tree whose
    # fuse_info.txt from an earlier read shows exactly the configured fuses.
    with open(os.path.join(lab.tree, 'bootloader', 'fuse_info.txt'), 'w') as stale:
        stale.write(STALE)
    with open(os.path.join(lab.tree, 'odmfuseread.sh'), 'w') as script:
        script.write('#!/bin/sh\necho "ERROR: might be timeout in USB read."\nexit 0\n')
    result = fuse(module_runner, lab)
    assert result['failed'] is True and result['fused'] is False
    assert 'reading its fuses before burning failed (again with its keys, odmfuseread.sh wrote no' in result['msg']
    assert lab.odmfuse_calls() == [] and lab.phase()['status'] == 'failed'


def test_a_fuse_info_of_an_earlier_read_never_passes_for_the_read_back(module_runner, lab):
    # A read tool that reads the unfused device once, then claims success without writing
    # fuse_info.txt: what the first read wrote must not pass for the read-back (it would show a
    # difference instead of "unknown").
    l4t.plant_silent_fuse_failure(lab.state, PORT)
    reader = os.path.join(lab.tree, 'odmfuseread.sh')
    with open(reader, 'w') as script:
        script.write('#!/bin/sh\ncd "$(dirname "$0")"\n'
                     'if [ ! -e read-once ]; then\n'
                     '    touch read-once\n'
                     '    printf "PublicKeyHash: 0x0\\nSecurityMode: 0x0\\n" > bootloader/fuse_info.txt\n'
                     '    exit 0\n'
                     'fi\n'
                     'echo "ERROR: might be timeout in USB read."\nexit 0\n')
    result = fuse(module_runner, lab)
    assert result['failed'] is True and result['fused'] is False
    assert 'then the read-back failed (odmfuseread.sh wrote no' in result['msg']
    assert 'whether fuses were burned is unknown' in result['msg']
    assert 'timeout in USB read' in result['msg']  # the log tail
    assert (lab.phase()['status'], lab.phase()['fused']) == ('failed', False)
    assert lab.phase()['burn_started']


def test_relative_paths_reach_the_tools_as_absolute_paths(module_runner, lab, monkeypatch):
    monkeypatch.chdir(lab.keys)  # the tools run in l4t_dir, not here
    result = fuse(module_runner, lab, fuse_config='fuse_config.xml', pkc_key='pkc.pem')
    assert result['fused'] is True, result['msg']
    assert lab.calls()[2] == ('odmfuse.sh', ['-X', lab.config, '-i', '0x23', '-k', lab.pkc, NANO])
