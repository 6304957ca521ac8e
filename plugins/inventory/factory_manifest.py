# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: factory_manifest
author: Azaion engineering (@azaion)
short_description: Jetson devices from a factory manifest of serials, stations and USB ports
version_added: 1.1.0
description:
  - Reads a factory manifest, a CSV file or a YAML list, with one device per line, and makes one
    inventory host per device, named by its serial, in the group C(jetsons) that the playbook
    C(azaion.jetson.provision) works on.
  - The manifest's columns are V(serial), V(station) and V(usb_instance) (required), and
    V(board), V(wave), V(fuse) and V(loader_url) (optional). They become the device's variables
    C(jetson_station), C(jetson_usb_instance), C(jetson_board), C(jetson_fuse_enabled) and
    C(jetson_loader_url). An empty optional cell sets nothing, so a value given in
    C(group_vars) (for example a C(jetson_loader_url) template for every device) still applies.
    An empty V(board) is detected from the USB product id, except for an AGX Orin on
    C(0955:7023) (the 32GB, 64GB and Industrial alike), whose line needs V(agx-orin-32gb),
    V(agx-orin-64gb) or V(agx-orin-industrial), else the batch check refuses the device.
  - Every device is also put in the group C(station_<station>) of its station, C(wave_<wave>)
    of its wave and C(board_<board>) of its board, with every character that Ansible does not
    allow in a group name replaced by V(_). Each station other than V(localhost) becomes a host
    of the group C(stations), so that its connection and station settings (C(jetson_l4t_dir),
    C(jetson_workdir), C(jetson_flash_concurrency)...) can be given in C(group_vars/stations.yml)
    or C(host_vars/<station>.yml) beside this configuration file.
  - The whole manifest is checked before any host is added, with the collection's own rules for
    serials, USB ports, boards, true/false values and URLs. Every problem is reported at once,
    each with its line and its fix, and no host is added. Refused are an empty manifest, unknown
    or missing columns, a CSV line with another number of cells than the header, an empty
    required value, a bad value, two devices with one serial, two serials that map to one
    e-mail (V(AZJN-0042) and V(AZXX-0042)), and two devices on one USB port of a station in the
    same wave (devices of different waves may share a port).
  - The manifest's values are data, never templates.
  - The configuration file's name must end in V(factory_manifest.yml) or V(factory_manifest.yaml).
extends_documentation_fragment:
  - constructed
