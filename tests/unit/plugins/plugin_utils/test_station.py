import pytest

from ansible_collections.azaion.jetson.plugins.plugin_utils._station import station_paths


def test_paths_of_a_device_on_a_port():
    paths = station_paths('/var/lib/azaion-jetson', 'AZJN-0042', usb_instance='1-3.2')
    assert paths['port_tree'] == '/var/lib/azaion-jetson/ports/1-3.2/Linux_for_Tegra'
    assert paths['rootfs'] == paths['port_tree'] + '/rootfs'
    assert paths['device_conf'] == paths['rootfs'] + '/etc/azaion/device.conf'
    assert paths['state_file'] == '/var/lib/azaion-jetson/devices/AZJN-0042/state.json'
    assert paths['staging_tree'] == '/var/lib/azaion-jetson/staging/Linux_for_Tegra'


def test_an_own_rootfs_is_used_as_is_and_no_port_means_no_port_tree():
    paths = station_paths('/w', 'AZJN-1', rootfs_dir='/srv/rootfs/AZJN-1')
    assert paths['port_tree'] is None
    assert paths['device_conf'] == '/srv/rootfs/AZJN-1/etc/azaion/device.conf'
    assert station_paths('/w', 'AZJN-1')['rootfs'] is None


@pytest.mark.parametrize('workdir, serial, port, words', [
    ('relative', 'AZJN-1', None, 'absolute path'),
    ('/w', '../x', None, 'cannot name a directory'),
    ('/w', 'AZJN-1', '1-3/../..', 'not a USB port path'),
])
def test_bad_inputs_are_refused_naming_them(workdir, serial, port, words):
    with pytest.raises(ValueError, match=words):
        station_paths(workdir, serial, usb_instance=port)
