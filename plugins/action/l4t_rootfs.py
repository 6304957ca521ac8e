# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Controller side of azaion.jetson.l4t_rootfs: the default user's password comes from the
inventory variable ``jetson_default_user_password`` (or the controller's
``AZAION_DEFAULT_USER_PASSWORD``, or the files their ``_file`` forms name), never from the task's arguments (see
plugin_utils/_controller_secrets.py for why); and while it runs, the staging's progress is shown
(see plugin_utils/_station_watch.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.azaion.jetson.plugins.plugin_utils._controller_secrets import ControllerSecretsAction


class ActionModule(ControllerSecretsAction):
    MODULE = 'azaion.jetson.l4t_rootfs'
    WORK = 'rootfs'
    PROGRESS_PHASE = 'rootfs'
    SOURCES = {
        'default_user_password': ('jetson_default_user_password', 'AZAION_DEFAULT_USER_PASSWORD'),
    }
