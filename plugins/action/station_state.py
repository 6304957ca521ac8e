# -*- coding: utf-8 -*-
# Copyright: Azaion
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Controller side of azaion.jetson.station_state: a station that stops answering while its devices'
state is read is noticed (see plugin_utils/_station_watch.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.azaion.jetson.plugins.plugin_utils._station_watch import StationAction


class ActionModule(StationAction):
    WORK = 'its state read'
