# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""azaion.jetson.l4t_fuse run end to end against the lab's fake L4T bundle and USB sysfs.

The bundle's tegrarcm_v2 / odmfuse.sh / odmfuseread.sh / tegrasign_v3.py are real programs with
NVIDIA's argument syntax, as unkind as NVIDIA's r36.2 tools: they record every call and what they
really burned, the device's burner stops silently at a fuse it cannot burn and odmfuse.sh still
exits 0, odmfuseread.sh prints zero-padded values without 0x, a PKC-fused device answers only
tools given ITS key (tests/lab/l4t_bundle.py, tests/lab/l4t_scripts/lab_common.sh). So every
assertion below is about what reached the (fake) device, not about mocks. The keys are real
keys (tests/lab/keys.py): the configuration's PublicKeyHash is the hash of the key.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import shutil
import stat
import subprocess
import time

import pytest

from lab import keys
from lab import l4t_bundle as l4t
from lab.processes import in_thread
from lab.usb_sysfs import add_device, make_usb_sysfs, remove_device

from ansible_collections.azaion.jetson.plugins.module_utils._fuse import Fuser
from ansible_collections.azaion.jetson.plugins.module_utils._slots import FlashSlots
from ansible_collections.azaion.jetson.plugins.modules.l4t_fuse import main

NANO = 'jetson-orin-nano-devkit'
AGX = 'jetson-agx-orin-devkit'
SERIAL = 'AZJN-0042'
PORT = '1-3'
SBK_DIGITS = '0123456789abcdef' * 4
SBK = '0x' + SBK_DIGITS
OEM_HELD = '0x' + 'f0' * 32  # an OEM key another station burned (never read back)
OEM_NEW = '0x' + '0f' * 32   # burned over it, it would clear bits: the device's burner stops there
BURN_FILE = '.azaion-fuse-burn.xml'
RESULT_KEYS = {'changed', 'fused', 'dry_run_ok', 'mismatches', 'log_path', 'msg', 'commands'}
ECID = '000123' + 'AB' * 13
OTHER_ECID = '000123' + 'CD' * 13


class FuseLab(object):
    """A fake bundle, its lab state, a fake USB bus with one Orin Nano on 1-3, real keys, a workdir."""

    def __init__(self, root, key_files, devices=None, fuse_seconds=0.0):
        self.root = str(root)
        self.sysfs = make_usb_sysfs(os.path.join(self.root, 'sysfs'), {})
        for port, product in ({PORT: '7523'} if devices is None else devices).items():
            add_device(self.sysfs, port, product, ecid=ECID if port == PORT else None)
        self.state = os.path.join(self.root, 'lab-state')
        self.tree = l4t.make_bundle(os.path.join(self.root, 'bundle'), self.state, self.sysfs,
                                    fuse_seconds=fuse_seconds)
        self.keys = os.path.join(self.root, 'keys')
        os.makedirs(self.keys)
        self.pkc = self.copy_key(key_files['pkc'], 'pkc.pem')
        self.other_pkc = self.copy_key(key_files['other'], 'other.pem')
        self.pkh, self.other_pkh = key_files['hashes']['pkc'], key_files['hashes']['other']
        self.sbk = os.path.join(self.keys, 'sbk.key')
        keys.make_sbk_key(self.sbk, SBK_DIGITS)
        self.ekb = os.path.join(self.keys, 'eks_t234.img')
        with open(self.ekb, 'wb') as ekb:
            ekb.write(b'lab EKB image\n')
        self.fuses = {'PublicKeyHash': self.pkh, 'BootSecurityInfo': '0x202', 'SecurityMode': '0x1'}
        self.config = l4t.write_fuse_config(os.path.join(self.keys, 'fuse_config.xml'), self.fuses)
        self.burn_file = os.path.join(self.tree, BURN_FILE)
        self.workdir = os.path.join(self.root, 'work')
        self.state_file = os.path.join(self.workdir, 'devices', SERIAL, 'state.json')
        self.log_dir = os.path.join(self.workdir, 'logs')
        self.slots_dir = os.path.join(self.workdir, 'slots')

    def copy_key(self, source, name):
        path = os.path.join(self.keys, name)
        shutil.copyfile(source, path)
        os.chmod(path, 0o600)
        return path

    def write_config(self, name, fuses, magic=l4t.FUSE_MAGIC):
        return l4t.write_fuse_config(os.path.join(self.keys, name), fuses, magic=magic)

    def args(self, **overrides):
        args = dict(l4t_dir=self.tree, fuse_config=self.config, board_config=NANO, pkc_key=self.pkc,
                    usb_instance=PORT, usb_sysfs_root=self.sysfs, state_file=self.state_file,
                    serial=SERIAL, log_dir=self.log_dir, timeout=60)
        args.update(overrides)
        return dict((key, value) for key, value in args.items() if value is not None)

    def calls(self):
        return [(call['tool'], call['argv']) for call in l4t.tool_calls(self.state)]

    def tools(self):
        return [tool for tool, _argv in self.calls()]

    def odmfuse_calls(self):
        return [argv for tool, argv in self.calls() if tool == 'odmfuse.sh']

    def burns(self):
        """The odmfuse.sh calls that burn (not --test)."""
        return [argv for argv in self.odmfuse_calls() if '--test' not in argv]

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

    def uid_call(self):
        return ('tegrarcm_v2', ['--new_session', '--chip', '0x23', '--instance', PORT, '--uid'])

    def wait_for_call(self, found, timeout=30):
        """Wait (polling the lab's tool-calls.log) until ``found(call)`` holds for a tool call
        record; the record, or None when the module finished first / the wait timed out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for call in l4t.tool_calls(self.state):
                if found(call):
                    return call
            time.sleep(0.01)
        return None


@pytest.fixture
def lab(tmp_path, key_files):
    return FuseLab(tmp_path, key_files)


def fuse(module_runner, lab, check_mode=False, **overrides):
    return module_runner(main, lab.args(**overrides), check_mode=check_mode)


def assert_nothing_ran(lab):
    assert lab.calls() == []
    assert l4t.fuse_events(lab.state) == []
    assert l4t.burned_fuses(lab.state, PORT) == {}


def assert_refused_before_any_tool(lab, result):
    assert result['failed'] is True and result['fused'] is False and result['commands'] == []
    assert_nothing_ran(lab)
    assert not os.path.exists(lab.state_file) and not os.path.exists(lab.log_dir)


def log_text(result):
    with open(result['log_path']) as log_file:
        return log_file.read()


def everything_written(lab, result):
    """The result, the state file, and every file the module wrote under its workdir."""
    texts = [json.dumps(result)]
    for top, _dirs, files in os.walk(lab.workdir):
        for name in files:
            with open(os.path.join(top, name), errors='replace') as handle:
                texts.append(handle.read())
    return texts


def pem_body(path):
    """The lines of a PEM key file between its BEGIN and END lines (the key material)."""
    with open(path) as pem:
        return [line for line in pem.read().splitlines() if line and not line.startswith('-----')]


def uart_starts(lab):
    """The fuses the device's burner started, in order, as its serial console shows them."""
    return [re.match(r'I> \d+\. Start (\w+) burn', line).group(1)
            for line in l4t.uart_log(lab.state, PORT) if re.match(r'I> \d+\. Start (\w+) burn', line)]


