"""azaion.jetson.factory_manifest through Ansible's own commands: ansible-inventory over the
example manifest, a bad manifest refused, and a provision run over the lab from a manifest."""

import json
import os
import subprocess
import sys

from conftest import assert_ok
from lab import labkit
# The batch fixture of test_provision.py, imported to be used here as a fixture.

from ansible_collections.azaion.jetson.plugins.module_utils._usb import board_of_product

EXAMPLE_CONFIG = os.path.join(labkit.REPO_ROOT, 'inventories', 'manifest', 'factory_manifest.yml')
# A manifest with a problem fails the command instead of leaving an empty inventory and a warning.
STRICT_INVENTORY = {'ANSIBLE_INVENTORY_UNPARSED_FAILED': 'true', 'ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED': 'true'}
STATION_SETTINGS = ('jetson_l4t_dir', 'jetson_workdir', 'jetson_usb_sysfs_root', 'jetson_flash_concurrency',
                    'jetson_station_root')


def ansible_inventory(config, *args):
    command = [os.path.join(os.path.dirname(sys.executable), 'ansible-inventory'), '-i', str(config)] + list(args)
    return subprocess.run(command, env=labkit.ansible_env(STRICT_INVENTORY), capture_output=True, text=True,
                          timeout=120, check=False)


def plain(value):
    """A value of ansible-inventory --list: it writes a string from the manifest (data, never a
    template) as {"__ansible_unsafe": ...}, so that whoever reads the list keeps it untemplated."""
    return value['__ansible_unsafe'] if isinstance(value, dict) and '__ansible_unsafe' in value else value


def write_yaml(path, data):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(str(path), 'w') as data_file:
        json.dump(data, data_file, indent=2)  # JSON is YAML


def test_ansible_inventory_lists_the_example_manifest_with_the_variables_beside_it():
    result = ansible_inventory(EXAMPLE_CONFIG, '--list')
    assert result.returncode == 0 and 'WARNING' not in result.stderr, result.stderr
    listed = json.loads(result.stdout)
    assert listed['stations']['hosts'] == ['flash-station-01.factory.example.com', 'flash-station-02.factory.example.com']
    assert listed['wave_2']['hosts'] == ['AZJN-0105', 'AZJN-0106', 'AZJN-0107', 'AZJN-0108']
    assert listed['board_orin_nx_16gb']['hosts'] == ['AZJN-0203', 'AZJN-0204']
    assert len(listed['jetsons']['hosts']) == 12
    hostvars = listed['_meta']['hostvars']
    device = hostvars['AZJN-0203']
    # From the manifest, from the plugin's batch_name, and from group_vars/jetsons.yml beside it.
    assert tuple(plain(device[name]) for name in ('jetson_station', 'jetson_usb_instance', 'jetson_board')) == (
        'flash-station-02.factory.example.com', '1-3.3', 'orin-nx-16gb')
    assert device['jetson_fuse_enabled'] is False
    assert device['jetson_batch_name'] == '2026-12-line-a'
    assert device['jetson_loader_url'] == 'http://{{ inventory_hostname | lower }}.factory.example.com:8080'
    assert device['rootfs_default_user'] == 'azaion'
    # A station host takes its connection and station settings from group_vars/stations.yml.
    station = hostvars['flash-station-01.factory.example.com']
    assert (station['ansible_user'], station['jetson_flash_concurrency']) == ('provision', 4)
    assert 'jetson_usb_instance' not in station


def test_ansible_inventory_graphs_the_example_manifest_by_station_wave_and_board():
    result = ansible_inventory(EXAMPLE_CONFIG, '--graph')
    assert result.returncode == 0, result.stderr
    graph = dict((block.split(':', 1)[0], block.split('\n', 1)[1].split())
                 for block in result.stdout.replace('|--', '').replace('|', '').split('@')[1:])
    assert graph['station_flash_station_02_factory_example_com'] == [
        'AZJN-0201', 'AZJN-0202', 'AZJN-0203', 'AZJN-0204']
    assert graph['wave_1'] == ['AZJN-0101', 'AZJN-0102', 'AZJN-0103', 'AZJN-0104', 'AZJN-0201', 'AZJN-0202',
                               'AZJN-0203', 'AZJN-0204']
    assert graph['board_agx_orin_64gb'] == ['AZJN-0201', 'AZJN-0202']
    assert graph['stations'] == ['flash-station-01.factory.example.com', 'flash-station-02.factory.example.com']


