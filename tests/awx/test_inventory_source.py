"""The factory manifest as an AWX inventory source (extensions/awx/inventory-source.yml): the
update run the way AWX runs it for a source "Sourced from a Project" (awx/main/tasks/jobs.py,
RunInventoryUpdate): the project copied into the private data directory, the collection where
the project's collections/requirements.yml would be installed, AWX's standard inventory update
environment (STANDARD_INVENTORY_UPDATE_ENV: unparsed is failed, export, verbose to stderr), and
its command line, ``ansible-inventory --list --export -i project/<source_path> --output
artifacts/<id>/output.json --playbook-dir <its directory>``. AWX imports output.json only from
an update that succeeded."""

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

import awx_jobs

INVENTORY_SOURCE = os.path.join(awx_jobs.AWX_DIR, 'inventory-source.yml')
STANDARD_INVENTORY_UPDATE_ENV = {'ANSIBLE_INVENTORY_UNPARSED_FAILED': 'True', 'ANSIBLE_INVENTORY_EXPORT': 'True',
                                 'ANSIBLE_VERBOSE_TO_STDERR': 'True'}
UPDATE_ID = '7'


@pytest.fixture
def source():
    return awx_jobs.load_yaml(INVENTORY_SOURCE)['inventory_source']


@pytest.fixture
def private_data_dir(tmp_path):
    """The project (the repository's inventories/, as a factory's ops project holds them) and
    the collection installed as the project's requirements."""
    private = tmp_path / 'update'
    shutil.copytree(os.path.join(awx_jobs.REPO_ROOT, 'inventories'), str(private / 'project' / 'inventories'))
    namespace = private / 'requirements_collections' / 'ansible_collections' / 'azaion'
    namespace.mkdir(parents=True)
    os.symlink(awx_jobs.REPO_ROOT, str(namespace / 'jetson'))
    (private / 'artifacts' / UPDATE_ID).mkdir(parents=True)
    return str(private)


def inventory_update(private_data_dir, source_path):
    """Run the update as AWX does; return (the CompletedProcess, output.json's data or None)."""
    location = os.path.join(private_data_dir, 'project', source_path)
    output = os.path.join(private_data_dir, 'artifacts', UPDATE_ID, 'output.json')
    env = dict(STANDARD_INVENTORY_UPDATE_ENV, HOME=os.environ.get('HOME', '/root'),
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(private_data_dir, 'requirements_collections'),
               ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    run = subprocess.run(['ansible-inventory', '--list', '--export', '-i', location, '--output', output,
                          '--playbook-dir', os.path.dirname(location), '-v'],
                         cwd=private_data_dir, env=env, capture_output=True, text=True, timeout=120, check=False)
    data = None
    if run.returncode == 0:
        with open(output) as exported:
            data = json.load(exported)
    return run, data


def plain(value):
    """A value of output.json as a job sees it: the script inventory that AWX gives a job reads
    ``{"__ansible_unsafe": text}`` back as the text, marked unsafe (never templated)."""
    if isinstance(value, dict) and set(value) == {'__ansible_unsafe'}:
        return value['__ansible_unsafe']
    if isinstance(value, dict):
        return dict((key, plain(item)) for key, item in value.items())
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def manifest_rows(private_data_dir):
    path = os.path.join(private_data_dir, 'project', 'inventories', 'manifest', 'devices.csv')
    with open(path) as manifest:
        return list(csv.DictReader(line for line in manifest if not line.startswith('#')))


def test_the_inventory_source_reads_the_projects_manifest_with_the_collections_plugin(source):
    assert source['source'] == 'scm' and source['source_path'].endswith('factory_manifest.yml')
    config = awx_jobs.load_yaml(os.path.join(awx_jobs.REPO_ROOT, source['source_path']))
    assert config['plugin'] == 'azaion.jetson.factory_manifest'
    assert source['overwrite'] is True and source['overwrite_vars'] is True and source['update_on_launch'] is True


def test_an_update_gives_awx_every_device_with_its_groups_and_variables(source, private_data_dir):
    run, data = inventory_update(private_data_dir, source['source_path'])
    assert run.returncode == 0, run.stderr[-3000:]
    rows = manifest_rows(private_data_dir)
    serials = sorted(row['serial'] for row in rows)
    assert len(serials) == 12
    assert sorted(data['jetsons']['hosts']) == serials
    hostvars = data['_meta']['hostvars']
    for row in rows:
        # Every text of the manifest comes unsafe: a cell is never a template.
        assert all(set(value) == {'__ansible_unsafe'} for value in hostvars[row['serial']].values()
                   if not isinstance(value, (bool, int))), hostvars[row['serial']]
        device = plain(hostvars[row['serial']])
        assert device['jetson_usb_instance'] == row['usb_instance'], device
        assert device['jetson_station'] == row['station'], device
        station_group = 'station_' + row['station'].replace('.', '_').replace('-', '_')
        assert row['serial'] in data[station_group]['hosts']
        if row['wave']:
            assert row['serial'] in data['wave_' + row['wave']]['hosts']
    assert sorted(data['stations']['hosts']) == sorted(set(row['station'] for row in rows))
    # --export keeps group variables on their groups, as AWX stores them: the project's
    # group_vars beside the source come with it.
    assert 'vars' in data['jetsons'] and 'vars' in data['stations']


def test_an_update_from_a_manifest_the_plugin_refuses_fails_naming_the_line_and_imports_nothing(
        source, private_data_dir):
    path = os.path.join(private_data_dir, 'project', 'inventories', 'manifest', 'devices.csv')
    with open(path) as manifest:
        lines = manifest.read().splitlines()
    data_lines = [number for number, line in enumerate(lines, 1) if line and not line.startswith(('#', 'serial,'))]
    first = lines[data_lines[0] - 1]
    lines.append('%s,%s' % (first.split(',')[0], ','.join(lines[data_lines[-1] - 1].split(',')[1:])))
    with open(path, 'w') as manifest:
        manifest.write('\n'.join(lines) + '\n')

    run, data = inventory_update(private_data_dir, source['source_path'])
    assert run.returncode != 0 and data is None
    message = ' '.join((run.stdout + run.stderr).split())
    assert first.split(',')[0] in message and 'line %d' % len(lines) in message, message[-3000:]
    assert not os.path.exists(os.path.join(private_data_dir, 'artifacts', UPDATE_ID, 'output.json'))