# -- the normal burn --------------------------------------------------------------------------

def test_pins_the_chip_reads_dry_runs_burns_once_and_reads_back(module_runner, lab):
    result = fuse(module_runner, lab)
    assert not result.get('failed'), result['msg']
    assert RESULT_KEYS <= set(result)
    assert (result['changed'], result['fused'], result['dry_run_ok'], result['mismatches']) == (True, True, True, [])
    assert l4t.burned_fuses(lab.state, PORT) == lab.fuses

    # The chip is pinned first, the fuses are read (an unfused device answers without keys), the
    # dry run and ONE burn get the module's own burn file (never the user's configuration, and no
    # key: the device is not fused yet), the read-back goes with the key the device now needs,
    # and the chip is pinned again after it.
    common = ['-X', lab.burn_file, '-i', '0x23', NANO]
    expected = [lab.uid_call(),
                ('odmfuseread.sh', ['-i', '0x23', NANO]),
                ('odmfuse.sh', ['--test'] + common),
                ('odmfuse.sh', common),
                ('odmfuseread.sh', ['-i', '0x23', '-k', lab.pkc, NANO]),
                lab.uid_call()]
    assert lab.calls() == expected
    assert [argv[1:] for argv in result['commands']] == [argv for _tool, argv in expected]
    assert len(lab.burns()) == 1 and len(lab.odmfuse_calls()) == 2
    assert [event['event'] for event in l4t.fuse_events(lab.state)] == ['read', 'test', 'burn', 'read']
    assert all(event['usb_instance'] == PORT and event['devices'] == [PORT] for event in l4t.fuse_events(lab.state))
    test, burn = [event for event in l4t.fuse_events(lab.state) if event['event'] in ('test', 'burn')]
    assert (test['verdict'], burn['verdict']) == ('dry-run', 'burned')
    assert 'I> Dry run detected, returning now.' in l4t.uart_log(lab.state, PORT)
    assert not os.path.exists(lab.burn_file)  # removed once the burn is over

    phase = lab.phase()
    assert (phase['status'], phase['fused'], phase['error'], phase['mismatches']) == ('done', True, None, [])
    assert phase['started'] <= phase['burn_started'] <= phase['finished']
    assert phase['dry_run_ok'] is True and phase['chip_uid'].endswith(ECID[2:].lower())
    assert phase['seconds'] >= 0 and phase['log_path'] == result['log_path']

    log = result['log_path']
    assert os.path.dirname(log) == lab.log_dir
    assert re.match(r'^AZJN-0042-fuse-\d{8}T\d{6}Z\.log$', os.path.basename(log))
    text = log_text(result)
    assert 'BR_CID: 0x' in text and 'burned successfully' in text and 'fuse_info.txt' in text
    for line in pem_body(lab.pkc):  # the key file's content is never read into anything
        assert all(line not in where for where in everything_written(lab, result))
    assert 'verified 3 fuses' in result['msg'] and PORT in result['msg']


def test_the_burner_gets_one_private_file_in_its_order_removed_afterwards(module_runner, tmp_path, key_files):
    lab = FuseLab(tmp_path, key_files, fuse_seconds=0.2)
    # In the user's order, OdmLock would lock ReservedOdm0 before it is burned and SecurityMode
    # would lock everything after it: the burner gets them last.
    fuses = dict([('SecurityMode', '0x1'), ('OdmLock', '0x1'), ('PublicKeyHash', lab.pkh),
                  ('ReservedOdm0', '0x5'), ('BootSecurityInfo', '0x202')])
    config = lab.write_config('ordered.xml', fuses)
    seen = {}

    def watch():
        call = lab.wait_for_call(lambda call: call['tool'] == 'odmfuse.sh')
        info = os.stat(lab.burn_file)
        seen.update(mode=stat.S_IMODE(info.st_mode), argv=call['argv'])

    thread, outcome = in_thread(watch)
    result = fuse(module_runner, lab, fuse_config=config)
    thread.join(30)
    assert 'error' not in outcome, outcome
    assert result['fused'] is True, result['msg']
    assert seen == dict(mode=0o600, argv=['--test', '-X', lab.burn_file, '-i', '0x23', NANO])
    assert not os.path.exists(lab.burn_file)
    assert all(lab.config not in argv and config not in argv for argv in lab.odmfuse_calls())
    starts = uart_starts(lab)
    order = ['PublicKeyHash', 'ReservedOdm0', 'BootSecurityInfo', 'OdmLock', 'SecurityMode']
    assert starts == order + order  # the dry run, then the burn
    assert l4t.burned_fuses(lab.state, PORT) == fuses


def test_second_call_never_fuses_again_and_looks_at_nothing(module_runner, lab):
    first = fuse(module_runner, lab)
    assert first['fused'] is True, first['msg']
    calls = lab.calls()
    remove_device(lab.sysfs, PORT)  # even with no device (or another one) in recovery...
    add_device(lab.sysfs, '1-4', '7523')
    second = fuse(module_runner, lab)
    assert not second.get('failed'), second['msg']
    assert (second['changed'], second['fused'], second['commands'], second['log_path']) == (False, True, [], None)
    assert 'never fused twice' in second['msg']
    assert lab.calls() == calls  # no tool ran, not even the chip's identity or a read-back
    assert l4t.fuse_events(lab.state)[-1]['event'] == 'read'


def test_board_config_auto_picks_the_config_of_the_module_in_recovery(module_runner, tmp_path, key_files):
    lab = FuseLab(tmp_path, key_files, {PORT: '7223'})  # an AGX Orin 32GB
    result = fuse(module_runner, lab, board_config='auto')
    assert result['fused'] is True, result['msg']
    assert {argv[-1] for tool, argv in lab.calls() if tool != 'tegrarcm_v2'} == {AGX}


