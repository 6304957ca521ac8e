"""azaion.jetson.factory_manifest: the plugin's parse over real manifest files."""

import os

import pytest
import yaml

from ansible.errors import AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader, inventory_loader
from ansible.utils.collection_loader import AnsibleCollectionConfig

from lab import labkit

EXAMPLE_DIR = os.path.join(labkit.REPO_ROOT, 'inventories', 'manifest')
HEADER = 'serial,station,usb_instance,board,wave,fuse,loader_url\n'


def load_plugin():
    plugin = None
    if AnsibleCollectionConfig.collection_finder is not None:  # pytest-ansible's, or an earlier test's
        plugin = inventory_loader.get('azaion.jetson.factory_manifest')
    if plugin is None:  # plain pytest, or a finder without the collection's path
        init_plugin_loader([labkit.link_collection()])
        plugin = inventory_loader.get('azaion.jetson.factory_manifest')
    return plugin


def parse_config(config, inventory=None):
    inventory = inventory if inventory is not None else InventoryData()
    load_plugin().parse(inventory, DataLoader(), str(config))
    return inventory


def write_config(directory, manifest_name, **options):
    config = directory / 'factory_manifest.yml'
    config.write_text(yaml.safe_dump(dict(plugin='azaion.jetson.factory_manifest', manifest=manifest_name, **options)))
    return config


def parse(tmp_path, manifest_text, name='devices.csv', **options):
    (tmp_path / name).write_text(manifest_text)
    return parse_config(write_config(tmp_path, name, **options))


def refusal(tmp_path, manifest_text, name='devices.csv'):
    """The error of a manifest that must be refused, after checking that no host was added."""
    (tmp_path / name).write_text(manifest_text)
    inventory = InventoryData()
    with pytest.raises(AnsibleParserError) as caught:
        parse_config(write_config(tmp_path, name), inventory)
    assert inventory.hosts == {}
    message = str(caught.value)
    assert ('factory manifest %s has ' % (tmp_path / name)) in message  # names the file
    return message


def members(inventory, group):
    return sorted(host.name for host in inventory.groups[group].get_hosts())


def host_vars(inventory, host):
    return dict((name, value) for name, value in inventory.get_host(host).get_vars().items()
                if name.startswith('jetson_'))


def test_the_example_manifest_gives_a_host_per_device_with_its_variables_and_groups():
    inventory = parse_config(os.path.join(EXAMPLE_DIR, 'factory_manifest.yml'))
    station_1, station_2 = 'flash-station-01.factory.example.com', 'flash-station-02.factory.example.com'
    first_wave_1 = ['AZJN-0101', 'AZJN-0102', 'AZJN-0103', 'AZJN-0104']
    second_wave_1 = ['AZJN-0105', 'AZJN-0106', 'AZJN-0107', 'AZJN-0108']
    station_2_devices = ['AZJN-0201', 'AZJN-0202', 'AZJN-0203', 'AZJN-0204']
    assert members(inventory, 'jetsons') == first_wave_1 + second_wave_1 + station_2_devices
    assert members(inventory, 'station_flash_station_01_factory_example_com') == first_wave_1 + second_wave_1
    assert members(inventory, 'station_flash_station_02_factory_example_com') == station_2_devices
    assert members(inventory, 'wave_1') == first_wave_1 + station_2_devices
    assert members(inventory, 'wave_2') == second_wave_1
    assert members(inventory, 'board_orin_nano_8gb') == first_wave_1 + second_wave_1
    assert members(inventory, 'board_agx_orin_64gb') == ['AZJN-0201', 'AZJN-0202']
    assert members(inventory, 'board_orin_nx_16gb') == ['AZJN-0203', 'AZJN-0204']
    assert members(inventory, 'stations') == [station_1, station_2]
    assert inventory.groups['jetsons'].get_vars() == {'jetson_batch_name': '2026-12-line-a'}
    assert host_vars(inventory, 'AZJN-0201') == {
        'jetson_station': station_2, 'jetson_usb_instance': '1-3.1', 'jetson_board': 'agx-orin-64gb',
        'jetson_fuse_enabled': False, 'jetson_loader_url': 'http://azjn-0201.lab.factory.example.com:8080'}
    # Empty cells set nothing: group_vars keep their say (jetson_loader_url, jetson_fuse_enabled).
    assert host_vars(inventory, 'AZJN-0105') == {'jetson_station': station_1, 'jetson_usb_instance': '1-3.1',
                                                 'jetson_board': 'orin-nano-8gb'}


