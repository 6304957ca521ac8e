"""azaion.jetson.l4t_station_check against a lab station: its bundle, its host root (NFS, IPv6,
udev) and the lab admin API on loopback. It reads and changes nothing; it names every problem."""

import os

import pytest

from lab import l4t_bundle, l4t_host
from lab.admin_api import LabAdminAPI

from ansible_collections.azaion.jetson.plugins.modules.l4t_station_check import main

TOOLS = ['flash.sh', 'tools/kernel_flash/l4t_initrd_flash.sh', 'odmfuse.sh']


@pytest.fixture
def station(tmp_path):
    lab_state = str(tmp_path / 'lab-state')
    os.makedirs(lab_state)
    host_root = l4t_host.make_host_root(str(tmp_path / 'host'), lab_state)
    bundle = l4t_bundle.make_bundle(str(tmp_path / 'bundle'), lab_state, str(tmp_path / 'sysfs'), host_root=host_root)
    return dict(l4t_dir=bundle, station_root=host_root, workdir=str(tmp_path / 'station'), concurrency=2,
                image_space_mb=1, tools=TOOLS)


def snapshot(top):
    return sorted((root, tuple(sorted(files))) for root, _dirs, files in os.walk(top))


def test_a_ready_station_with_a_reachable_admin_api_passes_and_nothing_is_written(module_runner, station, tmp_path):
    before = snapshot(str(tmp_path))
    with LabAdminAPI(token='lab-token-0123456789abcdef') as api:
        result = module_runner(main, dict(station, api_url=api.url))
        assert api.write_count() == 0
        assert [entry['method'] for entry in api.request_log()] == ['GET']  # answered 401: reachable
    assert result.get('failed') is not True, result
    assert result['problems'] == [] and result['changed'] is False
    assert snapshot(str(tmp_path)) == before


def test_every_problem_is_named_at_once_the_admin_api_with_the_flasher_and_the_bundle(module_runner, station):
    with open(os.path.join(station['station_root'], 'proc', 'sys', 'net', 'ipv6', 'conf', 'all', 'disable_ipv6'),
              'w') as flag:
        flag.write('1\n')
    with LabAdminAPI(token='lab-token-0123456789abcdef') as api:
        url = api.url
    result = module_runner(main, dict(station, api_url=url))  # the API is down now
    assert result['failed'] is True
    assert len(result['problems']) == 2, result['problems']
    assert 'the admin API does not answer from this station' in result['problems'][0]
    assert 'connection refused' in result['problems'][0]
    assert 'IPv6 is off on the station' in result['problems'][1]

    os.unlink(os.path.join(station['l4t_dir'], 'odmfuse.sh'))
    missing = module_runner(main, dict(station, initrd=False))
    assert missing['problems'] == ['the L4T bundle %s is missing or incomplete (%s not found): set jetson_l4t_dir to '
                                   'its Linux_for_Tegra directory' % (station['l4t_dir'],
                                                                      os.path.join(station['l4t_dir'], 'odmfuse.sh'))]


def test_the_admin_api_alone_needs_no_bundle(module_runner, tmp_path):
    with LabAdminAPI(token='lab-token-0123456789abcdef') as api:
        result = module_runner(main, dict(workdir=str(tmp_path), initrd=False, api_url=api.url))
    assert result.get('failed') is not True and result['problems'] == []
    refused = module_runner(main, dict(workdir=str(tmp_path), tools=['flash.sh']))
    assert refused['failed'] is True and 'l4t_dir is required' in refused['msg']