def test_a_fresh_module_keeps_its_reserved_bits_and_is_fused(module_runner, lab):
    l4t.set_device_fuses(lab.state, PORT, {'BootSecurityInfo': '0x1e0'})  # as it leaves the factory
    result = fuse(module_runner, lab)
    assert not result.get('failed'), result['msg']
    assert (result['changed'], result['fused'], result['mismatches']) == (True, True, [])
    # The burner refuses to clear a bit: 0x202 alone would stop there. The module burned 0x3e2.
    burned = l4t.burned_fuses(lab.state, PORT)
    assert int(burned['BootSecurityInfo'], 16) == 0x3e2
    assert dict(burned, BootSecurityInfo=None) == dict(lab.fuses, BootSecurityInfo=None)
    assert [event.get('verdict') for event in l4t.fuse_events(lab.state) if event['event'] in ('test', 'burn')] \
        == ['dry-run', 'burned']
    assert not [line for line in l4t.uart_log(lab.state, PORT) if line.startswith('E>')]
    with open(os.path.join(lab.tree, 'bootloader', 'fuse_info.txt')) as info:
        assert 'BootSecurityInfo: 000003e2' in info.read()  # the read-back, as NVIDIA prints it
    assert lab.phase()['status'] == 'done'


# -- what the device holds before the first burn -------------------------------------------------

def test_a_device_fused_by_another_station_is_recorded_fused_and_not_burned(module_runner, lab):
    l4t.prefuse_device(lab.state, PORT, lab.fuses)  # no state file here: fused by another station
    result = fuse(module_runner, lab)
    assert not result.get('failed'), result['msg']
    assert (result['changed'], result['fused'], result['dry_run_ok']) == (False, True, False)
    assert 'already holds the configured fuses (PublicKeyHash, BootSecurityInfo, SecurityMode read back' \
        in result['msg']
    assert 'nothing was burned' in result['msg']
    # PKC fused: the read without keys is refused, the read with the configured key answers; the
    # chip is pinned again before it is recorded as fused.
    assert lab.calls() == [lab.uid_call(), ('odmfuseread.sh', ['-i', '0x23', NANO]),
                           ('odmfuseread.sh', ['-i', '0x23', '-k', lab.pkc, NANO]), lab.uid_call()]
    assert lab.odmfuse_calls() == []
    assert l4t.burned_fuses(lab.state, PORT) == lab.fuses
    phase = lab.phase()
    assert (phase['status'], phase['fused'], phase['burn_started'], phase['error']) == ('done', True, None, None)
    # From now on the state file says it: no tool runs again.
    again = fuse(module_runner, lab)
    assert 'never fused twice' in again['msg'] and len(lab.calls()) == 4


def test_a_device_fused_with_another_key_is_refused_and_nothing_is_burned(module_runner, lab):
    other = {'PublicKeyHash': lab.other_pkh, 'BootSecurityInfo': '0x202', 'SecurityMode': '0x1'}
    l4t.prefuse_device(lab.state, PORT, other)
    result = fuse(module_runner, lab)
    assert result['failed'] is True and result['fused'] is False and result['dry_run_ok'] is False
    # It answers only tools signed with ITS key: neither read gets through, so nothing is known.
    assert 'reading its fuses before burning failed (again with its keys' in result['msg']
    assert 'rejected the RCM messages signed with %s' % lab.pkc in result['msg']  # the log tail
    assert 'Nothing was burned' in result['msg']
    assert lab.tools() == ['tegrarcm_v2', 'odmfuseread.sh', 'odmfuseread.sh'] and lab.odmfuse_calls() == []
    assert l4t.burned_fuses(lab.state, PORT) == other
    phase = lab.phase()
    assert (phase['status'], phase['fused'], phase['burn_started']) == ('failed', False, None)
    # A re-run reads again and refuses again; it never burns.
    again = fuse(module_runner, lab)
    assert again['failed'] is True and lab.odmfuse_calls() == []


def test_a_device_holding_part_of_the_configuration_gets_the_rest(module_runner, lab):
    # ReservedOdm0 holds bit 0 of the configured 0x3: adding bit 1 is what a burn does.
    fuses = dict(lab.fuses, ReservedOdm0='0x3')
    config = lab.write_config('odm.xml', fuses)
    l4t.set_device_fuses(lab.state, PORT, {'ReservedOdm0': '0x1'})
    result = fuse(module_runner, lab, fuse_config=config)
    assert not result.get('failed'), result['msg']
    assert (result['changed'], result['fused']) == (True, True)
    assert len(lab.burns()) == 1
    burned = l4t.burned_fuses(lab.state, PORT)
    assert (int(burned['ReservedOdm0'], 16), burned['PublicKeyHash'], int(burned['SecurityMode'], 16)) \
        == (0x3, lab.pkh, 1)
    assert 'verified 4 fuses' in result['msg']


def test_a_pkc_fused_device_missing_only_security_mode_gets_it_with_its_key(module_runner, lab):
    # Half fused (by a run elsewhere that stopped): it answers only tools given its key, the
    # burner's too (NVIDIA's check_sbk_pkc), so the dry run and the burn get the key its read needed.
    l4t.prefuse_device(lab.state, PORT, {'PublicKeyHash': lab.pkh, 'BootSecurityInfo': '0x202'})
    result = fuse(module_runner, lab)
    assert not result.get('failed'), result['msg']
    common = ['-X', lab.burn_file, '-i', '0x23', '-k', lab.pkc, NANO]
    assert lab.calls() == [lab.uid_call(), ('odmfuseread.sh', ['-i', '0x23', NANO]),
                           ('odmfuseread.sh', ['-i', '0x23', '-k', lab.pkc, NANO]),
                           ('odmfuse.sh', ['--test'] + common), ('odmfuse.sh', common),
                           ('odmfuseread.sh', ['-i', '0x23', '-k', lab.pkc, NANO]), lab.uid_call()]
    assert l4t.burned_fuses(lab.state, PORT) == lab.fuses
    assert [line for line in l4t.uart_log(lab.state, PORT) if 'already burned with the same value' in line] \
        == ['I> Fuse is already burned with the same value'] * 4  # PublicKeyHash, BootSecurityInfo: test, burn


@pytest.mark.parametrize('held, extra, refusal', [
    # Another station burned RSA-3K's algorithm bit: 0x202 would clear it.
    ({'BootSecurityInfo': '0x1e1'}, {},
     'BootSecurityInfo would clear burned bits (0x1; configured 0x202, held 000001e1); fuse bits only go from 0 to 1'),
    ({'OdmLock': '0x1'}, {'ReservedOdm0': '0x5'}, 'ReservedOdm0 is locked by OdmLock bit 0'),
    ({'SecurityMode': '0x1'}, {}, 'SecurityMode is burned (read 00000001): no fuse can be added after it'),
], ids=['clears-a-bit', 'locked-reserved-odm', 'security-mode-burned'])
def test_what_nvidias_fuse_rules_forbid_over_what_the_device_holds_is_refused(module_runner, lab, held, extra,
                                                                              refusal):
    config = lab.write_config('rules.xml', dict(lab.fuses, **extra))
    l4t.set_device_fuses(lab.state, PORT, held)
    before = l4t.burned_fuses(lab.state, PORT)
    result = fuse(module_runner, lab, fuse_config=config)
    assert result['failed'] is True and result['fused'] is False and result['dry_run_ok'] is False
    assert "refusing to fuse, by NVIDIA's fuse rules: " in result['msg'] and refusal in result['msg']
    assert 'Nothing was burned' in result['msg'] and 'take it out of this batch' in result['msg']
    assert lab.tools() == ['tegrarcm_v2', 'odmfuseread.sh', 'tegrarcm_v2'] and lab.odmfuse_calls() == []
    assert l4t.burned_fuses(lab.state, PORT) == before
    assert l4t.uart_log(lab.state, PORT) == []  # the device's burner never ran, not even a dry run
    phase = lab.phase()
    assert (phase['status'], phase['fused'], phase['burn_started']) == ('failed', False, None)
    assert refusal in phase['error']


