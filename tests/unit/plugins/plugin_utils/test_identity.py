import pytest

from ansible_collections.azaion.jetson.plugins.plugin_utils._identity import (
    IdentityError,
    batch_problems,
    device_email,
)


@pytest.mark.parametrize('serial, email', [
    ('AZJN-0042', 'azaion-jetson-0042@azaion.com'),
    ('azjn-0042', 'azaion-jetson-0042@azaion.com'),
    ('AZ-JN-00AB', 'azaion-jetson-00ab@azaion.com'),
    ('AZJN-0042.b', 'azaion-jetson-0042.b@azaion.com'),
])
def test_device_email_takes_the_last_segment_lowercased(serial, email):
    assert device_email(serial) == email


def test_device_email_prefix_and_domain_are_configurable():
    assert device_email('AZJN-0042', prefix='lab-', domain='Lab.Example.com') == 'lab-0042@lab.example.com'


@pytest.mark.parametrize('serial, words', [
    ('AZJN0042', 'no hyphen'),
    ('AZJN-', 'ends with a hyphen'),
    ('AZJN-00 42', 'cannot go into an e-mail'),
    ('AZJN-00@42', 'cannot go into an e-mail'),
    ('AZJN-.0042', 'cannot go into an e-mail'),
    ('AZJN-00..42', 'cannot go into an e-mail'),
    ('', 'empty'),
])
def test_device_email_refuses_bad_serials_naming_them(serial, words):
    with pytest.raises(IdentityError) as caught:
        device_email(serial)
    assert words in str(caught.value)
    assert repr(serial) in str(caught.value)


def test_device_email_refuses_a_bad_domain():
    with pytest.raises(IdentityError, match='not a domain'):
        device_email('AZJN-0042', domain='localhost')


def test_batch_without_conflicts_has_no_problems():
    devices = [
        {'name': 'a', 'serial': 'AZJN-0001', 'station': 's1', 'rootfs_dir': '/r/a', 'usb_instance': '1-1'},
        {'name': 'b', 'serial': 'AZJN-0002', 'station': 's1', 'rootfs_dir': '/r/b', 'usb_instance': '1-2'},
        # the same port and path on another station is another cable and another disk
        {'name': 'c', 'serial': 'AZJN-0003', 'station': 's2', 'rootfs_dir': '/r/a', 'usb_instance': '1-1'},
    ]
    assert batch_problems(devices) == []


def test_batch_names_both_devices_of_an_email_collision():
    problems = batch_problems([{'name': 'jetson-a', 'serial': 'AZJN-0042'}, {'name': 'jetson-b', 'serial': 'AZXX-0042'}])
    assert len(problems) == 1
    assert 'jetson-a (serial AZJN-0042) and jetson-b (serial AZXX-0042)' in problems[0]
    assert 'azaion-jetson-0042@azaion.com' in problems[0]


def test_batch_reports_shared_rootfs_duplicate_serial_shared_port_and_bad_serial():
    problems = batch_problems([
        {'name': 'a', 'serial': 'AZJN-0001', 'rootfs_dir': '/r/x/', 'usb_instance': '1-3'},
        {'name': 'b', 'serial': 'AZJN-0001', 'rootfs_dir': '/r/x', 'usb_instance': '1-3'},
        {'name': 'c', 'serial': 'NOHYPHEN'},
    ])
    text = '\n'.join(problems)
    assert 'devices a and b have the same serial AZJN-0001' in text
    assert 'devices a and b share the staging rootfs /r/x' in text
    assert 'devices a and b are on the same USB port 1-3' in text
    assert "c: device serial 'NOHYPHEN' has no hyphen" in text


def test_batch_serial_defaults_to_the_host_name():
    assert batch_problems([{'name': 'AZJN-0001'}, {'name': 'AZJN-0002'}]) == []
    assert 'same e-mail' in batch_problems([{'name': 'AZJN-0001'}, {'name': 'AZQQ-0001'}])[0]
