"""The collection's action groups: module_defaults for group/azaion.jetson.admin_api reach the
modules that call the admin API, and only those."""

import json

import pytest

from lab import labkit

PLAY = '''
- hosts: localhost
  connection: local
  gather_facts: false
  module_defaults:
    group/azaion.jetson.%(group)s:
      retries: 0
  tasks:
    - azaion.jetson.device_conf:
        rootfs_dir: "%(rootfs)s"
        email: azaion-jetson-0042@azaion.com
    - azaion.jetson.companion_user:
        device_conf: "%(rootfs)s/etc/azaion/device.conf"
        email: azaion-jetson-0042@azaion.com
        retry_backoff: 0.01
'''


@pytest.mark.parametrize('group, attempts', [('admin_api', 1), ('station', 6)])
def test_module_defaults_of_the_admin_api_group_reach_companion_user(admin_api, api_token, tmp_path, group, attempts):
    rootfs = labkit.make_rootfs(str(tmp_path / 'rootfs'))
    playbook = tmp_path / 'play.yml'
    playbook.write_text(PLAY % {'group': group, 'rootfs': rootfs})
    admin_api.set_faults([{'method': 'POST', 'status': 503}])
    result = labkit.run_playbook('localhost,', playbook=str(playbook),
                                 env={'AZAION_ADMIN_API_URL': admin_api.url, 'AZAION_ADMIN_API_TOKEN': api_token})
    assert result.returncode != 0, result.stdout[-3000:]
    posts = [entry for entry in admin_api.request_log() if entry['method'] == 'POST']
    # retries: 0 from the group's defaults is one attempt; the other group's leaves the module's 5 retries.
    assert len(posts) == attempts, json.dumps(admin_api.request_log())
