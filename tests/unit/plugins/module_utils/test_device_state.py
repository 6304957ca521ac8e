# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A device's state file on the station (module_utils/_device_state.py)."""

import json
import os
import stat

import pytest

from lab import labkit

from ansible_collections.azaion.jetson.plugins.module_utils._device_state import DeviceState, DeviceStateError


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
    path = labkit.write_file(str(tmp_path / 'state.json'), '{"phases": {"flash": ')
    with pytest.raises(DeviceStateError, match='not JSON'):
        DeviceState(path).load()


def test_one_rule_for_a_phases_status_and_fusing_is_optional():
    from ansible_collections.azaion.jetson.plugins.module_utils._device_state import phase_status
    assert phase_status('flash', {}, False) == 'pending'
    assert phase_status('flash', {'status': 'running'}, False) == 'running'
    assert phase_status('verify', {'status': 'skipped'}, True) == 'skipped'
    # Not to be fused: nothing to do, unless a burn ran (then what it left is what counts).
    assert [phase_status('fuse', record, False) for record in ({}, {'status': 'skipped'}, {'status': 'failed'})] == [
        'skipped', 'skipped', 'failed']
    # To be fused: a fuse phase skipped while it was not is to do now.
    assert [phase_status('fuse', record, True) for record in ({}, {'status': 'skipped'}, {'status': 'done'})] == [
        'pending', 'pending', 'done']
