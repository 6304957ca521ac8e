# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""azaion.jetson.show_outcome: a device's outcome (worked out on its station's run) as the
result of its own host's task, so the recap line and the error are the device's own.

It runs on the controller and never connects to the device. Where ``debug`` with
``changed_when`` and ``failed_when`` would template the outcome three times per device, this
templates it once.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.plugins.action import ActionBase

ARGUMENT_SPEC = dict(
    outcome=dict(type='dict', required=True),
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)
    # The devices are in recovery mode: there is nothing to connect to.
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        dummy, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        outcome = args['outcome']
        missing = [key for key in ('msg', 'changed', 'failed') if key not in outcome]
        if missing:
            result.update(failed=True, msg='outcome has no %s: give the outcome worked out by the'
                                           ' azaion.jetson.device_outcome filter' % ', '.join(missing))
            return result
        result.update(msg=str(outcome['msg']), changed=bool(outcome['changed']), failed=bool(outcome['failed']))
        # Shown at the default verbosity, as debug's message is.
        result['_ansible_verbose_always'] = True
        return result
