"""The rules of the inventory's variables (plugin_utils/_inputs.py), through the device context:
each bad value is one problem that names the device, the variable and the fix, and never shows
a secret."""

import re

import pytest

from ansible_collections.azaion.jetson.plugins.plugin_utils._context import batch_check, device_context

# A fix is an imperative clause after "; " or ": ".
FIX = re.compile(r'[;:] (set|use|give|remove|unset|export|make|move|choose|put|install|fix|plug|rename|correct)\b')
GOOD = {'jetson_usb_instance': '1-3', 'jetson_workdir': '/srv/azaion', 'jetson_l4t_dir': '/opt/l4t/Linux_for_Tegra',
        'jetson_loader_url': 'http://10.0.0.42:8080', 'azaion_admin_api_url': 'https://admin.example.com',
        'azaion_admin_api_token': 'a-good-token-0123456789'}
ALL_PHASES = ['rootfs', 'fuse', 'identity', 'flash', 'verify']


def problems_of(overrides, phases=None, name='AZJN-0042', station_vars=None):
    device_vars = dict(GOOD, **overrides)
    for key in [key for key, value in overrides.items() if value is None]:
        del device_vars[key]
    return device_context(name, device_vars, station_vars, phases=phases)['problems']


def test_a_good_device_has_no_problem_in_any_phase():
    assert problems_of({}, ALL_PHASES) == []


@pytest.mark.parametrize('overrides, variable', [
    ({'jetson_serial': ' AZJN-0042'}, 'jetson_serial'),
    ({'jetson_serial': 'AZJN-004\u00e9'}, 'jetson_serial'),
    ({'jetson_serial': 'AZJN/0042'}, 'jetson_serial'),
    ({'jetson_serial': 'AZJN-' + '0' * 80}, 'jetson_serial'),
    ({'jetson_serial': ['AZJN-0042']}, 'jetson_serial'),
    ({'jetson_serial': ''}, 'jetson_serial'),
    ({'jetson_serial': 2}, 'jetson_serial'),
    ({'jetson_loader_url': 'http://10.0.0.42/?token=abc'}, 'jetson_loader_url'),
    ({'jetson_batch_name': ''}, 'jetson_batch_name'),
    ({'jetson_rootfs_dir': '/srv/azaion/staging/Linux_for_Tegra/rootfs'}, 'jetson_rootfs_dir'),
    ({'jetson_rootfs_dir': '/srv/azaion/ports/1-3/Linux_for_Tegra/rootfs'}, 'jetson_rootfs_dir'),
    ({'jetson_usb_instance': '1-3 ; reboot'}, 'jetson_usb_instance'),
    ({'jetson_usb_instance': '1-'}, 'jetson_usb_instance'),
    ({'jetson_usb_instance': 13}, 'jetson_usb_instance'),
    ({'jetson_usb_instance': {'port': '1-3'}}, 'jetson_usb_instance'),
    ({'jetson_rootfs_dir': 'rootfs/AZJN-0042'}, 'jetson_rootfs_dir'),
    ({'jetson_rootfs_dir': '/'}, 'jetson_rootfs_dir'),
    ({'jetson_rootfs_dir': '/opt/l4t/Linux_for_Tegra/rootfs'}, 'jetson_rootfs_dir'),
    ({'jetson_workdir': '/opt/l4t/Linux_for_Tegra/work'}, 'jetson_workdir'),
    ({'jetson_workdir': '/'}, 'jetson_workdir'),
    ({'jetson_l4t_dir': 'Linux_for_Tegra'}, 'jetson_l4t_dir'),
    ({'jetson_usb_sysfs_root': 'sys/bus/usb/devices'}, 'jetson_usb_sysfs_root'),
    ({'jetson_flash_concurrency': 0}, 'jetson_flash_concurrency'),
    ({'jetson_flash_concurrency': 'abc'}, 'jetson_flash_concurrency'),
    ({'jetson_flash_concurrency': 11}, 'jetson_flash_concurrency'),
    ({'jetson_flash_concurrency': 1.5}, 'jetson_flash_concurrency'),
    ({'jetson_flash_concurrency': True}, 'jetson_flash_concurrency'),
    ({'jetson_board': 'orin-nano-16gb'}, 'jetson_board'),
    ({'jetson_loader_url': 'ftp://10.0.0.42'}, 'jetson_loader_url'),
    ({'jetson_loader_url': 'http://'}, 'jetson_loader_url'),
    ({'jetson_loader_url': 'http://10.0.0.42:99999'}, 'jetson_loader_url'),
    ({'azaion_admin_api_url': 'https://admin example.com'}, 'azaion_admin_api_url'),
    ({'azaion_admin_api_url': 'admin.example.com'}, 'azaion_admin_api_url'),
    ({'jetson_fuse_enabled': 'treu'}, 'jetson_fuse_enabled'),
    ({'jetson_fuse_enabled': 2}, 'jetson_fuse_enabled'),
    ({'jetson_fuse_enabled': True}, 'jetson_fuse_config'),
    ({'jetson_fuse_enabled': True, 'jetson_fuse_config': 'odm.xml'}, 'jetson_fuse_config'),
    ({'jetson_pkc_key': 'keys/pkc.pem'}, 'jetson_pkc_key'),
    ({'jetson_batch_name': '../other'}, 'jetson_batch_name'),
    ({'jetson_batch_name': 'wave 1'}, 'jetson_batch_name'),
    ({'flash_board_identity': ['FAB=300']}, 'flash_board_identity'),
    ({'jetson_usb_instance': None}, 'jetson_usb_instance'),
    ({'jetson_l4t_dir': None}, 'jetson_l4t_dir'),
    ({'jetson_loader_url': None}, 'jetson_loader_url'),
])
def test_each_bad_value_is_one_problem_naming_the_device_the_variable_and_the_fix(overrides, variable):
    problems = problems_of(overrides, ALL_PHASES)
    assert len(problems) == 1, problems
    assert problems[0].startswith('AZJN-0042: ') and variable in problems[0] and FIX.search(problems[0]), problems