def test_a_keyed_device_and_no_keys_configured_is_refused_before_any_burn(module_runner, lab):
    # PKC fused by another station; this configuration burns no key, so no key is given.
    l4t.prefuse_device(lab.state, PORT, {'PublicKeyHash': lab.pkh, 'BootSecurityInfo': '0x202'})
    config = lab.write_config('mode.xml', {'SecurityMode': '0x1'})
    result = fuse(module_runner, lab, fuse_config=config, pkc_key=None)
    assert result['failed'] is True and result['fused'] is False
    assert 'reading its fuses before burning failed (odmfuseread.sh exited with 1)' in result['msg']
    assert 'whether it is fused already is unknown; a device PKC or SBK fused already answers only with its ' \
        'keys: give pkc_key and sbk_key if it is' in result['msg']
    assert 'PKC key file is not provided for PKC protected target board' in result['msg']  # the log tail
    assert lab.calls() == [lab.uid_call(), ('odmfuseread.sh', ['-i', '0x23', NANO])]
    phase = lab.phase()
    assert (phase['status'], phase['fused'], phase['burn_started']) == ('failed', False, None)


def test_check_mode_on_a_fused_device_runs_no_tool_and_says_what_a_run_would_do(module_runner, lab):
    l4t.prefuse_device(lab.state, PORT, {'PublicKeyHash': lab.other_pkh})
    result = fuse(module_runner, lab, check_mode=True)
    assert not result.get('failed'), result['msg']
    assert "a real run holds the station's lock, pins the chip's identity, reads its fuses with odmfuseread.sh" \
        in result['msg']
    assert 'another key, a locked fuse: refused, nothing burned' in result['msg']
    assert 'nothing was run in check mode' in result['msg']
    assert lab.calls() == [] and l4t.fuse_events(lab.state) == []
    assert not os.path.exists(lab.state_file)


# -- refusals before any tool ---------------------------------------------------------------

def test_two_devices_in_recovery_are_refused_and_nothing_is_burned(module_runner, lab):
    add_device(lab.sysfs, '1-8.4', '7523')
    result = fuse(module_runner, lab)
    assert result['failed'] is True and result['fused'] is False
    assert 'odmfuse.sh cannot choose a USB port: disconnect or power off the others' in result['msg']
    assert '1-3, 1-8.4' in result['msg'] and 'Nothing was burned' in result['msg']
    assert_refused_before_any_tool(lab, result)
    assert l4t.burned_fuses(lab.state, '1-8.4') == {}


def test_the_device_on_another_port_is_refused(module_runner, lab):
    result = fuse(module_runner, lab, usb_instance='1-4')
    assert result['failed'] is True
    assert 'on USB port 1-3, not on 1-4' in result['msg']
    assert 'odmfuse.sh cannot choose a USB port' in result['msg']
    assert_refused_before_any_tool(lab, result)


def test_no_device_in_recovery_is_refused(module_runner, tmp_path, key_files):
    lab = FuseLab(tmp_path, key_files, {})
    result = fuse(module_runner, lab)
    assert result['failed'] is True and 'no Jetson is in recovery mode' in result['msg']
    assert_refused_before_any_tool(lab, result)


def test_check_mode_runs_no_tool_and_writes_nothing(module_runner, lab):
    result = fuse(module_runner, lab, check_mode=True, slots_dir=lab.slots_dir)
    assert not result.get('failed'), result['msg']
    assert (result['changed'], result['fused'], result['dry_run_ok'], result['commands']) == (True, False, False, [])
    assert 'would fuse' in result['msg'] and 'reads its fuses with odmfuseread.sh' in result['msg']
    assert_nothing_ran(lab)
    assert not os.path.exists(lab.workdir)  # no state file, no log, no station lock


def test_check_mode_still_refuses_two_devices(module_runner, lab):
    add_device(lab.sysfs, '1-4', '7523')
    result = fuse(module_runner, lab, check_mode=True)
    assert result['failed'] is True and 'cannot choose a USB port' in result['msg']
    assert_nothing_ran(lab)


def test_check_mode_still_refuses_a_configuration_that_does_not_fit_the_key(module_runner, lab):
    config = lab.write_config('other.xml', dict(lab.fuses, PublicKeyHash=lab.other_pkh))
    result = fuse(module_runner, lab, check_mode=True, fuse_config=config)
    assert result['failed'] is True and 'but the hash of jetson_pkc_key' in result['msg']
    assert_refused_before_any_tool(lab, result)


NOT_XML = 'this is not xml <'
PARTITIONS = '<partition_layout version="01.00.0000"/>\n'
WRONG_MAGIC = '<genericfuse MagicId="0x46555345" version="1.0.0"><fuse name="SecurityMode" size="4" value="0x1"/></genericfuse>\n'
EMPTY = '<genericfuse MagicId="0x45535546" version="1.0.0"></genericfuse>\n'
BAD_VALUE = '<genericfuse MagicId="0x45535546"><fuse name="SecurityMode" size="4" value="0xZZ"/></genericfuse>\n'
TOO_BIG = '<genericfuse MagicId="0x45535546"><fuse name="SecurityMode" size="4" value="0x123456789"/></genericfuse>\n'
SHORT_SBK = ('<genericfuse MagicId="0x45535546"><fuse name="SecureBootKey" size="32" value="0x1234"/>'
             '<fuse name="SecurityMode" size="4" value="0x1"/></genericfuse>\n')
ONLY_KEYS = ('<genericfuse MagicId="0x45535546"><fuse name="OemK1" size="32" value="0x%s"/></genericfuse>\n'
             % ('ab' * 32))
NO_SIZE = '<genericfuse MagicId="0x45535546"><fuse name="SecurityMode" value="0x1"/></genericfuse>\n'