def test_the_yaml_example_holds_the_same_devices_as_the_csv_example(tmp_path):
    from_csv = parse_config(os.path.join(EXAMPLE_DIR, 'factory_manifest.yml'))
    from_yaml = parse_config(write_config(tmp_path, os.path.join(EXAMPLE_DIR, 'devices.yml')))
    assert sorted(from_yaml.hosts) == sorted(from_csv.hosts)
    assert sorted(from_yaml.groups) == sorted(from_csv.groups)
    for group in from_csv.groups:
        assert members(from_yaml, group) == members(from_csv, group), group
    for host in from_csv.groups['jetsons'].get_hosts():
        assert host_vars(from_yaml, host.name) == host_vars(from_csv, host.name), host.name


def test_the_manifest_is_found_beside_the_config_file_whatever_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / 'inventory').mkdir()
    (tmp_path / 'elsewhere').mkdir()
    (tmp_path / 'inventory' / 'devices.csv').write_text('serial,station,usb_instance\nAZJN-0001,localhost,1-1\n')
    config = write_config(tmp_path / 'inventory', 'devices.csv')
    monkeypatch.chdir(tmp_path / 'elsewhere')
    assert members(parse_config(config), 'jetsons') == ['AZJN-0001']


def test_a_localhost_station_is_not_a_station_host_and_devices_without_wave_or_board_get_no_such_group(tmp_path):
    inventory = parse(tmp_path, 'serial,station,usb_instance\nAZJN-0001,localhost,1-1\nAZJN-0002,localhost,1-2\n')
    assert members(inventory, 'station_localhost') == ['AZJN-0001', 'AZJN-0002']
    assert 'stations' not in inventory.groups
    assert not [group for group in inventory.groups if group.startswith(('wave_', 'board_'))]
    assert host_vars(inventory, 'AZJN-0002') == {'jetson_station': 'localhost', 'jetson_usb_instance': '1-2'}


@pytest.mark.parametrize('spelled, enabled', [('true', True), ('yes', True), ('1', True), ('True', True),
                                              ('false', False), ('no', False), ('0', False)])
def test_the_fuse_column_takes_true_and_false_spelled_as_people_do(tmp_path, spelled, enabled):
    inventory = parse(tmp_path, HEADER + 'AZJN-0001,localhost,1-1,,,%s,\n' % spelled)
    assert host_vars(inventory, 'AZJN-0001')['jetson_fuse_enabled'] is enabled


def test_devices_of_different_waves_may_share_a_port_and_so_may_devices_of_different_stations(tmp_path):
    inventory = parse(tmp_path, HEADER + 'AZJN-0001,st-a,1-1,,1,,\nAZJN-0002,st-a,1-1,,2,,\nAZJN-0003,st-b,1-1,,1,,\n')
    assert members(inventory, 'wave_1') == ['AZJN-0001', 'AZJN-0003']
    assert members(inventory, 'stations') == ['st-a', 'st-b']


def test_comment_lines_blank_lines_spaces_and_a_spreadsheet_bom_are_allowed(tmp_path):
    (tmp_path / 'devices.csv').write_bytes(b'\xef\xbb\xbf# exported from the line sheet\nSerial, Station ,usb_instance\n'
                                           b'\nAZJN-0001 , localhost, 1-1\n')
    inventory = parse_config(write_config(tmp_path, 'devices.csv'))
    assert host_vars(inventory, 'AZJN-0001') == {'jetson_station': 'localhost', 'jetson_usb_instance': '1-1'}


