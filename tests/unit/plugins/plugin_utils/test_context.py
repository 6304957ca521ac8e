"""The device context, the batch check over contexts, and a device's outcome."""

import pytest

from ansible_collections.azaion.jetson.plugins.plugin_utils._context import (
    batch_check,
    device_context,
    device_contexts,
    device_outcome,
    run_phases,
    station_leaders,
    station_work,
)


def test_a_context_holds_what_every_phase_needs_worked_out_once():
    context = device_context('AZJN-0042', {'jetson_usb_instance': '1-3', 'jetson_workdir': '/w', 'jetson_board': 'orin-nano-8gb',
                                           'jetson_loader_url': 'http://10.0.0.42:8080', 'jetson_fuse_enabled': 'yes',
                                           'jetson_fuse_config': '/srv/fuses/odm.xml', 'flash_board_identity': {'FAB': '301'}})
    assert context['problems'] == []
    assert (context['serial'], context['email'], context['station']) == ('AZJN-0042', 'azaion-jetson-0042@azaion.com', 'localhost')
    assert context['port_tree'] == '/w/ports/1-3/Linux_for_Tegra'
    assert context['rootfs'] == '/w/ports/1-3/Linux_for_Tegra/rootfs'
    assert context['device_conf'] == '/w/ports/1-3/Linux_for_Tegra/rootfs/etc/azaion/device.conf'
    assert context['state_file'] == '/w/devices/AZJN-0042/state.json'
    assert context['own_rootfs'] == ''
    assert context['fuse_enabled'] is True and context['board_identity'] == {'FAB': '301'}
    assert context['settings']['flash_concurrency'] == 4 and context['settings']['logs'] == '/w/logs'


def test_a_device_takes_its_stations_settings_and_a_contradiction_is_a_problem_naming_both():
    station = {'jetson_workdir': '/srv/w', 'jetson_flash_concurrency': 2}
    taken = device_context('AZJN-0001', {'jetson_station': 'st-a'}, station)
    assert taken['settings']['workdir'] == '/srv/w' and taken['state_file'].startswith('/srv/w/')
    contradicting = device_context('AZJN-0002', {'jetson_station': 'st-a', 'jetson_flash_concurrency': 3}, station)
    assert contradicting['problems'] == [
        'AZJN-0002: jetson_flash_concurrency is 3 on the device but 2 on its station st-a; set it either on the '
        'station\'s host or on its devices, not differently on both']


@pytest.mark.parametrize('device_vars, words', [
    ({'jetson_serial': 'AZJN0042'}, 'has no hyphen'),
    ({'jetson_fuse_enabled': 'treu'}, 'jetson_fuse_enabled is \'treu\', which is neither true nor false'),
    ({'jetson_workdir': 'relative'}, 'is not an absolute path'),
])
def test_a_bad_input_is_a_problem_naming_the_device(device_vars, words):
    problems = device_context('AZJN-0042', device_vars)['problems']
    assert len(problems) == 1 and problems[0].startswith('AZJN-0042: ') and words in problems[0], problems


HOSTVARS = {
    'AZJN-0001': {'jetson_station': 'st-a', 'jetson_usb_instance': '1-1'},
    'AZJN-0002': {'jetson_station': 'st-b', 'jetson_usb_instance': '1-1'},
    'AZJN-0003': {'jetson_station': 'st-a', 'jetson_usb_instance': '1-2'},
    'st-a': {'jetson_workdir': '/a'},
}


def test_contexts_and_the_share_of_the_station_work_of_each_host():
    hosts = ['AZJN-0001', 'AZJN-0002', 'AZJN-0003']
    contexts = device_contexts(hosts, HOSTVARS)
    assert [context['name'] for context in contexts] == hosts
    assert [context['settings']['workdir'] for context in contexts] == ['/a', '/var/lib/azaion-jetson', '/a']
    assert [context['name'] for context in station_work(contexts, 'AZJN-0001')] == ['AZJN-0001', 'AZJN-0003']
    assert station_work(contexts, 'AZJN-0003') == []
    assert [context['name'] for context in station_work(contexts, 'AZJN-0002')] == ['AZJN-0002']
    assert station_leaders(contexts) == {'st-a': 'AZJN-0001', 'st-b': 'AZJN-0002'}
    assert station_leaders(contexts, 'AZJN-0003') == 'AZJN-0001'


def test_the_e_mail_and_admin_api_of_each_device(monkeypatch):
    monkeypatch.setenv('AZAION_ADMIN_API_URL', 'https://admin.example.com')
    hostvars = {'AZJN-0001': {}, 'AZJN-0002': {'identity_email_prefix': 'lab-', 'azaion_admin_api_url': 'http://other'}}
    contexts = device_contexts(list(hostvars), hostvars)
    assert [(context['email'], context['api_url']) for context in contexts] == [
        ('azaion-jetson-0001@azaion.com', 'https://admin.example.com'), ('lab-0002@azaion.com', 'http://other')]
    assert any('disagree on azaion_admin_api_url' in problem for problem in batch_check(contexts))