def test_ansible_inventory_refuses_a_bad_manifest_with_every_problem_and_its_line(tmp_path):
    (tmp_path / 'devices.csv').write_text('serial,station,usb_instance\nAZJN-0042,localhost,1-1\n'
                                          'AZXX-0042,localhost,1-1\n')
    write_yaml(tmp_path / 'factory_manifest.yml', {'plugin': 'azaion.jetson.factory_manifest', 'manifest': 'devices.csv'})
    result = ansible_inventory(tmp_path / 'factory_manifest.yml', '--list')
    assert result.returncode != 0
    assert 'factory manifest %s has 2 problems, so no device was added' % (tmp_path / 'devices.csv') in result.stderr
    assert 'devices line 2 (serial AZJN-0042) and line 3 (serial AZXX-0042) map to the same e-mail' in result.stderr
    assert 'lines 2 and 3 (AZJN-0042 and AZXX-0042) are on the same USB port 1-1 of station localhost' in result.stderr


def test_without_strict_inventory_settings_the_provision_run_still_stops_at_a_bad_manifest_writing_nothing(tmp_path):
    """Ansible only warns of an inventory source it cannot read, and a playbook over an empty
    group would end "successfully" having done nothing: the playbook's first check stops it."""
    (tmp_path / 'devices.csv').write_text('serial,station,usb_instance\nAZJN-0042,localhost,1-1\n'
                                          'AZJN-0042,localhost,1-2\n')
    write_yaml(tmp_path / 'factory_manifest.yml', {'plugin': 'azaion.jetson.factory_manifest', 'manifest': 'devices.csv',
                                                   'batch_name': 'bad'})
    before = sorted(os.listdir(str(tmp_path)))
    result = labkit.run_playbook(str(tmp_path / 'factory_manifest.yml'))
    output = ' '.join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert 'devices line 2 and line 3 have the same serial AZJN-0042' in output
    assert 'the inventory has no devices' in output and 'which names the line' in output
    assert sorted(os.listdir(str(tmp_path))) == before  # no report, no state


def test_a_provision_run_from_a_manifest_provisions_every_device_of_its_station(make_provision, tmp_path):
    batch = make_provision({'1-1': '7523', '1-2': '7623', '1-3': '7523'})
    # The inventory as a factory keeps it: the manifest, the station's connection in host_vars,
    # the station's settings in group_vars/stations.yml and the devices' in group_vars/jetsons.yml.
    inventory_dir = tmp_path / 'factory'
    station = 'lab-station'
    os.makedirs(str(inventory_dir))
    with open(str(inventory_dir / 'devices.csv'), 'w') as manifest:
        manifest.write('serial,station,usb_instance,board,wave,fuse,loader_url\n')
        for port, serial in sorted(batch.serials.items()):
            board = board_of_product(batch.lab.ports[port])
            manifest.write('%s,%s,%s,%s,1,no,%s\n' % (serial, station, port, board, batch.lab.loaders.url(port)))
    device_vars = dict((name, value) for name, value in batch.group_vars.items() if name != 'jetson_station')
    station_vars = dict((name, device_vars.pop(name)) for name in STATION_SETTINGS if name in device_vars)
    write_yaml(inventory_dir / 'group_vars' / 'jetsons.yml', device_vars)
    write_yaml(inventory_dir / 'group_vars' / 'stations.yml', station_vars)
    write_yaml(inventory_dir / 'host_vars' / (station + '.yml'),
               {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable})
    config = inventory_dir / 'factory_manifest.yml'
    write_yaml(config, {'plugin': 'azaion.jetson.factory_manifest', 'manifest': 'devices.csv',
                        'batch_name': 'from-manifest'})

    args, environment = batch.command(['--limit', 'wave_1'], STRICT_INVENTORY)
    result = labkit.run_playbook(str(config), args=args, env=environment)
    assert_ok(result)
    recap = labkit.play_recap(result.stdout)
    assert all(recap[serial]['failed'] == 0 for serial in batch.serials.values())
    assert batch.holds_its_own_identity() and batch.station_is_clean()
    with open(os.path.join(batch.lab.workdir, 'reports', 'from-manifest.json')) as report_file:
        rows = json.load(report_file)['devices']
    # Every device done on the manifest's station and port, with the board the manifest gave.
    assert sorted((row['serial'], row['result'], row['station'], row['port'], row['board']) for row in rows) == [
        ('AZJN-0001', 'done', station, '1-1', 'orin-nano-8gb'), ('AZJN-0002', 'done', station, '1-2', 'orin-nano-4gb'),
        ('AZJN-0003', 'done', station, '1-3', 'orin-nano-8gb')]
    assert sorted((run['usb_instance'], run['device'], run['exit']) for run in batch.flash_runs()) == [
        ('1-1', '1-1', 0), ('1-2', '1-2', 0), ('1-3', '1-3', 0)]