@pytest.mark.parametrize('text, message', [
    (NOT_XML, 'is not XML'),
    (PARTITIONS, 'not an NVIDIA fuse configuration'),
    (WRONG_MAGIC, 'not an NVIDIA fuse configuration'),
    (EMPTY, 'names no fuse'),
    (BAD_VALUE, 'is not hexadecimal'),
    (TOO_BIG, 'longer than its size'),
    (SHORT_SBK, 'SecureBootKey must be 32 bytes (64 hexadecimal digits) on Orin'),
    (ONLY_KEYS, 'could not be verified'),
    (NO_SIZE, 'fuse SecurityMode: size missing is not its size on Orin; give size="4"'),
], ids=['not-xml', 'partitions', 'wrong-magic', 'empty', 'bad-value', 'too-big', 'short-sbk', 'only-keys',
        'no-size'])
def test_a_bad_fuse_config_is_refused_before_any_tool(module_runner, lab, text, message):
    with open(lab.config, 'w') as config:
        config.write(text)
    result = fuse(module_runner, lab)
    assert message in result['msg'] and lab.config in result['msg']
    assert_refused_before_any_tool(lab, result)


# -- the configuration against the keys and Orin: each refused with no tool touching the device -

@pytest.mark.parametrize('case, message', [
    ('wrong key hash', 'PublicKeyHash is {other_pkh}, but the hash of jetson_pkc_key {pkc} is {pkh} (tegrasign_v3.py'
                       ' --pubkeyhash)'),
    ('32-byte key hash', 'fuse PublicKeyHash: size \'32\' is not its size on Orin; give size="64"'),
    ('magic spelt 0X', 'MagicId is "0X45535546", which odmfuse.sh --test does not rewrite to its dry-run magic'),
    ('algorithm', 'BootSecurityInfo 0x201 says PKC algorithm 1, but jetson_pkc_key {pkc} is ecp256 (algorithm 2'),
    ('sbk for pkc only', 'jetson_sbk_key is set but the configuration burns no SecureBootKey'),
    ('oem key without ekb', 'OemK1 is burned, so OP-TEE needs an EKB encrypted with it on the device, and no '
                            'jetson_ekb_file is given'),
    ('other sbk', 'SecureBootKey is not the key in jetson_sbk_key {sbk}'),
    ('sbk without its bit', 'SecureBootKey is burned but BootSecurityInfo 0x202 lacks the SBK bit 0x8; set it (0x20a)'),
    ('no boot security info', 'PublicKeyHash is burned without BootSecurityInfo; add BootSecurityInfo 0x202'),
])
def test_a_configuration_that_does_not_fit_the_keys_or_orin_burns_nothing(module_runner, lab, case, message):
    args = {}
    if case == 'wrong key hash':
        fuses = dict(lab.fuses, PublicKeyHash=lab.other_pkh)
    elif case == 'algorithm':
        fuses = dict(lab.fuses, BootSecurityInfo='0x201')
    elif case == 'sbk for pkc only':
        fuses, args = lab.fuses, dict(sbk_key=lab.sbk)
    elif case == 'oem key without ekb':
        fuses = dict([('PublicKeyHash', lab.pkh), ('OemK1', OEM_NEW), ('BootSecurityInfo', '0x202'),
                      ('SecurityMode', '0x1')])
    elif case == 'other sbk':
        fuses = dict([('PublicKeyHash', lab.pkh), ('SecureBootKey', OEM_NEW), ('BootSecurityInfo', '0x20a'),
                      ('SecurityMode', '0x1')])
        args = dict(sbk_key=lab.sbk)
    elif case == 'sbk without its bit':
        fuses = dict([('PublicKeyHash', lab.pkh), ('SecureBootKey', SBK), ('BootSecurityInfo', '0x202'),
                      ('SecurityMode', '0x1')])
        args = dict(sbk_key=lab.sbk)
    elif case == 'no boot security info':
        fuses = {'PublicKeyHash': lab.pkh, 'SecurityMode': '0x1'}
    else:
        fuses = lab.fuses
    config = lab.write_config('case.xml', fuses, magic='0X45535546' if case == 'magic spelt 0X' else l4t.FUSE_MAGIC)
    if case == '32-byte key hash':
        with open(config) as handle:
            text = handle.read()
        with open(config, 'w') as handle:
            handle.write(text.replace('name="PublicKeyHash" size="64"', 'name="PublicKeyHash" size="32"'))
    result = fuse(module_runner, lab, fuse_config=config, **args)
    assert message.format(pkc=lab.pkc, pkh=lab.pkh, other_pkh=lab.other_pkh, sbk=lab.sbk) in result['msg'], \
        result['msg']
    assert config in result['msg']
    assert_refused_before_any_tool(lab, result)
    for where in everything_written(lab, result) + [result['msg']]:  # no secret value is quoted
        assert SBK_DIGITS not in where.lower() and OEM_NEW[2:] not in where.lower()


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
    (dict(pkc_key='{keys}/sbk.key'), 'tegrasign_v3.py --pubkeyhash could not derive the hash of {keys}/sbk.key'),
])
def test_bad_inputs_are_refused_before_any_tool(module_runner, lab, overrides, message):
    overrides = dict((key, value.format(keys=lab.keys) if isinstance(value, str) else value)
                     for key, value in overrides.items())
    result = fuse(module_runner, lab, **overrides)
    assert message.format(keys=lab.keys) in result['msg'], result['msg']
    assert_refused_before_any_tool(lab, result)


def test_a_pkc_key_others_can_read_is_refused_before_any_tool(module_runner, lab):
    # ssh-keygen, which tells the key type as NVIDIA's odmfuse.sh does, ignores such a key.
    os.chmod(lab.pkc, 0o644)
    result = fuse(module_runner, lab)
    assert '%s can be read by other users, so ssh-keygen (and NVIDIA\'s odmfuse.sh) ignore it; make it mode 0600' \
        % lab.pkc in result['msg'], result['msg']
    assert_refused_before_any_tool(lab, result)


@pytest.mark.parametrize('tool, message', [
    ('odmfuseread.sh', 'no executable odmfuseread.sh'),
    ('bootloader/tegrarcm_v2', "no bootloader/tegrarcm_v2 to read the chip's identity with"),
    ('bootloader/tegrasign_v3.py', 'has no bootloader/tegrasign_v3.py to derive the PublicKeyHash'),
])
def test_a_tree_without_the_fuse_tools_is_refused(module_runner, lab, tool, message):
    os.unlink(os.path.join(lab.tree, tool))
    result = fuse(module_runner, lab)
    assert message in result['msg']
    assert_refused_before_any_tool(lab, result)


# -- one device, the same chip, from the first tool to the last --------------------------------