def test_the_batch_check_reports_collisions_own_problems_and_stations_that_disagree_once_each():
    hostvars = {'AZJN-0001': {'jetson_usb_instance': '1-1', 'jetson_workdir': '/w1'},
                'AZXX-0001': {'jetson_usb_instance': '1-1'},
                'AZJN-00.': {}}
    problems = batch_check(device_contexts(list(hostvars), hostvars))
    assert len(problems) == len(set(problems))
    assert any('AZJN-0001 and AZXX-0001 are on the same USB port 1-1' in problem for problem in problems)
    assert any(problem.startswith('AZJN-00.: device serial') for problem in problems)
    assert any('the devices of station localhost disagree on jetson_workdir (/var/lib/azaion-jetson for AZXX-0001, '
               'AZJN-00.; /w1 for AZJN-0001)' in problem for problem in problems), problems


def test_an_outcome_fails_at_the_first_phase_that_failed_the_device():
    results = {'rootfs': {'devices': {'d1': {'changed': True}, 'd2': {'changed': False}}},
               'identity': {'devices': {'d1': {'failed': True, 'msg': 'HTTP 403'}, 'd2': {'changed': True}}},
               'flash': {'skipped': True}}
    assert device_outcome(results, 'd1') == {'failed': True, 'changed': False, 'msg': 'd1: identity failed: HTTP 403'}
    assert device_outcome(results, 'd2') == {'failed': False, 'changed': True, 'msg': 'd2: rootfs ok, identity changed'}


def test_an_outcome_of_a_finished_device_a_failed_station_and_a_run_that_stopped_early():
    assert device_outcome({'flash': {'skipped': True}}, 'd1', finished=True) == {
        'failed': False, 'changed': False, 'msg': 'd1: already finished: nothing to do'}
    assert device_outcome({'rootfs': {}}, 'd1', finished=True, station_error='staging failed')['failed'] is False
    assert device_outcome({}, 'd1', station_error='rootfs staging failed')['msg'] == \
        'd1: its station failed: rootfs staging failed'
    stopped = device_outcome({'rootfs': {'devices': {'d1': {'changed': True}}}, 'flash': {}}, 'd1')
    assert stopped['failed'] and 'flash run did not happen' in stopped['msg']


def test_the_report_directory_is_the_playbooks_unless_that_is_an_installed_collection(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hostvars = {'AZJN-0001': {}, 'AZJN-0002': {'jetson_report_dir': '/srv/reports'}}
    project = device_contexts(['AZJN-0001', 'AZJN-0002'], hostvars, report_dir='/srv/project/reports')
    assert [context['report_dir'] for context in project] == ['/srv/project/reports', '/srv/reports']
    inside_a_collection = '/home/ops/.ansible/collections/ansible_collections/azaion/jetson/playbooks/reports'
    installed = device_contexts(['AZJN-0001'], hostvars, report_dir=inside_a_collection)
    assert installed[0]['report_dir'] == str(tmp_path / 'reports')


def test_a_relative_or_disagreeing_report_directory_stops_the_batch_naming_the_variable():
    relative = device_context('AZJN-0001', {'jetson_report_dir': 'reports'})
    assert any('jetson_report_dir' in problem and 'AZJN-0001' in problem for problem in relative['problems'])
    contexts = [device_context('AZJN-0001', {'jetson_report_dir': '/srv/a'}),
                device_context('AZJN-0002', {'jetson_report_dir': '/srv/b'})]
    assert batch_check(contexts) == [
        'the devices of this run disagree on jetson_report_dir (/srv/a for AZJN-0001; /srv/b for AZJN-0002); set it once'
        ' for the whole run, in the group jetsons or with -e']


def test_an_outcome_on_a_station_that_stopped_answering_names_the_station_after_what_failed_before():
    lost = {'failed': True, 'station_lost': True,
            'msg': 'station st2 stopped answering during flash; its work may have finished there; run the batch again to collect it'}
    results = {'identity': {'devices': {'d1': {'changed': True}, 'd2': {'failed': True, 'msg': 'HTTP 403'}}},
               'flash': lost, 'verify': {}}
    assert device_outcome(results, 'd1') == {'failed': True, 'changed': True, 'station_lost': True, 'msg': 'd1: ' + lost['msg']}
    # A device that failed an earlier phase keeps that failure; one finished before keeps its "finished".
    assert device_outcome(results, 'd2')['msg'] == 'd2: identity failed: HTTP 403'
    assert device_outcome(results, 'd3', finished=True)['failed'] is False


def test_the_device_context_its_argument_spec_and_its_docs_have_the_same_keys():
    """Three places name a device context's keys: the filter that makes it, the station modules'
    argument spec, and the doc fragment. A key added to one and not the others fails here."""
    import yaml
    from ansible_collections.azaion.jetson.plugins.doc_fragments.devices import ModuleDocFragment
    from ansible_collections.azaion.jetson.plugins.module_utils._station_run import DEVICE_OPTIONS

    made = set(device_context('AZJN-0042', {'jetson_usb_instance': '1-3', 'jetson_workdir': '/w'}))
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['options']['devices']['suboptions']
    assert made == set(DEVICE_OPTIONS) == set(documented)
    for key, spec in DEVICE_OPTIONS.items():
        assert documented[key]['type'] == spec['type'], key
        assert bool(documented[key].get('required')) == bool(spec.get('required')), key
        assert documented[key].get('elements') == spec.get('elements'), key


def test_the_run_phases_are_the_tagged_ones_in_phase_order_less_the_skipped():
    assert run_phases(['all']) == ['rootfs', 'fuse', 'identity', 'flash', 'verify']
    assert run_phases(['verify', 'identity', 'always']) == ['identity', 'verify']
    assert run_phases(['all'], ['fuse', 'verify']) == ['rootfs', 'identity', 'flash']
