# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Controller side of azaion.jetson.companion_user: supplies the admin API connection.

Callbacks (loggers, AWX's job events, ARA...) receive every task's templated arguments before
the module's ``no_log`` masking can apply. A token written as a task argument therefore
reaches them. This action plugin reads the token (and the URL) from the inventory variables
``azaion_admin_api_token`` / ``azaion_admin_api_url``, or from the controller's environment
(``AZAION_ADMIN_API_TOKEN`` / ``AZAION_ADMIN_API_URL``, as AWX credentials inject them), and
hands them to the module directly, so the task's arguments never hold the token. Reading them
on the controller also lets a remote station work with credentials that exist only on the
controller.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.plugins.action import ActionBase

# module option -> (inventory variable, controller environment variable)
CONNECTION_SOURCES = {
    'api_url': ('azaion_admin_api_url', 'AZAION_ADMIN_API_URL'),
    'api_token': ('azaion_admin_api_token', 'AZAION_ADMIN_API_TOKEN'),
}


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        module_args = dict(self._task.args)
        for option, (variable, environment_variable) in CONNECTION_SOURCES.items():
            if module_args.get(option) not in (None, ''):
                continue
            value = None
            if task_vars.get(variable) not in (None, ''):
                value = self._templar.template(task_vars[variable])
            if value in (None, ''):
                value = os.environ.get(environment_variable)
            if value not in (None, ''):
                module_args[option] = str(value)
        result.update(self._execute_module(module_name='azaion.jetson.companion_user',
                                           module_args=module_args, task_vars=task_vars))
        return result
