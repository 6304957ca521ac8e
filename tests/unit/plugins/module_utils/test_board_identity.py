# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The board table (module_utils/_usb.py, docs/l4t-board-identity.md): NVIDIA's values, the chip
SKU of every module, the AGX Orin Industrial, and 0955:7023, which names no single board, refused
in the batch check (module_utils/_device_checks.py usb_problems) without jetson_board."""

import pytest

from lab import l4t_bundle
from lab.usb_sysfs import make_usb_sysfs

from ansible_collections.azaion.jetson.plugins.module_utils._device_checks import usb_problems
from ansible_collections.azaion.jetson.plugins.module_utils._fuse import Fuser
from ansible_collections.azaion.jetson.plugins.module_utils._usb import (
    BOARD_CONFIGS,
    BOARD_IDENTITY,
    BOARD_IDENTITY_KEYS,
    BOARD_TABLE,
    BOARDS,
    CHIP_SKU_PATTERN,
    RECOVERY_PRODUCTS,
    board_of_product,
    describe_product,
)

# NVIDIA's environment variable table (r36.2 tools/kernel_flash/README_initrd_flash.txt, its
# end): board config, BOARDID, BOARDSKU, FAB, BOARDREV ('' where the table has none).
NVIDIA_TABLE = {
    'orin-nx-16gb': ('jetson-orin-nano-devkit', '3767', '0000', '300', ''),
    'orin-nx-8gb': ('jetson-orin-nano-devkit', '3767', '0001', '300', ''),
    'orin-nano-8gb': ('jetson-orin-nano-devkit', '3767', '0003', '300', ''),
    'orin-nano-4gb': ('jetson-orin-nano-devkit', '3767', '0004', '300', ''),
    'agx-orin-32gb': ('jetson-agx-orin-devkit', '3701', '0004', 'TS4', 'A.0'),
    'agx-orin-64gb': ('jetson-agx-orin-devkit', '3701', '0005', '500', ''),
}
# The chip SKU of each module, and the BPMP firmware process_chip_sku_version picks for it.
CHIPS = {
    'orin-nx-16gb': ('00:00:00:D3', 'TE980M-A1'),
    'orin-nx-8gb': ('00:00:00:D4', 'TE980M-A1'),
    'orin-nano-8gb': ('00:00:00:D5', 'TE950M-A1'),
    'orin-nano-4gb': ('00:00:00:D6', 'TE950M-A1'),
    'agx-orin-32gb': ('00:00:00:D2', 'TE990M-A1'),
    'agx-orin-64gb': ('00:00:00:D0', 'TE990M-A1'),
    'agx-orin-industrial': ('00:00:00:90', 'TE992M-A1'),
}
AGX_ON_7023 = ('agx-orin-32gb', 'agx-orin-64gb', 'agx-orin-industrial')


def test_the_table_holds_nvidias_values_and_the_chip_sku_of_every_board():
    assert [board.name for board in BOARD_TABLE] == list(CHIPS)
    for name, (config, boardid, boardsku, fab, boardrev) in NVIDIA_TABLE.items():
        board = BOARDS[name]
        assert (board.config, board.boardid, board.boardsku, board.fab, board.boardrev or '') == \
            (config, boardid, boardsku, fab, boardrev), name
    for name, (chip_sku, firmware) in CHIPS.items():
        assert (BOARDS[name].chip_sku, BOARDS[name].bpmp_firmware) == (chip_sku, firmware), name
        assert CHIP_SKU_PATTERN.match(chip_sku)
    industrial = BOARDS['agx-orin-industrial']
    assert (industrial.config, industrial.boardid, industrial.boardsku, industrial.fab, industrial.boardrev) == \
        ('jetson-agx-orin-devkit-industrial', '3701', '0008', '500', None)


def test_the_generation_environment_is_the_table_and_sets_no_boardrev_nvidia_leaves_empty():
    assert BOARD_IDENTITY['orin-nano-8gb'] == {'BOARDID': '3767', 'FAB': '300', 'BOARDSKU': '0003',
                                               'CHIP_SKU': '00:00:00:D5'}
    assert BOARD_IDENTITY['agx-orin-32gb'] == {'BOARDID': '3701', 'FAB': 'TS4', 'BOARDSKU': '0004', 'BOARDREV': 'A.0',
                                               'CHIP_SKU': '00:00:00:D2'}
    for name, identity in BOARD_IDENTITY.items():
        assert set(identity) <= set(BOARD_IDENTITY_KEYS) and identity['CHIP_SKU'] == CHIPS[name][0]
        assert ('BOARDREV' in identity) == bool(BOARDS[name].boardrev)
    assert BOARD_CONFIGS == dict((name, board.config) for name, board in BOARDS.items())


def test_the_labs_board_configs_pick_the_firmware_of_the_table():
    """The lab's p3767/p3701.conf.common (l4t_bundle.FAMILY_FIRMWARE, from NVIDIA's r36.2
    process_chip_sku_version) give each module's chip the firmware the table says."""
    for board in BOARD_TABLE:
        table = l4t_bundle.FAMILY_FIRMWARE[l4t_bundle.BOARD_FAMILIES[board.config]][2]
        assert dict(table)[board.chip_sku.rsplit(':', 1)[1]] == board.bpmp_firmware, board.name
        for product in board.products:
            assert product in l4t_bundle.BOARD_MODULES[board.config], board.name
    # Without CHIP_SKU every p3767 module gets the Orin NX's firmware: wrong for both Orin Nanos.
    assert l4t_bundle.FAMILY_FIRMWARE['p3767'][:2] == ('TE980M-A1', '00:00:00:D3')
    assert l4t_bundle.FAMILY_FIRMWARE['p3701'][:2] == ('TE990M-A1', '00:00:00:D0')
    assert [board.name for board in BOARD_TABLE if board.bpmp_firmware != default_firmware_of(board)] == \
        ['orin-nano-8gb', 'orin-nano-4gb', 'agx-orin-industrial']


