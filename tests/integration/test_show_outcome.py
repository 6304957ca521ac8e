"""azaion.jetson.show_outcome: each device's host gets the outcome its station's run worked out."""

import json

from lab import labkit

PLAYBOOK = '''
- hosts: devices
  gather_facts: false
  tasks:
    - name: Report this device's outcome
      azaion.jetson.show_outcome:
        outcome: "{{ outcomes[inventory_hostname] }}"
'''


def test_each_device_gets_its_own_recap_line_and_message(tmp_path):
    outcomes = {
        'AZJN-0001': {'msg': 'AZJN-0001: already finished', 'changed': False, 'failed': False},
        'AZJN-0002': {'msg': 'AZJN-0002: flash changed', 'changed': True, 'failed': False},
        'AZJN-0003': {'msg': 'AZJN-0003: flash failed: exit code 1', 'changed': False, 'failed': True},
        'AZJN-0004': {'msg': 'an outcome without its flags'},
    }
    inventory = tmp_path / 'hosts.json'
    inventory.write_text(json.dumps({'devices': {
        'hosts': dict((name, {'ansible_connection': 'local'}) for name in outcomes),
        'vars': {'outcomes': outcomes}}}))
    playbook = tmp_path / 'show.yml'
    playbook.write_text(PLAYBOOK)
    result = labkit.run_playbook(str(inventory), playbook=str(playbook))
    recap = labkit.play_recap(result.stdout)

    assert result.returncode == 2, result.stdout
    assert recap['AZJN-0001'] == dict(recap['AZJN-0001'], ok=1, changed=0, failed=0)
    assert recap['AZJN-0002'] == dict(recap['AZJN-0002'], ok=1, changed=1, failed=0)
    assert recap['AZJN-0003'] == dict(recap['AZJN-0003'], ok=0, failed=1)
    assert recap['AZJN-0004'] == dict(recap['AZJN-0004'], ok=0, failed=1)
    # Every message is shown at the default verbosity, as debug's would be.
    for name in ('AZJN-0001', 'AZJN-0002', 'AZJN-0003'):
        assert outcomes[name]['msg'] in result.stdout
    assert 'outcome has no changed, failed' in result.stdout