@pytest.mark.parametrize('manifest, expected', [
    (HEADER + 'AZJN-0001,localhost,1-1,,,,\nAZJN-0002,localhost,1-2,,,,\nAZJN-0001,localhost,1-3,,,,\n',
     'devices line 2 and line 4 have the same serial AZJN-0001: each device needs its own jetson_serial'),
    (HEADER + 'AZJN-0042,localhost,1-1,,,,\nAZXX-0042,localhost,1-2,,,,\n',
     'devices line 2 (serial AZJN-0042) and line 3 (serial AZXX-0042) map to the same e-mail'
     ' azaion-jetson-0042@azaion.com'),
    (HEADER + 'AZJN-0001,st-a,1-1,,1,,\nAZJN-0002,st-a,1-1,,1,,\n',
     'lines 2 and 3 (AZJN-0001 and AZJN-0002) are on the same USB port 1-1 of station st-a in wave 1; give each'
     ' device the port of its own cable, or put them in different waves'),
    (HEADER + 'AZJN-0001,st-a,1-1,,,,\nAZJN-0002,st-a,1-1,,,,\n',
     'lines 2 and 3 (AZJN-0001 and AZJN-0002) are on the same USB port 1-1 of station st-a in no wave'),
    (HEADER + 'AZJN 0001,localhost,1-1,,,,\n', "line 2: serial 'AZJN 0001' is not a label serial"),
    (HEADER + 'AZJN0001,localhost,1-1,,,,\n', "line 2: device serial 'AZJN0001' has no hyphen"),
    (HEADER + 'AZJN-0001,localhost,1-0,,,,\n',
     "line 2: usb_instance '1-0' is not a USB port path <busnum>-<devpath>;"
     " set it to the port of the device's cable"),
    (HEADER + 'AZJN-0001,localhost,1-1,orin-mega,,,\n',
     "line 2: board 'orin-mega' is not a board this collection"
     ' knows; set it to one of agx-orin-32gb'),
    (HEADER + 'AZJN-0001,localhost,1-1,,,treu,\n',
     "line 2: fuse is 'treu', which is neither true nor false;"
     ' set it to true or false'),
    (HEADER + 'AZJN-0001,localhost,1-1,,,,ftp://loader:8080\n',
     'line 2: loader_url ftp://loader:8080 is not an http'
     ' or https URL with a host'),
    (HEADER + 'AZJN-0001,flash station,1-1,,,,\n', "line 2: the station 'flash station' has white space"),
    (HEADER + 'AZJN-0001,AZJN-0002,1-1,,,,\nAZJN-0002,localhost,1-2,,,,\n',
     'line 2: the station AZJN-0002 is a device of the manifest'),
    (HEADER + 'AZJN-0001,st-a,1-1,,,,\nAZJN-0002,st.a,1-2,,,,\n',
     'stations st-a, st.a (lines 2, 3) would all be the group station_st_a'),
    ('serial,station,usb_instance,colour,size\nAZJN-0001,localhost,1-1,red,L\n',
     'line 1: unknown columns colour, size; the columns are serial, station, usb_instance (required) and board,'
     ' wave, fuse, loader_url: rename or remove them'),
    ('serial,usb_instance\nAZJN-0001,1-1\n', 'line 1: the required column station is missing; add it to the header'),
    ('serial,station,usb_instance,serial\nAZJN-0001,localhost,1-1,AZJN-0001\n',
     'line 1: the column serial is in the header more than once'),
    (HEADER + ',localhost,1-1,,,,\n', "line 2: the serial is empty; give the serial on the device's label"),
    (HEADER + 'AZJN-0001,,1-1,,,,\n', 'line 2: the station is empty; give the host name of the station'),
    (HEADER + 'AZJN-0001,localhost,,,,,\n',
     "line 2: the usb_instance is empty; give the USB port of the device's"
     ' cable'),
    (HEADER + 'AZJN-0001,localhost,1-1\n',
     'line 2: 3 cells where the header has 7 columns; give every line one cell'
     ' per column'),
    ('', 'the manifest is empty; give a header line (serial,station,usb_instance,board,wave,fuse,loader_url)'),
    ('# nothing yet\n\n', 'the manifest is empty'),
    (HEADER, 'the manifest has a header but no device; add one line per device under it'),
])
def test_a_bad_csv_manifest_is_refused_naming_the_line_and_the_fix_and_no_host_is_added(tmp_path, manifest, expected):
    assert expected in refusal(tmp_path, manifest)


def test_a_url_with_a_password_is_refused_without_showing_the_password(tmp_path):
    message = refusal(tmp_path, HEADER + 'AZJN-0001,localhost,1-1,,,,http://loader:s3cr3t-pw@10.0.0.1:8080\n')
    assert 'line 2: loader_url has user info before its host (http://10.0.0.1:8080 with' in message
    assert 's3cr3t-pw' not in message


def test_every_problem_is_reported_at_once_in_line_order(tmp_path):
    message = refusal(tmp_path, 'serial,station,usb_instance,board,colour\n'
                                'AZJN-0001,localhost,1-1,,red\n'
                                'AZJN 2,localhost,1-2,,red\n'
                                'AZJN-0003,localhost,1-x,orin-mega,red\n'
                                'AZJN-0004,localhost\n'
                                'AZJN-0001,localhost,1-5,,red\n')
    expected = ['line 1: unknown column colour', "line 3: serial 'AZJN 2'", "line 4: usb_instance '1-x'",
                "line 4: board 'orin-mega'", 'line 5: 2 cells where the header has 5 columns',
                'devices line 2 and line 6 have the same serial AZJN-0001',
                # The batch check's rule says it for the e-mail too, as it does for an inventory.
                'devices line 2 (serial AZJN-0001) and line 6 (serial AZJN-0001) map to the same e-mail']
    assert 'has %d problems, so no device was added' % len(expected) in message
    positions = [message.find(words) for words in expected]
    assert -1 not in positions and positions == sorted(positions), message


