#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: station_progress
short_description: Read where a station run stands, device by device, while it runs
version_added: 1.1.0
description:
  - Reads the progress file a station run keeps while it runs (M(azaion.jetson.station_flash)
    keeps C(progress-flash.json) in its C(log_dir); M(azaion.jetson.l4t_rootfs) and
    M(azaion.jetson.station_trees) keep C(progress-rootfs.json)), and the last line of each
    device's (or tree's) tool log.
  - Those modules' tasks run this module themselves, every C(progress_interval) seconds, and
    print what it returns; a playbook has no need to.
  - Reads only; the progress file holds device names, steps, times and log paths, nothing secret.
author: Azaion engineering (@azaion)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  path:
    description:
      - The progress file on the station.
    type: path
    required: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
seealso:
  - module: azaion.jetson.station_flash
  - module: azaion.jetson.l4t_rootfs
  - module: azaion.jetson.station_trees
'''

EXAMPLES = r'''
- name: Read where the station's flash stands
  azaion.jetson.station_progress:
    path: /var/lib/azaion-jetson/logs/progress-flash.json
  register: flash_progress
'''

RETURN = r'''
found:
  description: Whether the progress file was there (false before the run writes it and after it ends).
  returned: always
  type: bool
  sample: true
phase:
  description: The phase of the run.
  returned: always
  type: str
  sample: flash
now:
  description: The station's clock (epoch seconds), against which the devices' C(since) count.
  returned: always
  type: float
  sample: 1764535000.2
devices:
  description:
    - Each device's progress, by device name, with its C(step), C(since) (when the step began,
      station epoch seconds), C(log) (its tool log, null before it has one) and C(log_line) (the
      log's last line, cut to one line).
  returned: always
  type: dict
  sample:
    AZJN-0003:
      step: flashing as instance 1
      since: 1764534870.0
      log: /var/lib/azaion-jetson/logs/AZJN-0003-flash-20261130T203300Z.log
      log_line: "[ 130.2] Writing partition APP"
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.azaion.jetson.plugins.module_utils._progress import read_progress


def main():
    module = AnsibleModule(argument_spec=dict(path=dict(type='path', required=True)), supports_check_mode=True)
    module.exit_json(changed=False, **read_progress(module.params['path']))


if __name__ == '__main__':
    main()