options:
  plugin:
    description: The name of this plugin, so that the V(auto) inventory plugin hands the file to it.
    type: str
    required: true
    choices: [azaion.jetson.factory_manifest]
  manifest:
    description:
      - The factory manifest, relative to the directory of this configuration file (or absolute).
      - A name ending in V(.csv) is read as CSV (UTF-8, comma-separated, a header line with the
        column names, then one line per device; lines starting with V(#) and empty lines are
        skipped).
      - A name ending in V(.yml) or V(.yaml) is read as a YAML list of mappings with the same keys
        as the CSV columns.
      - The V(fuse) column takes V(true), V(false), V(yes), V(no), V(1), V(0) or nothing (unset,
        which the collection takes as false).
    type: str
    required: true
  batch_name:
    description:
      - Set as C(jetson_batch_name) of the group C(jetsons); it names the batch report.
      - Unset, the report is named by C(jetson_batch_name) from elsewhere (C(group_vars), V(-e)),
        or V(batch).
    type: str
notes:
  - Point C(-i) at the configuration file, not at its directory. In a directory the manifest
    itself would be offered to every other inventory plugin, and warned about.
  - A manifest with a problem fails the inventory source. C(ansible-playbook) then goes on with
    the other sources and warns, so set C(unparsed_is_failed = true) in the C([inventory]) section
    of C(ansible.cfg) (or E(ANSIBLE_INVENTORY_UNPARSED_FAILED=true)) to stop there instead.
  - As an AWX inventory source, keep the configuration file, the manifest and their C(group_vars)
    and C(host_vars) directories in the project. Create an inventory source of type
    C(Sourced from a Project), choose the project, and as its inventory file the configuration
    file (for example C(inventories/manifest/factory_manifest.yml)). The collection must be in
    the project's C(collections/requirements.yml) or in the execution environment. AWX imports
    the hosts, the groups and the variables from C(group_vars) and C(host_vars). Each station's
    connection variables go in C(host_vars/<station>.yml), or in AWX on the station's host.
    Sync the source after each change of the manifest (or enable C(Update on launch)).
'''

EXAMPLES = r'''
# factory_manifest.yml: the devices of devices.csv, their stations' settings in
# group_vars/stations.yml and the devices' own settings in group_vars/jetsons.yml beside it.
plugin: azaion.jetson.factory_manifest
manifest: devices.csv

# devices.csv:
#   serial,station,usb_instance,board,wave,fuse,loader_url
#   AZJN-0101,flash-station-01.factory.example.com,1-3.1,orin-nano-8gb,1,no,
#   AZJN-0102,flash-station-01.factory.example.com,1-3.2,orin-nano-8gb,1,no,
#   AZJN-0103,flash-station-01.factory.example.com,1-3.1,orin-nano-8gb,2,no,
#
# ansible-inventory -i factory_manifest.yml --graph
# ansible-playbook -i factory_manifest.yml azaion.jetson.provision --limit wave_1 --become

---
# The same devices from a YAML manifest, a name for the batch report, a group of the devices
# to fuse and each device's own staging rootfs (the constructed options).
plugin: azaion.jetson.factory_manifest
manifest: devices.yml
batch_name: 2026-12-line-a
groups:
  to_fuse: jetson_fuse_enabled | default(false)
compose:
  jetson_rootfs_dir: "'/srv/rootfs/' ~ inventory_hostname"
'''

import csv
import os

import yaml

from ansible.errors import AnsibleParserError
from ansible.inventory.group import to_safe_group_name
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable
from ansible.utils.unsafe_proxy import wrap_var

from ansible_collections.azaion.jetson.plugins.plugin_utils import _inputs as inputs
from ansible_collections.azaion.jetson.plugins.plugin_utils._identity import batch_problems

REQUIRED_COLUMNS = ('serial', 'station', 'usb_instance')
OPTIONAL_COLUMNS = ('board', 'wave', 'fuse', 'loader_url')
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
# What an empty required value should be, for its fix.
REQUIRED_VALUES = {
    'serial': 'the serial on the device\'s label, for example AZJN-0042',
    'station': 'the host name of the station that the device\'s USB cable goes to (localhost for the controller)',
    'usb_instance': 'the USB port of the device\'s cable, such as 1-3 or 1-8.4 (see lsusb -t)',
}
LOCAL_STATION = 'localhost'
DEVICES_GROUP = 'jetsons'
STATIONS_GROUP = 'stations'
CONFIG_SUFFIXES = ('factory_manifest.yml', 'factory_manifest.yaml')
COLUMNS_TEXT = '%s (required) and %s' % (', '.join(REQUIRED_COLUMNS), ', '.join(OPTIONAL_COLUMNS))


class ManifestRow:
    """One device line of the manifest: its line number, its cells by column (blank cells left
    out; None when the line cannot be read as cells) and what is wrong with its shape."""

    def __init__(self, line, cells, problems=()):
        self.line = line
        self.cells = cells
        self.problems = list(problems)


def read_csv(path, problems):
    """The device rows of a CSV manifest; what is wrong with the whole file goes to ``problems``."""
    header, rows = None, []
    with open(path, encoding='utf-8-sig', newline='') as manifest:
        # Comment lines become empty lines, which are skipped, so that line numbers stay right.
        reader = csv.reader('\n' if line.lstrip().startswith('#') else line for line in manifest)
        try:
            for cells in reader:
                line = reader.line_num
                if not any(cell.strip() for cell in cells):
                    continue
                if header is None:
                    header = [cell.strip().lower() for cell in cells]
                    _check_header(line, header, problems)
                elif len(cells) != len(header):
                    rows.append(ManifestRow(line, None, ['line %d: %d cells where the header has %d columns; give every'
                                                         ' line one cell per column, an empty one for a value left'
                                                         ' unset' % (line, len(cells), len(header))]))
                else:
                    rows.append(ManifestRow(line, dict((column, cell.strip()) for column, cell in zip(header, cells)
                                                       if column in COLUMNS and cell.strip())))
        except csv.Error as exc:
            problems.append('line %d: this is not CSV (%s); save the manifest as CSV' % (reader.line_num, exc))
            return []
    if header is None:
        problems.append('the manifest is empty; give a header line (%s) and one line per device' % ','.join(COLUMNS))
        return []
    if not rows:
        problems.append('the manifest has a header but no device; add one line per device under it')
    if not all(column in header for column in REQUIRED_COLUMNS):
        # Every line would lack the column: the header's problem says it once.
        return []
    return rows


def _check_header(line, header, problems):
    for column in sorted(set(column for column in header if header.count(column) > 1)):
        problems.append('line %d: the column %s is in the header more than once; keep one' % (line, column))
    unknown = [column or '(empty)' for column in header if column not in COLUMNS]
    if unknown:
        problems.append(_unknown(line, 'column', unknown))
    for column in REQUIRED_COLUMNS:
        if column not in header:
            problems.append('line %d: the required column %s is missing; add it to the header and give every device'
                            ' its %s' % (line, column, column))


def _unknown(line, what, names):
    plural = len(names) > 1
    return ('line %d: unknown %s%s %s; the %ss are %s: rename or remove %s'
            % (line, what, 's' if plural else '', ', '.join(names), what, COLUMNS_TEXT, 'them' if plural else 'it'))


def read_yaml(path, problems):
    """The device rows of a YAML manifest (a list of mappings), each with the line it starts on."""
    with open(path, encoding='utf-8-sig') as manifest:
        loader = yaml.SafeLoader(manifest)
        try:
            # The node tree keeps where each item starts; the data is built from the same tree.
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        except yaml.YAMLError as exc:
            mark = getattr(exc, 'problem_mark', None)
            where = 'line %d: ' % (mark.line + 1) if mark else ''
            problems.append('%sthis is not valid YAML (%s); fix the syntax' % (where, getattr(exc, 'problem', None) or exc))
            return []
        finally:
            loader.dispose()
    example = '(- serial: AZJN-0042, station: localhost, usb_instance: "1-3")'
    if data is None or data == []:
        problems.append('the manifest is empty; give a list with one mapping per device %s' % example)
        return []
    if not isinstance(data, list):
        problems.append('line %d: the manifest is %s, not a list; give a list with one mapping per device %s'
                        % (node.start_mark.line + 1, _kind(data), example))
        return []
    rows = []
    for item, item_node in zip(data, node.value):
        line = item_node.start_mark.line + 1
        if not isinstance(item, dict):
            rows.append(ManifestRow(line, None, ['line %d: this item is %s, not a mapping; give each device as a'
                                                 ' mapping of %s' % (line, _kind(item), COLUMNS_TEXT)]))
            continue
        unknown = sorted(str(key) for key in item if key not in COLUMNS)
        rows.append(ManifestRow(line, dict((key, value) for key, value in item.items()
                                           if key in COLUMNS and value is not None and value != ''),
                                [_unknown(line, 'key', unknown)] if unknown else []))
    return rows


def _kind(value):
    if isinstance(value, dict):
        return 'a mapping'
    if isinstance(value, list):
        return 'a list'
    return 'a single value (%s)' % type(value).__name__


def check_rows(rows, problems):
    """The devices of ``rows``, each value checked by the collection's own rule (``_inputs``),
    then the devices checked against each other. A device is a dict of its serial, line, groups
    and host variables (a value that is missing or bad is ''); what is wrong goes to
    ``problems``, line by line, then what is wrong between lines."""
    devices = []
    for row in rows:
        problems.extend(row.problems)
        if row.cells is not None:
            devices.append(check_row(row, problems))
    with_serial = [device for device in devices if device['serial']]
    # Serials that repeat or map to one e-mail: the batch check's own rule and words.
    problems.extend(batch_problems([{'name': 'line %d' % device['line'], 'serial': device['serial']}
                                    for device in with_serial]))
    problems.extend(port_clashes([device for device in with_serial if device['station'] and device['usb_instance']]))
    problems.extend(station_problems(devices))
    for kind in ('station', 'wave'):
        problems.extend(group_name_clashes(devices, kind))
    return devices


def check_row(row, problems):
    """One device from its row; what is missing or bad goes to ``problems``."""
    who, cells = 'line %d' % row.line, row.cells
    for column in REQUIRED_COLUMNS:
        if column not in cells:
            problems.append('%s: the %s is empty; give %s' % (who, column, REQUIRED_VALUES[column]))
    serial = inputs.serial(who, cells['serial'], 'serial', problems) if 'serial' in cells else ''
    station = inputs.text(who, cells.get('station'), 'station', problems)
    if any(character.isspace() for character in station):
        problems.append('%s: the station %r has white space; give the station\'s host name' % (who, station))
        station = ''
    usb_instance = inputs.usb_port(who, cells['usb_instance'], 'usb_instance', problems) if 'usb_instance' in cells else ''
    board = inputs.board(who, cells.get('board'), 'board', problems)
    wave = inputs.text(who, cells.get('wave'), 'wave', problems)
    host_vars = {'jetson_station': station, 'jetson_usb_instance': usb_instance}
    if board:
        host_vars['jetson_board'] = board
    if 'fuse' in cells:
        host_vars['jetson_fuse_enabled'] = inputs.flag(who, cells['fuse'], 'fuse', problems)
    if 'loader_url' in cells:
        host_vars['jetson_loader_url'] = inputs.url(who, cells['loader_url'], 'loader_url', problems, "the device's Loader")
    return {'serial': serial, 'line': row.line, 'station': station, 'wave': wave, 'board': board,
            'usb_instance': usb_instance, 'vars': host_vars}


def _lines(devices):
    """``lines 3 and 7 (AZJN-0001 and AZJN-0003)``"""
    def joined(words):
        return ', '.join(words[:-1]) + ' and ' + words[-1]
    return 'lines %s (%s)' % (joined([str(device['line']) for device in devices]),
                              joined([device['serial'] for device in devices]))


def port_clashes(devices):
    """Two devices on one USB port of one station in one wave: a port holds one cable at a time,
    and a wave is what is plugged in at once (devices of other waves may share the port)."""
    by_port = {}
    for device in devices:
        by_port.setdefault((device['station'], device['wave'], device['usb_instance']), []).append(device)
    return ['%s are on the same USB port %s of station %s in %s; give each device the port of its own cable, or'
            ' put them in different waves (the wave column)'
            % (_lines(clashing), port, station, 'wave %s' % wave if wave else 'no wave')
            for (station, wave, port), clashing in sorted(by_port.items()) if len(clashing) > 1]


def station_problems(devices):
    """A station named like a device of the manifest: the devices are in recovery mode, and a
    station is the machine their cables go to."""
    serials = set(device['serial'] for device in devices)
    return ['line %d: the station %s is a device of the manifest; give the host name of the station that the'
            ' device\'s USB cable goes to' % (device['line'], device['station'])
            for device in devices if device['station'] in serials]


def group_name(kind, value):
    """The group of a station, wave or board: ``station_flash_01_example_com``. Characters that
    Ansible does not allow in a group name become ``_``."""
    return to_safe_group_name('%s_%s' % (kind, value), force=True, silent=True)


def group_name_clashes(devices, kind):
    """Two stations (or waves) whose groups would have one name once made safe: their devices
    would be mixed in one group."""
    names = {}
    for device in devices:
        if device[kind]:  # a device without a wave is in no wave group
            names.setdefault(group_name(kind, device[kind]), {}).setdefault(device[kind], device['line'])
    return ['%ss %s (lines %s) would all be the group %s; name them so that they differ in letters, digits or _'
            % (kind, ', '.join(sorted(values)), ', '.join(str(line) for _value, line in sorted(values.items())), name)
            for name, values in sorted(names.items()) if len(values) > 1]


class InventoryModule(BaseInventoryPlugin, Constructable):

    NAME = 'azaion.jetson.factory_manifest'

    def verify_file(self, path):
        return super(InventoryModule, self).verify_file(path) and path.endswith(CONFIG_SUFFIXES)

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache)
        self._read_config_data(path)
        manifest = os.path.join(os.path.dirname(os.path.abspath(path)),
                                os.path.expanduser(self.get_option('manifest')))
        devices = self._read_manifest(manifest, path)
        self._add_devices(devices)

    def _read_manifest(self, manifest, config):
        """The checked devices of the manifest; every problem at once, before any host is added."""
        if not manifest.endswith(('.csv', '.yml', '.yaml')):
            raise AnsibleParserError('factory manifest %s: its name must end in .csv (a CSV manifest) or .yml or .yaml'
                                     ' (a YAML manifest); rename it and set manifest in %s to the new name'
                                     % (manifest, config))
        problems = []
        try:
            rows = read_csv(manifest, problems) if manifest.endswith('.csv') else read_yaml(manifest, problems)
        except OSError as exc:
            raise AnsibleParserError('factory manifest %s cannot be read (%s); set manifest in %s to the manifest\'s'
                                     ' path, relative to that file' % (manifest, exc.strerror or exc, config)) from None
        except UnicodeDecodeError:
            raise AnsibleParserError('factory manifest %s is not UTF-8 text; save it as UTF-8 (CSV UTF-8 in a'
                                     ' spreadsheet)' % manifest) from None
        devices = check_rows(rows, problems)
        if problems:
            raise AnsibleParserError('factory manifest %s has %d problem%s, so no device was added; fix them in the'
                                     ' manifest:\n%s' % (manifest, len(problems), 's' if len(problems) > 1 else '',
                                                         '\n'.join('- ' + problem for problem in problems)))
        return devices

    def _add_devices(self, devices):
        strict = self.get_option('strict')
        self.inventory.add_group(DEVICES_GROUP)
        if self.get_option('batch_name'):
            self.inventory.set_variable(DEVICES_GROUP, 'jetson_batch_name', self.get_option('batch_name'))
        for device in devices:
            host = device['serial']
            self.inventory.add_host(host, group=DEVICES_GROUP)
            for kind in ('station', 'wave', 'board'):
                if device[kind]:
                    self.inventory.add_child(self.inventory.add_group(group_name(kind, device[kind])), host)
            for variable, value in device['vars'].items():
                # The manifest's values are data: before ansible-core 2.19 a plain string would be
                # templated (from 2.19 a value read from a file never is).
                self.inventory.set_variable(host, variable, wrap_var(value))
            host_vars = self.inventory.get_host(host).get_vars()
            self._set_composite_vars(self.get_option('compose'), host_vars, host, strict=strict)
            self._add_host_to_composed_groups(self.get_option('groups'), host_vars, host, strict=strict)
            self._add_host_to_keyed_groups(self.get_option('keyed_groups'), host_vars, host, strict=strict)
        for station in sorted(set(device['station'] for device in devices) - set([LOCAL_STATION])):
            self.inventory.add_group(STATIONS_GROUP)
            self.inventory.add_host(station, group=STATIONS_GROUP)