@pytest.mark.parametrize('manifest, expected', [
    ('- {serial: AZJN-0001, station: localhost, usb_instance: "1-1", colour: red}\n',
     'line 1: unknown key colour; the keys are serial, station, usb_instance (required)'),
    ('- {serial: AZJN-0001, station: localhost, usb_instance: "1-1"}\n- {serial: AZJN-0002, station: localhost}\n',
     "line 2: the usb_instance is empty; give the USB port of the device's cable"),
    ('- {serial: AZJN-0001, station: localhost, usb_instance: 13}\n',
     'line 1: usb_instance is the number 13, not a USB port path; set it to the port path in quotes'),
    ('- {serial: AZJN-0001, station: localhost, usb_instance: "1-1", wave: [1, 2]}\n',
     'line 1: wave is a list, not a single value'),
    ('- {serial: AZJN-0001, station: localhost, usb_instance: "1-1"}\n- AZJN-0002\n',
     'line 2: this item is a single value (str), not a mapping'),
    ('serial: AZJN-0001\nstation: localhost\n', 'line 1: the manifest is a mapping, not a list'),
    ('- {serial: AZJN-0001, station: localhost\n', 'this is not valid YAML'),
    ('---\n', 'the manifest is empty; give a list with one mapping per device'),
    ('[]\n', 'the manifest is empty'),
    ('- {serial: AZJN-0042, station: localhost, usb_instance: "1-1"}\n\n'
     '- {serial: AZXX-0042, station: localhost, usb_instance: "1-2"}\n',
     'devices line 1 (serial AZJN-0042) and line 3 (serial AZXX-0042) map to the same e-mail'),
])
def test_a_bad_yaml_manifest_is_refused_naming_the_line_and_the_fix(tmp_path, manifest, expected):
    assert expected in refusal(tmp_path, manifest, name='devices.yml')


def test_a_yaml_manifest_takes_numbers_and_booleans_as_yaml_writes_them(tmp_path):
    inventory = parse(tmp_path, '- serial: AZJN-0001\n  station: localhost\n  usb_instance: "1-1"\n  wave: 3\n'
                                '  fuse: true\n', name='devices.yaml')
    assert members(inventory, 'wave_3') == ['AZJN-0001']
    assert host_vars(inventory, 'AZJN-0001')['jetson_fuse_enabled'] is True


def test_a_manifest_that_is_missing_or_of_another_kind_is_refused_naming_it(tmp_path):
    inventory = InventoryData()
    with pytest.raises(AnsibleParserError) as caught:
        parse_config(write_config(tmp_path, 'nowhere.csv'), inventory)
    assert 'factory manifest %s cannot be read' % (tmp_path / 'nowhere.csv') in str(caught.value)
    (tmp_path / 'devices.xlsx').write_text('')
    with pytest.raises(AnsibleParserError) as caught:
        parse_config(write_config(tmp_path, 'devices.xlsx'), inventory)
    assert 'its name must end in .csv (a CSV manifest) or .yml or .yaml' in str(caught.value)
    assert inventory.hosts == {}


def test_the_constructed_options_make_variables_and_groups(tmp_path):
    inventory = parse(tmp_path, HEADER + 'AZJN-0001,localhost,1-1,orin-nano-8gb,1,yes,\nAZJN-0002,localhost,1-2,,1,,\n',
                      groups={'to_fuse': 'jetson_fuse_enabled | default(false)'},
                      compose={'jetson_rootfs_dir': "'/srv/rootfs/' ~ inventory_hostname"},
                      keyed_groups=[{'key': 'jetson_usb_instance', 'prefix': 'port'}])
    assert members(inventory, 'to_fuse') == ['AZJN-0001']
    assert host_vars(inventory, 'AZJN-0002')['jetson_rootfs_dir'] == '/srv/rootfs/AZJN-0002'
    assert members(inventory, 'port_1_2') == ['AZJN-0002']


@pytest.mark.parametrize('name, verified', [('factory_manifest.yml', True), ('line-a.factory_manifest.yaml', True),
                                            ('hosts.yml', False), ('factory_manifest.yml.orig', False)])
def test_only_config_files_named_factory_manifest_are_taken(tmp_path, name, verified):
    (tmp_path / name).write_text('plugin: azaion.jetson.factory_manifest\nmanifest: devices.csv\n')
    assert load_plugin().verify_file(str(tmp_path / name)) is verified