def test_a_password_in_a_url_is_refused_never_shown_and_left_out_of_the_context():
    url = 'https://ops:s3cr3t-Pa55@admin.example.com/api'
    context = device_context('AZJN-0042', dict(GOOD, azaion_admin_api_url=url), phases=ALL_PHASES)
    assert len(context['problems']) == 1 and 'azaion_admin_api_url' in context['problems'][0]
    assert 's3cr3t-Pa55' not in repr(context) and 'ops:' not in repr(context)
    assert context['api_url'] == 'https://admin.example.com/api'


@pytest.mark.parametrize('token', ['', 'two words', 'line\nbreak', 't\u00f6ken-0123456789'])
def test_a_bad_token_is_refused_without_showing_it(token):
    problems = problems_of({'azaion_admin_api_token': token}, ['identity'])
    assert len(problems) == 1 and 'token' in problems[0] and FIX.search(problems[0]), problems
    if token:
        assert token not in problems[0]


def test_the_token_and_the_api_url_are_needed_only_by_the_identity_phase(monkeypatch):
    monkeypatch.delenv('AZAION_ADMIN_API_TOKEN', raising=False)
    monkeypatch.delenv('AZAION_ADMIN_API_URL', raising=False)
    bare = {'azaion_admin_api_token': None, 'azaion_admin_api_url': None}
    assert problems_of(bare, ['rootfs', 'flash', 'verify']) == []
    problems = problems_of(bare, ['identity'])
    assert len(problems) == 2 and any('AZAION_ADMIN_API_TOKEN' in problem for problem in problems)
    monkeypatch.setenv('AZAION_ADMIN_API_TOKEN', 'from-the-environment-0123')
    assert len(problems_of(bare, ['identity'])) == 1


def test_a_bad_station_value_is_named_by_its_station_and_a_run_agrees_on_its_batch_name():
    problems = problems_of({'jetson_station': 'st-a'}, ALL_PHASES, station_vars={'jetson_flash_concurrency': 0})
    assert problems == ['station st-a: jetson_flash_concurrency is 0; set it to a whole number from 1 to 10 (NVIDIA\'s'
                        ' massflash flashes at most 10 devices at once)']
    contexts = [device_context(name, dict(GOOD, jetson_usb_instance=port, jetson_batch_name=batch))
                for name, port, batch in (('AZJN-0001', '1-1', 'wave1'), ('AZJN-0002', '1-2', 'wave2'))]
    assert [problem for problem in batch_check(contexts) if 'jetson_batch_name' in problem] == [
        'the devices of this run disagree on jetson_batch_name (wave1 for AZJN-0001; wave2 for AZJN-0002); set it'
        ' once for the whole run, in the group jetsons or with -e']


def test_a_device_that_is_another_devices_station_is_refused():
    contexts = [device_context('AZJN-0001', dict(GOOD, jetson_usb_instance='1-1')),
                device_context('AZJN-0002', dict(GOOD, jetson_usb_instance='1-2', jetson_station='AZJN-0001'))]
    assert [problem for problem in batch_check(contexts) if 'jetson_station' in problem] == [
        "AZJN-0002: jetson_station AZJN-0001 is one of the batch's devices; set it to the station's host (the machine"
        " its USB cable goes to)"]


def test_a_token_in_a_urls_query_is_refused_and_left_out():
    context = device_context('AZJN-0042', dict(GOOD, azaion_admin_api_url='https://admin.example.com/?access_token=q-s3cr3t'))
    assert len(context['problems']) == 1 and 'q-s3cr3t' not in repr(context)
