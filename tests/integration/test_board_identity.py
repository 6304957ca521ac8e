"""azaion.jetson.provision over the lab: every module's images are built for its own chip, and a
module whose USB id does not say which board it is (0955:7023) is refused before anything is
written (docs/l4t-board-identity.md)."""

import os

from conftest import assert_ok
from lab import l4t_bundle, l4t_host
# The batch fixture of test_provision.py, imported to be used here as a fixture.

NANOS_AND_NXS = {'1-1': '7523', '1-2': '7623', '1-3': '7323', '1-4': '7423'}
CHIP_SKUS = {'7523': '00:00:00:D5', '7623': '00:00:00:D6', '7323': '00:00:00:D3', '7423': '00:00:00:D4'}


def flash_log(batch, serial):
    with open(batch.flash_state(serial)['log_path']) as log:
        return log.read()


def test_a_batch_of_orin_nano_and_orin_nx_modules_boots_every_device(make_provision):
    batch = make_provision(NANOS_AND_NXS)
    assert_ok(batch.run())
    assert batch.holds_its_own_identity()
    assert all(row['result'] == 'done' and row['verify'] == 'done' for row in batch.report().values())
    # Each generation had the module's chip SKU, so each image carries the module's BPMP firmware.
    for port, serial in batch.serials.items():
        assert 'Chip SKU(%s)' % CHIP_SKUS[NANOS_AND_NXS[port]] in flash_log(batch, serial), serial
    assert l4t_bundle.boot_failures(batch.lab.lab_state) == []
    assert all(run['exit'] == 0 and run['device'] == run['usb_instance'] for run in batch.flash_runs())
    assert l4t_host.probes(batch.lab.lab_state) == []


def test_an_orin_nano_built_with_the_orin_nx_chip_sku_does_not_come_up_and_the_failure_says_why(make_provision):
    # What every offline generation did before CHIP_SKU was given: p3767's default chip SKU.
    batch = make_provision({'1-1': '7523', '1-2': '7523'},
                           host_vars={'AZJN-0001': {'flash_board_identity': {'CHIP_SKU': '00:00:00:D3'}}})
    first = batch.run()
    assert first.returncode != 0
    assert first.recap['AZJN-0001']['failed'] == 1 and first.recap['AZJN-0002']['failed'] == 0
    error = batch.report()['AZJN-0001']['error']
    assert 'the flashing initrd did not come up on the device' in error and 'CHIP_SKU' in error, error
    assert [(failure['usb_instance'], failure['needs'], failure['images'])
            for failure in l4t_bundle.boot_failures(batch.lab.lab_state)] == [('1-1', 'TE950M-A1', 'TE980M-A1')]
    assert batch.report()['AZJN-0002']['result'] == 'done'

    # The inventory fixed, the module power-cycled into recovery mode: the re-run flashes it.
    del batch.host_vars['AZJN-0001']['flash_board_identity']
    batch.write_inventory()
    l4t_host.power_cycle_into_recovery(batch.lab.lab_state, batch.lab.host_root, batch.lab.sysfs, '1-1')
    assert_ok(batch.run())
    assert batch.holds_its_own_identity()


def test_an_agx_orin_on_7023_without_jetson_board_is_refused_in_the_batch_check_with_nothing_written(make_provision):
    batch = make_provision({'1-1': '7023', '1-2': '7523'})
    result = batch.run()
    assert result.returncode != 0
    expected = ('AZJN-0001: jetson_board is not set, and the Jetson in recovery mode on USB port 1-1 is an AGX Orin'
                ' (agx-orin-32gb, agx-orin-64gb or agx-orin-industrial) (USB product 0955:7023)')
    assert expected in result.stdout, result.stdout[-3000:]
    assert ('set jetson_board to agx-orin-32gb, agx-orin-64gb or agx-orin-industrial, whichever module it is'
            in result.stdout)
    assert 'AZJN-0002: jetson_board' not in result.stdout
    assert not os.path.exists(batch.lab.workdir)
    assert all((request['method'], request['status']) == ('GET', 401) for request in batch.api.request_log())
    assert l4t_bundle.tool_calls(batch.lab.lab_state) == []

    # jetson_board says which: the AGX Orin 64GB is flashed with its own config and identity.
    batch.host_vars['AZJN-0001']['jetson_board'] = 'agx-orin-64gb'
    batch.write_inventory()
    assert_ok(batch.run())
    assert 'Chip SKU(00:00:00:D0)' in flash_log(batch, 'AZJN-0001')
    assert batch.flash_state('AZJN-0001')['board_config'] == 'jetson-agx-orin-devkit'
    assert l4t_bundle.boot_failures(batch.lab.lab_state) == []
