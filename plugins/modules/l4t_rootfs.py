#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: l4t_rootfs
short_description: Stage the root filesystem of an L4T working tree (sample rootfs, NVIDIA binaries, default user)
version_added: 1.1.0
description:
  - Prepares C(<l4t_dir>/rootfs) the way NVIDIA's quick start does, each step only when it is
    still needed. It unpacks the sample root filesystem when C(rootfs/etc/passwd) is missing
    (C(tar xpf) as root, keeping owners), runs C(apply_binaries.sh) when
    C(rootfs/etc/nv_tegra_release) is missing, and creates the default user with
    C(tools/l4t_create_default_user.sh ... --accept-license) when it is not in
    C(rootfs/etc/passwd).
  - C(l4t_create_default_user.sh) only takes the password on its command line, where every
    process on the station can read it, and it prints it. The module runs it with a throwaway
    password and then sets the real one in C(rootfs/etc/shadow) as a SHA-512 crypt hash.
    The hash is made by C(openssl passwd -6 -stdin), which reads the password from its
    standard input. The real password never appears in a process argument, a log or a
    result.
  - Several devices of a station may call it at once; a lock file makes the first do the work
    and the others find it done.
  - A step that did not finish (its tool failed, or the module was killed or the station lost
    power mid-step) is done again by the next run, although its files may make it look done
    (C(etc/passwd) is among the first files of the tarball; the default user exists before its
    password is set). Each step is recorded in C(<l4t_dir>/.azaion-staging-step) while it runs;
    an unpack is done again into an emptied C(rootfs/).
  - While it runs, it keeps the step the tree is in (C(unpack sample rootfs), C(apply_binaries.sh),
    C(create default user)) and the tools' log for O(progress_interval), under the name
    C(staging tree).
  - After a change it writes C(<l4t_dir>/.azaion-staging.json), the stamp that per-port
    working trees (M(azaion.jetson.l4t_workspace)) compare to know when to rebuild.
author: Azaion engineering (@azaion)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - azaion.jetson.progress
options:
  l4t_dir:
    description: The station's staging C(Linux_for_Tegra) tree (not the bundle as delivered).
    type: path
    required: true
  sample_rootfs:
    description:
      - NVIDIA's C(Tegra_Linux_Sample-Root-Filesystem_<ver>_aarch64.tbz2), on the station.
      - Needed only while C(rootfs/etc/passwd) does not exist.
    type: path
  apply_binaries:
    description: Run C(apply_binaries.sh) when the NVIDIA binaries are not installed yet.
    type: bool
    default: true
  default_user:
    description: The default user to create in the image. Nothing is created when not set.
    type: str
  default_user_password:
    description:
      - The default user's password. Required with O(default_user).
      - Better left unset in playbooks. The controller then takes it from the inventory
        variable C(jetson_default_user_password), else from the file that
        C(jetson_default_user_password_file) names, else from its environment variable
        E(AZAION_DEFAULT_USER_PASSWORD), else from the file that E(AZAION_DEFAULT_USER_PASSWORD_FILE)
        names, and hands it to the module itself, while a password written as a task argument
        reaches every callback with the task's arguments.
    type: str
  hostname:
    description: The image's host name, set with the default user.
    type: str
    default: jetson
  log_dir:
    description: Where the tools' output is logged.
    type: path
    required: true
  timeout:
    description: Seconds each tool may run.
    type: int
    default: 3600
attributes:
  check_mode:
    support: full
    details: In check mode no tool runs; the result says which steps would run.
  diff_mode:
    support: none
  platform:
    platforms: posix
'''

EXAMPLES = r'''
- name: Stage the station's rootfs
  azaion.jetson.l4t_rootfs:
    l4t_dir: /var/lib/azaion-jetson/staging/Linux_for_Tegra
    sample_rootfs: /srv/l4t/Tegra_Linux_Sample-Root-Filesystem_R36.4.0_aarch64.tbz2
    default_user: azaion  # password from the (vaulted) inventory variable jetson_default_user_password
    hostname: azaion-jetson
    log_dir: /var/lib/azaion-jetson/logs
'''

RETURN = r'''
steps:
  description: The steps that ran (or, in check mode, would run).
  returned: always
  type: list
  elements: str
  sample: [unpack sample rootfs, apply_binaries.sh, create default user]
log_path:
  description: The log of the tools that ran.
  returned: when a tool ran
  type: str
