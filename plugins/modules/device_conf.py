#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: device_conf
short_description: Write a Jetson's device.conf (identity and password) into a staged rootfs
version_added: 1.1.0
description:
  - Writes C(etc/azaion/device.conf) inside the root file system tree O(rootfs_dir) that will
    be flashed to one device. The file holds two lines, C(AZAION_DEVICE_EMAIL=<email>) and
    C(AZAION_DEVICE_PASSWORD=<32 lowercase hexadecimal characters>).
  - The password is born in this file and never travels through Ansible. It is generated on
    the target host from a cryptographically secure random source, it is not an option, it is
    never returned, it is not in error messages and it is masked in the diff. The
    M(azaion.jetson.companion_user) module reads it from the same file.
  - A valid password already in the file for the same email is kept, so re-running changes
    nothing. A new one is generated when there is none, when it is not 32 lowercase
    hexadecimal characters, when the email in the file is different, or when O(rotate=true).
  - Other C(KEY=VALUE) lines, comments and blank lines already in the file are kept in
    order; the two keys are updated in place, or appended when missing.
  - The path is resolved as if O(rootfs_dir) were C(/). A staged rootfs contains absolute
    symbolic links that, followed on the station, lead into the station's own C(/etc); the
    module refuses to write through a link with an absolute target, through a relative link
    that climbs above O(rootfs_dir), or through a loop of links, and says which link to fix.
  - The file is replaced atomically (temporary file in the same directory, flushed, renamed,
    directory flushed), so a crash leaves the old file or the new one. Missing C(etc) and
    C(etc/azaion) directories are created with mode C(0755).
author: Azaion engineering (@azaion)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  rootfs_dir:
    description:
      - The staged root file system of one device, on the host the task runs on (the
        station). It must exist and be a directory.
    type: path
    required: true
  email:
    description:
      - The device's CompanionPC account email, for example C(azaion-jetson-0042@azaion.com).
      - Derive it from the serial with the P(azaion.jetson.device_email#filter) filter.
      - When it differs from the email in the file, a new password is generated.
    type: str
    required: true
  owner:
    description:
      - Owner of the file, as a user name or a numeric uid.
      - A name is looked up in the rootfs's own C(etc/passwd), not the station's, because the
        service user that runs the Loader exists in the image only.
      - V(root) is uid 0 even when the rootfs has no C(etc/passwd); any other name needs that
        file, otherwise give a numeric uid.
    type: str
    default: root
  group:
    description:
      - Group of the file, as a group name or a numeric gid.
      - A name is looked up in the rootfs's own C(etc/group), as for O(owner).
    type: str
    default: root
  mode:
    description:
      - Permissions of the file, as an octal string such as V('0600') (quote it in YAML).
      - Symbolic modes such as C(u=rw) are not supported.
    type: raw
    default: '0600'
  rotate:
    description:
      - Generate a new password even when the file already holds a valid one for O(email).
      - Rotation is an explicit request; every run with V(true) changes the password, so the
        device's account must be updated afterwards (M(azaion.jetson.companion_user) does).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - The diff shows the file's text with the password value replaced by C(********).
  platform:
    support: N/A
    platforms: posix
notes:
  - Run it on the station that holds the staged rootfs, usually as root so that the owner,
    group and mode can be set.
seealso:
  - module: azaion.jetson.companion_user
'''

EXAMPLES = r'''
- name: Write device.conf into the device's staged rootfs
  azaion.jetson.device_conf:
    rootfs_dir: "{{ jetson_rootfs_dir }}"
    email: "{{ jetson_serial | azaion.jetson.device_email }}"
    owner: azaion-loader
    group: azaion-loader
    mode: '0600'

- name: Replace the device's password (the account must be updated afterwards)
  azaion.jetson.device_conf:
    rootfs_dir: /srv/jetson/AZJN-0042/rootfs
    email: azaion-jetson-0042@azaion.com
    rotate: true
  register: device_conf

- name: Show what happened (the password itself is never returned)
  ansible.builtin.debug:
    msg: "{{ device_conf.path }}: password {{ device_conf.password_state }}"
'''

RETURN = r'''
path:
  description: The absolute path of the file written, after resolving links inside the rootfs.
  returned: success
  type: str
  sample: /srv/jetson/AZJN-0042/rootfs/etc/azaion/device.conf
email:
  description: The email written to the file.
  returned: success
  type: str
  sample: azaion-jetson-0042@azaion.com
password_state:
  description:
    - V(kept) when the valid password already in the file was kept, V(generated) when a new
      one was made because there was none, it was not valid or the email changed, V(rotated)
      when O(rotate=true) replaced an existing one.
    - In check mode, what would happen.
  returned: success
  type: str
  choices: [kept, generated, rotated]
  sample: kept
owner_uid:
  description: The numeric owner of the file (O(owner) resolved in the rootfs).
  returned: success
  type: int
  sample: 0
group_gid:
  description: The numeric group of the file (O(group) resolved in the rootfs).
  returned: success
  type: int
  sample: 0
mode:
  description: The permissions of the file, in octal.
  returned: success
  type: str
  sample: '0600'
msg:
  description: What happened, for a person.
  returned: always
  type: str
  sample: wrote /srv/jetson/AZJN-0042/rootfs/etc/azaion/device.conf (new file; password generated)
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.azaion.jetson.plugins.module_utils._device_conf import (
    device_conf_argument_spec,
    write_device_conf,
)


def _keep_result(kwargs):
    return kwargs


def main():
    module = AnsibleModule(argument_spec=device_conf_argument_spec(), supports_check_mode=True)
    # exit_json would add the stat of the path with owner/group NAMES from the station's own
    # account database (wrong for the image's users) and overwrite RV(mode) with the current mode
    # (wrong in check mode): this module reports the rootfs's numeric ids and the wanted mode.
    module.add_path_info = _keep_result
    write_device_conf(module)


if __name__ == '__main__':
    main()