def test_a_second_jetson_plugged_in_after_the_dry_run_stops_the_burn(module_runner, tmp_path, key_files):
    lab = FuseLab(tmp_path, key_files, fuse_seconds=0.3)

    def plug_during_the_dry_run():
        call = lab.wait_for_call(lambda call: call['tool'] == 'odmfuse.sh' and '--test' in call['argv'])
        if call is not None:
            add_device(lab.sysfs, '1-4', '7523')
        return call

    thread, outcome = in_thread(plug_during_the_dry_run)
    result = fuse(module_runner, lab)
    thread.join(30)
    assert outcome.get('result') is not None, outcome
    assert result['failed'] is True and result['fused'] is False
    assert 'before odmfuse.sh: 2 Jetsons are in recovery mode on this station (USB ports 1-3, 1-4)' in result['msg']
    assert 'a burn had started, so whether fuses were burned is unknown' in result['msg']
    assert 'the next run only reads the fuses back' in result['msg']
    assert 'Nothing was burned' not in result['msg']
    assert lab.burns() == [] and [argv[0] for argv in lab.odmfuse_calls()] == ['--test']
    assert l4t.burned_fuses(lab.state, PORT) == {} and l4t.burned_fuses(lab.state, '1-4') == {}
    assert not os.path.exists(lab.burn_file)
    phase = lab.phase()
    assert (phase['status'], phase['fused']) == ('failed', False) and phase['burn_started']
    assert '2 Jetsons are in recovery mode' in phase['error']

    # The next run, the second Jetson gone, only reads back: the dry run may have burned.
    remove_device(lab.sysfs, '1-4')
    again = fuse(module_runner, lab)
    assert again['failed'] is True and 'never burns a device twice' in again['msg']
    assert lab.burns() == [] and len(lab.odmfuse_calls()) == 1
    assert [os.path.basename(argv[0]) for argv in again['commands']] == ['tegrarcm_v2', 'odmfuseread.sh',
                                                                         'tegrarcm_v2']


def when_recorded(monkeypatch, wanted, action):
    """Do ``action()`` once, right after the module records a fuse phase for which
    ``wanted(status, fields)`` holds: a person's hand at an exact point between two tools (no
    tool runs then, so none sees the bus half changed)."""
    record = Fuser.record
    done = []

    def recording(fuser, status, **fields):
        record(fuser, status, **fields)
        if not done and wanted(status, fields):
            done.append(action())

    monkeypatch.setattr(Fuser, 'record', recording)
    return done


def plug_when_recorded(monkeypatch, lab, port, wanted):
    """Plug a second Jetson into ``port`` right after such a record."""
    return when_recorded(monkeypatch, wanted, lambda: add_device(lab.sysfs, port, '7523'))


def test_a_second_jetson_plugged_in_before_the_first_read_stops_everything_with_nothing_burned(
        module_runner, lab, monkeypatch):
    # Right after the chip was pinned (the first record of the run carries its identity).
    plug_when_recorded(monkeypatch, lab, '1-4', lambda status, fields: 'chip_uid' in fields and
                       fields.get('burn_started', 0) is None)
    result = fuse(module_runner, lab)
    assert result['failed'] is True and result['fused'] is False
    assert 'before odmfuseread.sh: 2 Jetsons are in recovery mode on this station (USB ports 1-3, 1-4)' in result['msg']
    assert 'Nothing was burned.' in result['msg'] and 'a burn had started' not in result['msg']
    assert lab.tools() == ['tegrarcm_v2'] and l4t.fuse_events(lab.state) == []
    phase = lab.phase()
    assert (phase['status'], phase['fused'], phase['burn_started']) == ('failed', False, None)
    # Nothing was burned, so the next run, the second Jetson gone, fuses the device.
    remove_device(lab.sysfs, '1-4')
    monkeypatch.undo()
    again = fuse(module_runner, lab)
    assert again['fused'] is True, again['msg']


def test_a_second_jetson_found_before_the_dry_run_starts_burns_nothing_and_says_so(module_runner, lab, monkeypatch):
    # Plugged in once the burner's file is written, between the read and the dry run: the start of
    # a burn is recorded only once the bus is found right, so none is recorded.
    write_burn_config = Fuser.write_burn_config

    def writing(fuser, fuses):
        path = write_burn_config(fuser, fuses)
        add_device(lab.sysfs, '1-4', '7523')
        return path

    monkeypatch.setattr(Fuser, 'write_burn_config', writing)
    result = fuse(module_runner, lab)
    assert result['failed'] is True and lab.odmfuse_calls() == []
    assert 'before odmfuse.sh: 2 Jetsons are in recovery mode' in result['msg']
    assert 'Nothing was burned' in result['msg'] and lab.phase()['burn_started'] is None


def test_a_chip_swapped_on_the_port_before_the_burn_is_reported_as_such(module_runner, lab, monkeypatch):
    # Once the dry run is over, another module is put on 1-3 (re-enumerated there, one Jetson in
    # recovery on the right port: the bus looks fine). The chip pinned before the first tool is
    # compared with the one after the last read-back.
    swapped = when_recorded(monkeypatch, lambda status, fields: fields.get('dry_run_ok') is True,
                            lambda: add_device(lab.sysfs, PORT, '7523', ecid=OTHER_ECID))
    result = fuse(module_runner, lab)
    assert swapped == [OTHER_ECID]
    assert result['failed'] is True and result['fused'] is False
    assert 'the chip on USB port 1-3 changed while it was being fused' in result['msg']
    match = re.search(r'\(ECID (0x[0-9a-f]+) before, (0x[0-9a-f]+) after\)', result['msg'])
    assert match, result['msg']
    assert match.group(1).endswith(ECID[2:].lower()) and match.group(2).endswith(OTHER_ECID[2:].lower())
    assert 'a burn had started' in result['msg'] and 'the next run only reads the fuses back' in result['msg']
    assert lab.tools()[-1] == 'tegrarcm_v2' and len(lab.burns()) == 1
    phase = lab.phase()
    assert (phase['status'], phase['fused']) == ('failed', False) and phase['burn_started']
    assert 'changed while it was being fused' in phase['error']


# -- the station's lock: no flash runs while a device is fused ----------------------------------

def test_a_held_flash_slot_keeps_the_fuse_waiting_until_it_is_released(module_runner, lab):
    slot = FlashSlots(lab.slots_dir, 2, label='flash AZJN-0001 1-4', holds_station=True).acquire()
    thread, outcome = in_thread(lambda: fuse(module_runner, lab, slots_dir=lab.slots_dir))
    try:
        thread.join(0.5)
        assert thread.is_alive() and lab.calls() == []  # waiting for the station: not one tool ran
    finally:
        released = time.time()
        slot.release()
    thread.join(60)
    assert not thread.is_alive() and 'error' not in outcome, outcome
    result = outcome['result']
    assert result['fused'] is True, result['msg']
    assert min(call['start'] for call in l4t.tool_calls(lab.state)) >= released
    with open(os.path.join(lab.slots_dir, 'station.lock')) as note:
        assert 'fuse %s %s' % (SERIAL, PORT) in note.read()