def default_firmware_of(board):
    return l4t_bundle.FAMILY_FIRMWARE[l4t_bundle.BOARD_FAMILIES[board.config]][0]


@pytest.mark.parametrize('product, identity, board', [
    ('7523', None, 'orin-nano-8gb'),
    ('7623', None, 'orin-nano-4gb'),
    ('7323', None, 'orin-nx-16gb'),
    ('7423', None, 'orin-nx-8gb'),
    ('7223', None, 'agx-orin-32gb'),
    ('7023', None, None),
    ('7023', {}, None),
    ('7023', {'FAB': '500'}, None),
    ('7023', {'BOARDID': '3701'}, None),
    ('7023', {'BOARDSKU': '0005'}, 'agx-orin-64gb'),
    ('7023', {'BOARDID': '3701', 'BOARDSKU': '0008'}, 'agx-orin-industrial'),
    ('7023', {'BOARDSKU': '0004'}, 'agx-orin-32gb'),
    ('7023', {'BOARDSKU': '0000'}, None),  # a p3701-0000 32GB: jetson_board says which board it is
    ('7023', {'BOARDID': '3767', 'BOARDSKU': '0005'}, None),
    ('7523', {'BOARDSKU': '0005'}, 'orin-nano-8gb'),  # one board on the id: an override changes nothing
    ('7035', None, None),
])
def test_a_board_from_the_usb_id_only_when_it_names_one(product, identity, board):
    assert board_of_product(product, identity) == board


def test_what_a_usb_id_says_in_messages():
    assert describe_product('7523') == 'an orin-nano-8gb'
    assert describe_product('7023') == 'an AGX Orin (agx-orin-32gb, agx-orin-64gb or agx-orin-industrial)'
    assert RECOVERY_PRODUCTS['7023'] == AGX_ON_7023


def station_devices(**boards):
    """One device per port, with jetson_board (None: not set) and a board identity override."""
    devices = []
    for index, (port, (board, identity)) in enumerate(sorted(boards.items())):
        devices.append({'name': 'AZJN-%04d' % (index + 1), 'usb_instance': port.replace('_', '-'), 'board': board,
                        'board_identity': identity})
    return devices


