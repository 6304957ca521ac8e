#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: show_outcome
short_description: Show a device's outcome on its own host
version_added: 1.1.0
description:
  - The station modules do a phase for all of a station's devices in one run, on one host. This
    action gives each device's host its own result, so each device has its own recap line, and
    a device that failed fails on its own host, with its own error, while the others go on.
  - The task is V(changed) when O(outcome) says so, and fails with the outcome's message when
    O(outcome) says the device failed. Otherwise it shows the message, as P(ansible.builtin.debug#module) would.
  - It runs on the controller and connects to nothing.
author: Azaion engineering (@azaion)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.conn
  - ansible.builtin.action_common_attributes.flow
options:
  outcome:
    description:
      - The device's outcome, as the P(azaion.jetson.device_outcome#filter) or
        P(azaion.jetson.device_outcomes#filter) filter works it out, with the keys C(msg), C(changed) and
        C(failed).
    type: dict
    required: true
attributes:
  action:
    support: full
  async:
    support: none
  become:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details:
      - It only shows an outcome worked out before.
  connection:
    support: none
  delegation:
    support: none
    details:
      - It runs on the controller whatever the task's delegation.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: all
notes:
  - The roles and the provision playbook use it to report each device after its station's run.
seealso:
  - module: azaion.jetson.device_state
'''

EXAMPLES = r'''
- name: Report each device's identity, worked out from its station's run
  azaion.jetson.show_outcome:
    outcome: >-
      {{ {'identity': hostvars[station_runner].identity_result}
         | azaion.jetson.device_outcome(inventory_hostname) }}
'''

RETURN = r'''
msg:
  description: The outcome's message.
  returned: always
  type: str
  sample: "AZJN-0042: identity changed (account created)"
'''