def test_a_flash_slot_waits_while_a_device_is_fused(module_runner, tmp_path, key_files):
    lab = FuseLab(tmp_path, key_files, fuse_seconds=0.2)

    def flash_during_the_dry_run():
        if lab.wait_for_call(lambda call: call['tool'] == 'odmfuse.sh') is None:
            return None
        with FlashSlots(lab.slots_dir, 2, label='flash AZJN-0001 1-4', holds_station=True):
            return time.time(), len(lab.calls())

    thread, outcome = in_thread(flash_during_the_dry_run)
    result = fuse(module_runner, lab, slots_dir=lab.slots_dir)
    thread.join(60)
    assert result['fused'] is True, result['msg']
    assert 'error' not in outcome and outcome.get('result') is not None, outcome
    got_slot_at, calls_then = outcome['result']
    calls = l4t.tool_calls(lab.state)
    assert calls_then == len(calls) == 6  # the flash got in once the fuse was over, not before
    assert got_slot_at >= max(call['end'] for call in calls)


# -- failures of the tools -------------------------------------------------------------------

def test_a_failed_dry_run_burns_nothing_and_the_next_run_only_reads_back(module_runner, lab):
    # An odmfuse.sh whose pre-burn processing fails (as NVIDIA's does when tegraparser rejects
    # the configuration or the board cannot be probed).
    odmfuse = os.path.join(lab.tree, 'odmfuse.sh')
    with open(odmfuse, 'w') as script:
        script.write('#!/bin/sh\necho "Error: probing the target board failed."\nexit 1\n')
    result = fuse(module_runner, lab)
    assert result['failed'] is True and result['dry_run_ok'] is False and result['fused'] is False
    assert 'the dry run failed (odmfuse.sh --test exited with 1); a burn had started' in result['msg']
    assert 'the next run only reads the fuses back' in result['msg']
    assert 'probing the target board failed' in result['msg']  # the log tail
    assert [argv[1:] for argv in result['commands']][1:] == [['-i', '0x23', NANO],
                                                             ['--test', '-X', lab.burn_file, '-i', '0x23', NANO]]
    assert l4t.burned_fuses(lab.state, PORT) == {} and not os.path.exists(lab.burn_file)
    phase = lab.phase()
    assert (phase['status'], phase['fused'], phase['dry_run_ok']) == ('failed', False, False)
    assert phase['burn_started']  # recorded BEFORE the dry run: a "dry run" may burn

    # So the next run never starts a burn again: it reads back, and asks a person.
    again = fuse(module_runner, lab)
    assert again['failed'] is True and 'never burns a device twice' in again['msg']
    assert [os.path.basename(argv[0]) for argv in again['commands']] == ['tegrarcm_v2', 'odmfuseread.sh',
                                                                         'tegrarcm_v2']


def test_a_silent_burn_failure_is_reported_as_a_partial_burn(module_runner, lab):
    l4t.plant_silent_fuse_failure(lab.state, PORT)
    result = fuse(module_runner, lab)
    assert result['failed'] is True and result['fused'] is False and result['dry_run_ok'] is True
    assert l4t.burned_fuses(lab.state, PORT) == {}
    assert [event['event'] for event in l4t.fuse_events(lab.state)] == ['read', 'test', 'silent', 'read']
    assert 'partial burn: odmfuse.sh reported success; none took, PublicKeyHash, BootSecurityInfo, SecurityMode ' \
        'did not (PublicKeyHash: expected %s, read back %s' % (lab.pkh, '0' * 128) in result['msg']
    assert 'Do not retry blindly' in result['msg']
    assert 'burned successfully' in result['msg']  # the log tail shows what the tool claimed
    assert [m['name'] for m in result['mismatches']] == ['PublicKeyHash', 'BootSecurityInfo', 'SecurityMode']
    phase = lab.phase()
    assert (phase['status'], phase['fused']) == ('failed', False) and phase['burn_started']
    assert [m['name'] for m in phase['mismatches']] == ['PublicKeyHash', 'BootSecurityInfo', 'SecurityMode']
    assert phase['error'].startswith('partial burn: ')

    # A re-run never burns again: it reads back, still differs, and asks for a person.
    burns = len(lab.odmfuse_calls())
    again = fuse(module_runner, lab)
    assert again['failed'] is True and len(lab.odmfuse_calls()) == burns
    assert lab.tools()[-2:] == ['odmfuseread.sh', 'tegrarcm_v2']
    assert 'never burns a device twice' in again['msg']
    assert l4t.burned_fuses(lab.state, PORT) == {}


def test_a_burn_the_device_stopped_half_way_names_what_took_and_what_did_not(module_runner, lab):
    # Another station burned an OEM key no read can show; the configuration's OEM key would clear
    # its bits, so the device's burner stops there, silently (odmfuse.sh exits 0), keeping what it
    # burned before: PublicKeyHash and BootSecurityInfo took, SecurityMode did not.
    l4t.set_device_fuses(lab.state, PORT, {'OemK1': OEM_HELD})
    fuses = dict([('PublicKeyHash', lab.pkh), ('BootSecurityInfo', '0x202'), ('OemK1', OEM_NEW),
                  ('SecurityMode', '0x1')])
    config = lab.write_config('oem.xml', fuses)
    result = fuse(module_runner, lab, fuse_config=config, ekb_file=lab.ekb)
    assert result['failed'] is True and result['fused'] is False and result['dry_run_ok'] is True
    stopped = [event for event in l4t.fuse_events(lab.state) if event['event'] == 'stopped']
    assert [(event['fuse'], event['dry_run']) for event in stopped] == [('OemK1', True), ('OemK1', False)]
    assert 'partial burn: odmfuse.sh reported success; PublicKeyHash, BootSecurityInfo took, SecurityMode did not ' \
        '(SecurityMode: expected 0x1, read back 00000000)' in result['msg']
    assert [m['name'] for m in result['mismatches']] == ['SecurityMode']
    burned = l4t.burned_fuses(lab.state, PORT)
    assert (burned['PublicKeyHash'], burned['OemK1'], 'SecurityMode' in burned) == (lab.pkh, OEM_HELD, False)
    phase = lab.phase()
    assert phase['status'] == 'failed' and phase['burn_started'] and phase['error'].startswith('partial burn: ')
    for where in everything_written(lab, result):  # the OEM keys are never shown
        assert OEM_NEW[2:] not in where.lower() and OEM_HELD[2:] not in where.lower()