def test_the_batch_check_refuses_an_agx_orin_on_7023_without_its_board(tmp_path):
    root = make_usb_sysfs(str(tmp_path / 'devices'), {'1-1': '7023', '1-2': '7023', '1-3': '7023', '1-4': '7023',
                                                      '1-5': '7523', '1-6': '7223'})
    devices = station_devices(**{'1_1': (None, {}), '1_2': ('agx-orin-industrial', {}),
                                 '1_3': (None, {'BOARDSKU': '0005'}), '1_4': (None, {'FAB': '501'}),
                                 '1_5': (None, {}), '1_6': (None, {})})
    pending = dict((device['name'], ['identity', 'flash']) for device in devices)
    problems = usb_problems(devices, pending, root)
    assert problems == [
        'AZJN-0001: jetson_board is not set, and the Jetson in recovery mode on USB port 1-1 is an AGX Orin'
        ' (agx-orin-32gb, agx-orin-64gb or agx-orin-industrial) (USB product 0955:7023), whose USB id does not tell'
        ' which module it is: each needs its own board config and board identity; set jetson_board to agx-orin-32gb,'
        ' agx-orin-64gb or agx-orin-industrial, whichever module it is (the module label, or see'
        ' docs/l4t-board-identity.md)',
        'AZJN-0004: jetson_board is not set, and the Jetson in recovery mode on USB port 1-4 is an AGX Orin'
        ' (agx-orin-32gb, agx-orin-64gb or agx-orin-industrial) (USB product 0955:7023), whose USB id does not tell'
        ' which module it is: each needs its own board config and board identity; set jetson_board to agx-orin-32gb,'
        ' agx-orin-64gb or agx-orin-industrial, whichever module it is (the module label, or see'
        ' docs/l4t-board-identity.md)']
    # A device whose phases do not need it in recovery mode is not looked at.
    assert usb_problems(devices, dict((device['name'], ['verify']) for device in devices), root) == []


def test_the_batch_check_names_a_board_that_is_not_the_module_on_the_port(tmp_path):
    root = make_usb_sysfs(str(tmp_path / 'devices'), {'1-1': '7523', '1-2': '7023', '1-3': '7223'})
    devices = station_devices(**{'1_1': ('agx-orin-64gb', {}), '1_2': ('orin-nano-8gb', {}),
                                 '1_3': ('agx-orin-64gb', {})})
    problems = usb_problems(devices, dict((device['name'], ['flash']) for device in devices), root)
    assert problems == [
        "AZJN-0001: jetson_board is agx-orin-64gb, but the Jetson in recovery mode on USB port 1-1 is an orin-nano-8gb"
        " (USB product 0955:7523); fix jetson_board, or check that the cable on 1-1 is this device's",
        "AZJN-0002: jetson_board is orin-nano-8gb, but the Jetson in recovery mode on USB port 1-2 is an AGX Orin"
        " (agx-orin-32gb, agx-orin-64gb or agx-orin-industrial) (USB product 0955:7023); fix jetson_board, or check"
        " that the cable on 1-2 is this device's",
        "AZJN-0003: jetson_board is agx-orin-64gb, but the Jetson in recovery mode on USB port 1-3 is an agx-orin-32gb"
        " (USB product 0955:7223); fix jetson_board, or check that the cable on 1-3 is this device's"]


class Refused(Exception):
    pass


class FuseModule(object):
    """What Fuser.resolve_board asks of its module: its parameters, and fail_json."""

    def __init__(self, board_config):
        self.params = {'board_config': board_config, 'usb_instance': '1-3'}

    @staticmethod
    def fail_json(msg, **_fields):
        raise Refused(msg)


def test_fusing_with_board_config_auto_is_refused_on_7023_and_takes_the_config_of_another_id(monkeypatch):
    checked = []
    monkeypatch.setattr(Fuser, 'check_board', lambda self, config: checked.append(config))
    with pytest.raises(Refused) as refused:
        Fuser(FuseModule('auto')).resolve_board('7023')
    assert str(refused.value) == (
        'refusing to fuse: board_config is auto but the module on 1-3 (USB product 0955:7023) may be agx-orin-32gb,'
        ' agx-orin-64gb, agx-orin-industrial, whose board configurations differ (jetson-agx-orin-devkit or'
        ' jetson-agx-orin-devkit-industrial); name it in board_config (jetson_board in the inventory), whichever'
        ' module it is')
    assert Fuser(FuseModule('auto')).resolve_board('7223') == 'jetson-agx-orin-devkit'
    assert Fuser(FuseModule('auto')).resolve_board('7623') == 'jetson-orin-nano-devkit'
    assert Fuser(FuseModule('jetson-agx-orin-devkit-industrial')).resolve_board('7023') == \
        'jetson-agx-orin-devkit-industrial'
    assert checked == ['jetson-agx-orin-devkit', 'jetson-orin-nano-devkit']