'''

import fcntl
import json
import os
import secrets
import shutil
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.azaion.jetson.plugins.module_utils._files import write_file_atomic
from ansible_collections.azaion.jetson.plugins.module_utils._progress import ProgressFile, run_progress
from ansible_collections.azaion.jetson.plugins.module_utils._tool_runner import log_tail, run_tool
from ansible_collections.azaion.jetson.plugins.module_utils._workspace import STAGING_MARKER

# The step under way, kept while it runs: one that did not finish is done again by the next run.
STEP_RECORD = '.azaion-staging-step'
# The one entry of the staging's progress: the station's tree, not a device.
PROGRESS_NAME = 'staging tree'


def passwd_has_user(passwd_path, user):
    try:
        with open(passwd_path) as passwd:
            return any(line.split(':', 1)[0] == user for line in passwd)
    except (IOError, OSError):
        return False


def set_shadow_hash(shadow_path, user, password_hash):
    """Put ``password_hash`` in ``user``'s line of ``shadow_path``, keeping mode and owner."""
    status = os.stat(shadow_path)
    with open(shadow_path) as shadow:
        lines = shadow.read().splitlines()
    for index, line in enumerate(lines):
        fields = line.split(':')
        if fields[0] == user and len(fields) > 1:
            fields[1] = password_hash
            lines[index] = ':'.join(fields)
            break
    else:
        raise ValueError('%s has no line for %s' % (shadow_path, user))
    write_file_atomic(shadow_path, ('\n'.join(lines) + '\n').encode('utf-8'),
                      mode=status.st_mode & 0o7777, uid=status.st_uid, gid=status.st_gid)


class Stager(object):
    # The steps in order, each with the method that does it.
    STEPS = (('unpack sample rootfs', 'unpack'), ('apply_binaries.sh', 'apply_binaries'),
             ('create default user', 'create_default_user'))

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.l4t_dir = self.params['l4t_dir']
        self.rootfs = os.path.join(self.l4t_dir, 'rootfs')
        self.log_path = os.path.join(self.params['log_dir'], 'staging-%s.log' % time.strftime('%Y%m%dT%H%M%SZ', time.gmtime()))
        self.steps = []
        self.ran_tool = False
        self.progress = ProgressFile(None, 'rootfs', [])

    def fail(self, msg, **kwargs):
        if self.ran_tool:
            kwargs['log_path'] = self.log_path
        self.module.fail_json(msg=msg, steps=self.steps, **kwargs)

    def run(self, step, argv, cwd):
        self.ran_tool = True
        run = run_tool(argv, cwd, self.log_path, self.params['timeout'])
        if run.timed_out or run.rc != 0:
            why = 'timed out after %d s' % self.params['timeout'] if run.timed_out else 'exited with %d' % run.rc
            self.fail('%s %s (log %s); last lines:\n%s' % (step, why, self.log_path, log_tail(self.log_path, 20)))

    def unfinished_step(self):
        """The step a run started and did not finish (None: none)."""
        try:
            with open(os.path.join(self.l4t_dir, STEP_RECORD)) as record:
                return record.read().strip() or None
        except (IOError, OSError):
            return None

    def record_step(self, step):
        """``step`` is under way (None: every step so far has finished)."""
        path = os.path.join(self.l4t_dir, STEP_RECORD)
        if step is not None:
            write_file_atomic(path, (step + '\n').encode('utf-8'), mode=0o644)
        elif os.path.exists(path):
            os.unlink(path)

    def pending_steps(self):
        """The steps still to do, in order. A step that did not finish, and every step after it,
        are to do whatever the files say."""
        unfinished = self.unfinished_step()
        order = [step for step, _action in self.STEPS]
        redo = set(order[order.index(unfinished):]) if unfinished in order else set()
        passwd = os.path.join(self.rootfs, 'etc', 'passwd')
        steps = []
        if 'unpack sample rootfs' in redo or not os.path.exists(passwd):
            steps.append('unpack sample rootfs')
        if self.params['apply_binaries'] and (
                'apply_binaries.sh' in redo or not os.path.exists(os.path.join(self.rootfs, 'etc', 'nv_tegra_release'))):
            steps.append('apply_binaries.sh')
        if self.params['default_user'] and ('create default user' in redo or 'unpack sample rootfs' in steps
                                            or not passwd_has_user(passwd, self.params['default_user'])):
            steps.append('create default user')
        return steps

    def check_inputs(self, steps):
        if not os.path.isfile(os.path.join(self.l4t_dir, 'flash.sh')):
            self.fail('%s is not a Linux_for_Tegra tree (no flash.sh)' % self.l4t_dir)
        if 'unpack sample rootfs' in steps:
            tarball = self.params['sample_rootfs']
            if not tarball:
                self.fail('%s has no etc/passwd yet: give sample_rootfs (the Tegra_Linux_Sample-Root-Filesystem '
                          'tarball) to unpack into it' % self.rootfs)
            if not os.path.isfile(tarball):
                self.fail('sample_rootfs %s does not exist on this station' % tarball)
        tools = {'apply_binaries.sh': 'apply_binaries.sh',
                 'create default user': os.path.join('tools', 'l4t_create_default_user.sh')}
        for step, tool in tools.items():
            if step in steps and not os.path.isfile(os.path.join(self.l4t_dir, tool)):
                self.fail('%s has no %s' % (self.l4t_dir, tool))

    def empty_rootfs(self):
        """Remove what an unpack cut short left in rootfs/, never across a mount point."""
        for top, directories, _files in os.walk(self.rootfs):
            for name in directories:
                if os.path.ismount(os.path.join(top, name)):
                    self.fail('%s is a mount point inside the rootfs, left by a tool cut short: unmount it, then'
                              ' run again' % os.path.join(top, name))
        shutil.rmtree(self.rootfs)

    def unpack(self):
        if os.path.isdir(self.rootfs) and os.path.exists(os.path.join(self.rootfs, 'etc')):
            self.empty_rootfs()  # an unpack that did not finish: start again from an empty rootfs/
        if not os.path.isdir(self.rootfs):
            os.makedirs(self.rootfs, 0o755)
        # As root, tar keeps the owners and modes recorded in the archive (-p, numeric ids).
        self.run('unpacking %s' % self.params['sample_rootfs'],
                 ['tar', '-x', '-p', '--numeric-owner', '-f', self.params['sample_rootfs'], '-C', self.rootfs],
                 self.l4t_dir)

    def apply_binaries(self):
        passwd = os.path.join(self.rootfs, 'etc', 'passwd')
        if os.path.exists(passwd) and os.stat(passwd).st_uid != 0:
            self.fail('%s is not owned by root, so apply_binaries.sh would refuse: unpack the sample rootfs '
                      'as root (tar xpf keeps owners)' % passwd)
        self.run('apply_binaries.sh', ['./apply_binaries.sh'], self.l4t_dir)

    def create_default_user(self):
        user = self.params['default_user']
        # A user already there was created by a run cut short before it set the password (the
        # script refuses an existing user): only the password is left to set.
        if not passwd_has_user(os.path.join(self.rootfs, 'etc', 'passwd'), user):
            throwaway = secrets.token_hex(16)  # on the command line only until the real hash replaces it
            self.run('l4t_create_default_user.sh',
                     ['./tools/l4t_create_default_user.sh', '-u', user, '-p', throwaway,
                      '-n', self.params['hostname'], '--accept-license'], self.l4t_dir)
        rc, out, err = self.module.run_command(['openssl', 'passwd', '-6', '-stdin'],
                                               data=self.params['default_user_password'], binary_data=False)
        password_hash = out.strip()
        if rc != 0 or not password_hash.startswith('$6$'):
            self.fail('openssl passwd -6 could not hash the default user password (rc %d): %s' % (rc, err.strip()))
        try:
            set_shadow_hash(os.path.join(self.rootfs, 'etc', 'shadow'), user, password_hash)
        except (IOError, OSError, ValueError) as exc:
            self.fail('cannot set the password of %s in the rootfs: %s' % (user, exc))

    def stage(self):
        steps = self.pending_steps()
        self.check_inputs(steps)
        if self.module.check_mode or not steps:
            return steps
        self.progress = run_progress(self.params['log_dir'], 'rootfs', [PROGRESS_NAME], self.params['progress_interval'],
                                     self.module.check_mode)
        for step, action in self.STEPS:
            if step in steps:
                self.progress.step(PROGRESS_NAME, step, self.log_path)
                self.record_step(step)
                getattr(self, action)()
                self.steps.append(step)
        etc = os.path.join(self.rootfs, 'etc')
        if not os.path.isdir(etc):
            os.makedirs(etc, 0o755)
        stamp = dict(staged=time.time(), steps=self.steps, generation=secrets.token_hex(8))
        write_file_atomic(os.path.join(self.l4t_dir, STAGING_MARKER), json.dumps(stamp, sort_keys=True).encode('utf-8'),
                          mode=0o644)
        self.record_step(None)  # after the stamp: a tree staged without one is staged again
        return steps


def main():
    module = AnsibleModule(
        argument_spec=dict(
            l4t_dir=dict(type='path', required=True),
            sample_rootfs=dict(type='path'),
            apply_binaries=dict(type='bool', default=True),
            default_user=dict(type='str'),
            default_user_password=dict(type='str', no_log=True),
            hostname=dict(type='str', default='jetson'),
            log_dir=dict(type='path', required=True),
            timeout=dict(type='int', default=3600),
            progress_interval=dict(type='int', default=30),
        ),
        required_by=dict(default_user='default_user_password'),
        supports_check_mode=True,
    )
    stager = Stager(module)
    if not os.path.isdir(stager.l4t_dir):
        if module.check_mode:
            # In a check run, the task that makes the tree did not run either.
            module.exit_json(changed=True, steps=['unpack sample rootfs', 'apply_binaries.sh'],
                             msg='would stage the rootfs once %s is made' % stager.l4t_dir)
        module.fail_json(msg='l4t_dir %s does not exist: create the station\'s working tree first '
                             '(azaion.jetson.l4t_workspace)' % stager.l4t_dir)
    # A stopped run (Ctrl-C) lets the staging finish (no end_with_the_run): a step cut short would
    # start again from the beginning (see STEP_RECORD); the next run waits here for it instead.
    with open(stager.l4t_dir.rstrip('/') + '.lock', 'a') as lock:
        # Devices of one station share this tree: the first stages it, the others wait and find it done.
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            steps = stager.stage()
        finally:
            stager.progress.close()
    result = dict(changed=bool(steps), steps=steps)
    if stager.ran_tool:
        result['log_path'] = stager.log_path
    if steps:
        result['msg'] = ('would run: ' if module.check_mode else 'ran: ') + ', '.join(steps)
    else:
        result['msg'] = 'the rootfs is staged already'
    module.exit_json(**result)


if __name__ == '__main__':
    main()
