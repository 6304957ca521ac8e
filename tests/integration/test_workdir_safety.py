"""The station's workdir through the real azaion.jetson.provision, on a lab station with one
Jetson (on port 1-1): a workdir left open to everyone with a link planted where the port tree
goes is refused before anything is written; one left open with only the run's own directories
is closed to 0700 and the batch provisions; one that does not exist is made 0700."""

import os
import stat

import pytest

from conftest import assert_ok
from lab.batch import ProvisionBatch

PORT = '1-1'
SERIAL = 'AZJN-0001'


@pytest.fixture
def batch(tmp_path, admin_api, api_token):
    one = ProvisionBatch(tmp_path / 'lab', admin_api, api_token, {PORT: '7523'})
    yield one
    one.lab.stop_loaders()


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def open_workdir(batch, *directories):
    """The batch's workdir as someone left it: mode 0777, with ``directories`` (the run's own names) in it."""
    workdir = batch.lab.workdir
    os.makedirs(workdir)
    os.chmod(workdir, 0o777)
    for relpath in directories:
        os.makedirs(os.path.join(workdir, relpath))
    return workdir


def test_a_link_planted_where_the_port_tree_goes_in_an_open_workdir_is_refused_before_anything_is_written(
        batch, tmp_path):
    workdir = open_workdir(batch, 'ports')
    outside = str(tmp_path / 'outside')
    os.makedirs(outside)
    planted = os.path.join(workdir, 'ports', PORT)
    os.symlink(outside, planted)

    result = batch.run()
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert 'jetson_workdir %s is open to others (mode 0777)' % workdir in output, output[-4000:]
    assert 'ports/%s is a symbolic link to %s' % (PORT, outside) in output
    assert 'remove those entries, then chmod 0700 %s' % workdir in output
    # Nothing written: not through the link, not in the workdir, not on the admin API or the device.
    assert os.listdir(outside) == []
    assert mode_of(workdir) == 0o777 and os.listdir(workdir) == ['ports'] and os.path.islink(planted)
    assert batch.api.write_count() == 0 and batch.flash_runs() == []


def test_an_open_workdir_holding_only_the_runs_own_directories_is_closed_and_the_batch_provisions(batch):
    workdir = open_workdir(batch, 'ports', 'logs', os.path.join('devices', SERIAL))

    result = batch.run()
    assert_ok(result)
    assert mode_of(workdir) == 0o700
    output = result.stdout + result.stderr
    assert ("jetson_workdir %s is open to others (mode 0777) though it holds every device's password; none of the"
            " run's own entries in it is a symbolic link or another user's, so the run closes it to mode 0700 once"
            " every station passed" % workdir) in ' '.join(output.split())
    assert batch.holds_its_own_identity() and batch.report()[SERIAL]['result'] == 'done'


def test_a_workdir_that_does_not_exist_is_made_0700(batch):
    assert not os.path.lexists(batch.lab.workdir)
    # Made once every station passed its check; the rootfs phase, its first writer, is enough to
    # see it stay closed.
    assert_ok(batch.run('--tags', 'rootfs'))
    assert mode_of(batch.lab.workdir) == 0o700
    assert os.path.isdir(os.path.join(batch.lab.workdir, 'ports', PORT, 'Linux_for_Tegra'))
