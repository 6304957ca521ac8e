# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""azaion.jetson.l4t_rootfs over the lab's fake bundle: a staging step that did not finish (its
tool failed, or the module was killed mid-step) is done again by the next run, although its
files make it look done. Root only, as on a station (tar -p, apply_binaries.sh)."""

import os
import subprocess

import pytest

from lab import l4t_bundle
from lab.usb_sysfs import make_usb_sysfs

from ansible_collections.azaion.jetson.plugins.modules.l4t_rootfs import STEP_RECORD, main

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='staging a rootfs needs root, as on a station')

ALL_STEPS = ['unpack sample rootfs', 'apply_binaries.sh', 'create default user']
PASSWORD = 'the-default-users-password'


@pytest.fixture
def staging(tmp_path, module_runner):
    """A staging tree, the module's arguments, and ``run(check_mode=False)``."""
    sysfs = make_usb_sysfs(str(tmp_path / 'sysfs'), {'1-1': '7523'})
    tree = l4t_bundle.make_bundle(str(tmp_path / 'staging'), str(tmp_path / 'lab-state'), sysfs)
    args = dict(l4t_dir=tree, sample_rootfs=l4t_bundle.make_sample_rootfs_tarball(str(tmp_path)),
                log_dir=str(tmp_path / 'logs'), default_user='azaion', default_user_password=PASSWORD)

    class Staging:
        lab_state = str(tmp_path / 'lab-state')
        rootfs = os.path.join(tree, 'rootfs')
        record = os.path.join(tree, STEP_RECORD)

        @staticmethod
        def run(check_mode=False):
            return module_runner(main, args, check_mode=check_mode)

        def cut_short(self, step):
            """As a run killed in ``step`` leaves the tree."""
            with open(self.record, 'w') as record:
                record.write(step + '\n')

        def calls(self, tool):
            return [call for call in l4t_bundle.tool_calls(self.lab_state) if call['tool'] == tool]

        def password_is_set(self):
            with open(os.path.join(self.rootfs, 'etc', 'shadow')) as shadow:
                hashed = [line.split(':')[1] for line in shadow if line.startswith('azaion:')][0]
            salt = hashed.split('$')[2]
            again = subprocess.run(['openssl', 'passwd', '-6', '-salt', salt, '-stdin'], input=PASSWORD, text=True,
                                   capture_output=True, check=True).stdout.strip()
            return again == hashed
    return Staging()


def test_a_staging_that_finishes_leaves_no_record(staging):
    assert staging.run()['steps'] == ALL_STEPS
    assert not os.path.exists(staging.record) and staging.password_is_set()
    assert staging.run()['steps'] == []


def test_an_unpack_cut_short_is_done_again_into_an_empty_rootfs(staging):
    # The tarball's first files are there, the rest is not: etc/passwd makes it look unpacked.
    os.makedirs(os.path.join(staging.rootfs, 'etc'))
    with open(os.path.join(staging.rootfs, 'etc', 'passwd'), 'w') as passwd:
        passwd.write('root:x:0:0:root:/root:/bin/bash\n')
    staging.cut_short('unpack sample rootfs')

    assert staging.run(check_mode=True)['steps'] == ALL_STEPS
    assert os.path.exists(staging.record)  # check mode writes nothing
    result = staging.run()
    assert result['steps'] == ALL_STEPS, result
    assert os.path.isfile(os.path.join(staging.rootfs, 'usr', 'bin', 'true'))
    assert os.path.isfile(os.path.join(staging.rootfs, 'usr', 'lib', 'aarch64-linux-gnu', 'nvidia', '.lab-installed'))
    assert staging.password_is_set() and not os.path.exists(staging.record)


def test_an_apply_binaries_cut_short_is_run_again_and_the_steps_after_it_too(staging):
    staging.run()
    # It had installed etc/nv_tegra_release (which makes it look done) but not the rest.
    os.unlink(os.path.join(staging.rootfs, 'usr', 'lib', 'aarch64-linux-gnu', 'nvidia', '.lab-installed'))
    staging.cut_short('apply_binaries.sh')
    result = staging.run()
    assert result['steps'] == ['apply_binaries.sh', 'create default user'], result
    assert os.path.isfile(os.path.join(staging.rootfs, 'usr', 'lib', 'aarch64-linux-gnu', 'nvidia', '.lab-installed'))
    # The user was there: the script (which refuses an existing user) did not run again.
    assert len(staging.calls('l4t_create_default_user.sh')) == 1
    assert staging.password_is_set() and not os.path.exists(staging.record)


def test_a_default_user_created_but_not_given_its_password_gets_it(staging):
    staging.run()
    shadow = os.path.join(staging.rootfs, 'etc', 'shadow')
    with open(shadow) as before:
        lines = [line if not line.startswith('azaion:') else 'azaion:$6$throwaway$x:19000:0:99999:7:::\n'
                 for line in before]
    with open(shadow, 'w') as after:
        after.writelines(lines)
    staging.cut_short('create default user')
    assert not staging.password_is_set()
    result = staging.run()
    assert result['steps'] == ['create default user'], result
    assert len(staging.calls('l4t_create_default_user.sh')) == 1
    assert staging.password_is_set() and not os.path.exists(staging.record)
