# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This plugin_utils is PRIVATE to the azaion.jetson collection: it may change without notice.

"""An action plugin base that hands secrets to a module without making them task arguments.

Callbacks (loggers, AWX's job events, ARA...) receive every task's templated arguments before
the module's ``no_log`` masking can apply, so a secret written as a task argument reaches
them. A module whose action plugin derives from ``ControllerSecretsAction`` takes such options
from inventory variables or from the controller's environment (as AWX credentials inject
them) instead, and the task's arguments never hold them. Reading them on the controller also
lets a remote station work with credentials that exist only on the controller.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from urllib.parse import urlsplit

from ansible.plugins.action import ActionBase

from ansible_collections.azaion.jetson.plugins.module_utils._admin_api import display_url


class ControllerSecretsAction(ActionBase):
    """Fill module options missing from the task from variables, then the controller's environment."""

    TRANSFERS_FILES = False
    # Set by each subclass: the module to run, and option -> (inventory variable, environment variable or None).
    MODULE = None
    SOURCES = {}

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ControllerSecretsAction, self).run(tmp, task_vars)
        module_args = dict(self._task.args)
        for option, (variable, environment_variable) in self.SOURCES.items():
            if module_args.get(option) not in (None, ''):
                continue
            value = None
            if task_vars.get(variable) not in (None, ''):
                value = self._templar.template(task_vars[variable])
            if value in (None, '') and environment_variable:
                value = os.environ.get(environment_variable)
            if value not in (None, ''):
                module_args[option] = str(value)
        url = module_args.get('api_url')
        if url and '@' in urlsplit(str(url)).netloc:
            # A second line behind the batch check: the module's arguments would carry the
            # password to the station and into every log of them.
            result.update(failed=True, msg='api_url has user info before its host (%s with "user:password@" left out):'
                                           ' a password in a URL ends up in logs; remove it from the URL (the token'
                                           ' goes in azaion_admin_api_token or AZAION_ADMIN_API_TOKEN)'
                                           % display_url(str(url)))
            return result
        result.update(self._execute_module(module_name=self.MODULE, module_args=module_args, task_vars=task_vars))
        return result