def test_a_burn_stopped_before_the_sbk_is_reported_as_a_partial_burn(module_runner, lab):
    l4t.set_device_fuses(lab.state, PORT, {'OemK1': OEM_HELD})
    fuses = dict([('PublicKeyHash', lab.pkh), ('OemK1', OEM_NEW), ('SecureBootKey', SBK),
                  ('BootSecurityInfo', '0x20a'), ('SecurityMode', '0x1')])
    config = lab.write_config('oem-sbk.xml', fuses)
    result = fuse(module_runner, lab, fuse_config=config, ekb_file=lab.ekb, sbk_key=lab.sbk)
    assert result['failed'] is True and result['dry_run_ok'] is True
    assert set(l4t.burned_fuses(lab.state, PORT)) == {'PublicKeyHash', 'OemK1'}  # the burner stopped at OemK1
    assert 'partial burn: odmfuse.sh reported success; PublicKeyHash took, BootSecurityInfo, SecurityMode did not' \
        in result['msg'], result['msg']


def test_a_burn_that_may_have_happened_is_read_back_not_repeated(module_runner, lab):
    # An earlier run recorded the start of the burn, burned, and died before the read-back.
    lab.write_phase(status='running', started=1764316800.0, burn_started=1764316801.0, fused=False)
    lab.burn_by_hand('-X', lab.config, '-i', '0x23', NANO)
    result = fuse(module_runner, lab)
    assert not result.get('failed'), result['msg']
    assert (result['changed'], result['fused']) == (False, True)
    assert 'an earlier run started burning at 2025-11-28 08:00:01 UTC' in result['msg']
    assert 'nothing was burned by this run' in result['msg']
    # By hand, then this run: the chip, the read-back with the key, the chip again.
    assert lab.calls()[1:] == [lab.uid_call(), ('odmfuseread.sh', ['-i', '0x23', '-k', lab.pkc, NANO]),
                               lab.uid_call()]
    assert len(lab.odmfuse_calls()) == 1
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
    assert lab.phase()['status'] == 'failed' and lab.phase()['burn_started'] == 1764316801.0


def test_check_mode_after_an_interrupted_burn_runs_nothing(module_runner, lab):
    lab.write_phase(status='running', started=1764316800.0, burn_started=1764316801.0, fused=False)
    result = fuse(module_runner, lab, check_mode=True)
    assert (result['changed'], result['fused']) == (False, False)
    assert 'only read the fuses back' in result['msg']
    assert_nothing_ran(lab)


# -- secrets -----------------------------------------------------------------------------------

def test_secret_key_fuse_values_never_reach_the_log_the_result_or_the_state(module_runner, lab):
    fuses = dict([('PublicKeyHash', lab.pkh), ('SecureBootKey', SBK), ('BootSecurityInfo', '0x20a'),
                  ('SecurityMode', '0x1')])
    config = lab.write_config('sbk.xml', fuses)
    result = fuse(module_runner, lab, fuse_config=config, sbk_key=lab.sbk)
    assert result['fused'] is True, result['msg']
    # -S goes to the read-back only: the configuration burns a SecureBootKey.
    assert lab.calls()[-2] == ('odmfuseread.sh', ['-i', '0x23', '-k', lab.pkc, '-S', lab.sbk, NANO])
    assert l4t.burned_fuses(lab.state, PORT)['SecureBootKey'] == SBK
    assert 'SecureBootKey never read back and were not compared' in result['msg']
    assert 'fuse SecureBootKey would be burned with ********' in log_text(result)  # the fake prints it, masked
    words = ['0x' + SBK_DIGITS[index:index + 8] for index in range(0, 64, 8)]  # the key file's spelling
    for where in everything_written(lab, result):
        assert SBK_DIGITS not in where.lower() and words[0] + ' ' + words[1] not in where
    for line in pem_body(lab.pkc):
        assert all(line not in where for where in everything_written(lab, result))
    assert not os.path.exists(lab.burn_file)


def test_an_sbk_pkc_fused_device_is_read_with_its_keys_and_its_sbk_never_shown(module_runner, lab):
    fuses = dict([('PublicKeyHash', lab.pkh), ('SecureBootKey', SBK), ('BootSecurityInfo', '0x20a'),
                  ('SecurityMode', '0x1')])
    config = lab.write_config('sbk.xml', fuses)
    l4t.prefuse_device(lab.state, PORT, fuses)
    result = fuse(module_runner, lab, fuse_config=config, sbk_key=lab.sbk)
    assert not result.get('failed'), result['msg']
    assert result['fused'] is True and lab.odmfuse_calls() == []
    # SBK+PKC fused: it refuses a read without keys, and one with the PKC key alone.
    assert lab.calls() == [lab.uid_call(), ('odmfuseread.sh', ['-i', '0x23', NANO]),
                           ('odmfuseread.sh', ['-i', '0x23', '-k', lab.pkc, NANO]),
                           ('odmfuseread.sh', ['-i', '0x23', '-k', lab.pkc, '-S', lab.sbk, NANO]), lab.uid_call()]
    assert 'SecureBootKey never read back and were not compared' in result['msg']
    for where in everything_written(lab, result):
        assert SBK_DIGITS not in where.lower()


def test_an_sbk_config_needs_the_sbk_for_the_read_back(module_runner, lab):
    fuses = dict([('PublicKeyHash', lab.pkh), ('SecureBootKey', SBK), ('BootSecurityInfo', '0x20a'),
                  ('SecurityMode', '0x1')])
    config = lab.write_config('sbk.xml', fuses)
    result = fuse(module_runner, lab, fuse_config=config)
    assert 'give sbk_key' in result['msg']
    assert SBK_DIGITS not in json.dumps(result).lower()
    assert_refused_before_any_tool(lab, result)


# -- what a read must never be taken for ------------------------------------------------------

def test_a_stale_fuse_info_never_passes_for_a_read(module_runner, lab):
    # A read tool that claims success without writing fuse_info.txt, in a tree whose
    # fuse_info.txt from an earlier read shows exactly the configured fuses.
    with open(os.path.join(lab.tree, 'bootloader', 'fuse_info.txt'), 'w') as stale:
        stale.write('PublicKeyHash: %s\nBootSecurityInfo: 00000202\nSecurityMode: 00000001\n' % lab.pkh[2:])
    with open(os.path.join(lab.tree, 'odmfuseread.sh'), 'w') as script:
        script.write('#!/bin/sh\necho "ERROR: might be timeout in USB read."\nexit 0\n')
    result = fuse(module_runner, lab)
    assert result['failed'] is True and result['fused'] is False
    assert 'reading its fuses before burning failed (again with its keys, odmfuseread.sh wrote no' in result['msg']
    assert lab.odmfuse_calls() == [] and lab.phase()['status'] == 'failed'
    assert lab.phase()['burn_started'] is None


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
                     '    printf "PublicKeyHash: 0\\nBootSecurityInfo: 00000000\\nSecurityMode: 00000000\\n"'
                     ' > bootloader/fuse_info.txt\n'
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
    assert lab.calls()[-2] == ('odmfuseread.sh', ['-i', '0x23', '-k', lab.pkc, NANO])
